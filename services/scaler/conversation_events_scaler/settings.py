"""Settings of the scaler process: its own ``CE_SCALER_*`` variables, plus the shared ``CE_*``.

:class:`ScalerSettings` holds the scaler's own fields, read with the ``CE_SCALER_`` prefix
(``min_replicas`` is ``CE_SCALER_MIN_REPLICAS``); :class:`ProcessSettings` is what the process
reads: the shared fields (the queue, the environment, logging) and ``scaler``. Every field
states its unit and why it has its default. The decision's defaults have one home,
:class:`~conversation_events_scaler.decision.ScalingPolicy`, equal to the chart's
``autoscaling`` values (a chart test checks they agree).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from conversation_events.settings import CommonSettings
from conversation_events_scaler.decision import ScalingPolicy

_POLICY = ScalingPolicy()


class ScalerSettings(BaseSettings):
    """The scaler's own fields, ``CE_SCALER_<FIELD>``; the queue is the shared ``CE_QUEUE_NAME``.

    The decision's fields (``min_replicas`` … ``ready_only``) have the meanings, and the
    defaults, of :class:`ScalingPolicy`, which also checks them.
    """

    model_config = SettingsConfigDict(
        env_prefix="CE_SCALER_", extra="ignore", use_attribute_docstrings=True
    )

    # --- the decision (chart: autoscaling.*) ---------------------------------------------------
    min_replicas: int = _POLICY.min_replicas
    """Fewest workers. 1 keeps one worker warm so a single event is processed at once; 0 lets
    an idle queue cost nothing (then `activation` wakes the workers)."""
    max_replicas: int = _POLICY.max_replicas
    """Most workers. 10: the database, not the scaler, sets the ceiling (the design note's
    W ≈ 2 × DB cores); beyond its capacity more workers only add lock contention."""
    target_per_replica: float = _POLICY.target_per_replica
    """Messages (ready + unacked) per worker that the formula aims at. 200 = prefetch 100 × k 2:
    every worker has a full prefetch window in flight plus one more waiting."""
    activation: int = _POLICY.activation
    """Messages above which workers start from zero (and below which the last one may leave
    after the cooldown). 0, as KEDA: any message wakes a worker."""
    tolerance: float = _POLICY.tolerance
    """Relative deviation from the target that changes nothing; 0.1 as the HPA."""
    scale_up_factor: float = _POLICY.scale_up_factor
    """One step grows to at most current × factor (or + step, whichever is more); 2.0 as the
    HPA's default 100 % policy."""
    scale_up_step: int = _POLICY.scale_up_step
    """Replicas one step may add at least (also from zero); 4 as the HPA's default."""
    stats_lag_s: float = _POLICY.stats_lag_s
    """Age of the management statistics in seconds: no scale-in while the last scale-out is
    younger. 10 = twice RabbitMQ's default `collect_statistics_interval` (5 s)."""
    scale_down_stabilization_s: float = _POLICY.scale_down_stabilization_s
    """Seconds of recommendations whose highest value bounds a scale-in (the HPA's
    `scaleDown.stabilizationWindowSeconds`). 120: bursts a couple of minutes apart find their
    workers still there, and an idle backlog gives its workers back within minutes."""
    cooldown_s: float = _POLICY.cooldown_s
    """Seconds the queue must stay inactive before the last worker goes (only with min 0);
    KEDA's `cooldownPeriod`, 120 as the chart's `cooldownSeconds`."""
    fallback_replicas: int = _POLICY.fallback_replicas
    """Workers to run at least once the metric failed `fallback_after_failures` times in a row
    (KEDA's `fallback.replicas`). 1: someone keeps draining while we are blind; the scaler
    never scales in without metrics."""
    fallback_after_failures: int = _POLICY.fallback_after_failures
    """Metric failures in a row before the fallback; 3 as KEDA's failureThreshold."""
    ready_only: bool = _POLICY.ready_only
    """Count only ready messages, as KEDA's AMQP mode. Off: ready + unacked, so busy workers
    are not taken for idle ones."""
    rate_per_replica: float | None = _POLICY.rate_per_replica
    """Messages/s of publish rate one worker absorbs: with it, the workers also scale on
    `ceil(rate / rate_per_replica)` and the larger of that and the backlog's count wins (chart:
    `autoscaling.rateTrigger`). Unset (the default): backlog only, as before; set it somewhat
    below one worker's measured throughput so a burst is met before its backlog builds."""

    # --- the loop --------------------------------------------------------------------------------
    polling_interval_s: float = Field(5.0, gt=0)
    """Seconds between two reads of the queue when nothing moves. 5 (KEDA: 30): one management
    API call is cheap, and a burst is then acted on within one statistics sample (5 s) of its
    start; the fast interval follows it while it grows."""
    fast_polling_interval_s: float = Field(2.5, gt=0)
    """Seconds between reads while the backlog grows or a scale-up is under way: half of
    RabbitMQ's 5 s statistics interval, so a burst is seen within one sample."""

    # --- the input: RabbitMQ management HTTP API -------------------------------------------------
    management_url: str = "http://127.0.0.1:15672"
    """Base URL of the RabbitMQ management API; several comma-separated URLs for the nodes of
    a cluster: each read goes to the node that answered last, and to the next when it does not.
    Default: the local dev broker."""
    management_user: str = "guest"
    """Management API user (monitoring)."""
    management_password: SecretStr = SecretStr("guest")
    """Management API password; refused in production when a placeholder."""
    management_timeout_s: float = Field(5.0, gt=0)
    """Seconds for connect and for read of one management API call; well below the polling
    interval so a hung broker becomes a counted failure, not a stuck loop."""
    vhost: str = "/"
    """Virtual host of the queue (URL-encoded by the scaler: `/` → `%2F`)."""

    # --- the input: the outbox in PostgreSQL (CE_DATABASE_URL) -----------------------------------
    count_unpublished: bool = True
    """Also count the events stored and not yet published (read-only, one connection to
    `CE_DATABASE_URL`, one bounded count per poll) and add them to the backlog: when accepting
    outruns publishing, the work waits in the database, where the queue does not show it. On
    by default (chart: `autoscaling.countUnpublished`); off, the scaler holds no database
    credentials and sees the queue alone."""

    # --- the actuator ---------------------------------------------------------------------------
    actuator: Literal["kubernetes", "local"] = "local"
    """`kubernetes` patches the worker Deployment's scale subresource; `local` starts and stops
    worker processes on this machine. Default `local` (the one-machine stack); the chart sets
    `kubernetes`."""
    namespace: str | None = None
    """Namespace of the worker Deployment. Unset: the pod's own namespace (in-cluster), else
    `default`."""
    deployment: str = "conversation-events-worker"
    """Name of the one Deployment the scaler may scale (the chart's worker name)."""
    kubeconfig: Path | None = None
    """Kubeconfig for development outside a cluster; unset: in-cluster config."""
    kubernetes_timeout_s: float = Field(10.0, gt=0)
    """Seconds for one Kubernetes API call before it counts as unavailable."""
    worker_command: list[str] | None = None
    """Local only: the worker command (JSON list). Unset: this Python with
    `-m conversation_events_worker`."""
    worker_cwd: Path | None = None
    """Local only: working directory of the workers; unset: the scaler's own."""
    worker_log_dir: Path | None = None
    """Local only: directory for `worker-<slot>.log` (appended); unset: the workers write to
    the scaler's own stdout and stderr."""
    worker_http_base_port: int = Field(9100, ge=0, le=65535)
    """Local only: worker i gets CE_WORKER_HTTP_PORT = base + i so their /metrics do not clash
    (9100 is the worker's default port). 0: every worker picks a free port."""
    worker_grace_s: float = Field(60.0, gt=0)
    """Local only: seconds a SIGTERMed worker may drain before SIGKILL; above the longest
    processing time (as the chart's terminationGracePeriodSeconds)."""
    lock_file: Path | None = None
    """Local only: file locked (fcntl) so only one scaler acts on this machine. Unset: the
    status file's path + `.lock`, else one per queue in the temp directory."""

    # --- idle-first scale-in on Kubernetes (chart: worker.deletionCost) --------------------------
    mode: Literal["scale", "deletion-cost"] = "scale"
    """`scale`: the autoscaler (with `deletion_cost`, the deletion-cost loop runs beside it);
    `deletion-cost`: only the deletion-cost loop, for when KEDA scales the workers (the chart's
    small `deletion-cost` Deployment). That mode reads no queue and holds no credentials."""
    deletion_cost: bool = False
    """Keep each worker pod's `controller.kubernetes.io/pod-deletion-cost` equal to its
    in-flight messages, so a scale-in removes idle workers first. Off by default: it needs
    `list`/`patch` on pods (chart: `worker.deletionCost.enabled`). Kubernetes actuator only;
    the local actuator already stops the idlest workers first."""
    deletion_cost_interval_s: float = Field(10.0, gt=0)
    """Seconds between two passes (one LIST of the worker pods, one /metrics read per pod, a
    PATCH only for a pod whose value changed): at most one PATCH per pod per 10 s, a few per
    second for a full fleet, and a cost at most 10 s old when a scale-in comes (the HPA acts
    every 15 s, and scale-in follows minutes of stabilisation)."""
    worker_selector: str = "app.kubernetes.io/component=worker"
    """Label selector of the worker pods whose deletion cost is kept (the chart sets the
    worker Deployment's own selector)."""
    worker_http_port: int = Field(9100, ge=1, le=65535)
    """Port of the workers' /metrics on their pod IP (the chart's `worker.httpPort`)."""
    worker_probe_timeout_s: float = Field(0.5, gt=0)
    """Seconds for one worker's /metrics; short, as an unanswered worker keeps its cost."""

    # --- the process ----------------------------------------------------------------------------
    http_host: str = "127.0.0.1"
    """Address of /healthz and /metrics; the chart sets 0.0.0.0 for the probes."""
    http_port: int = Field(9200, ge=0, le=65535)
    """Port of /healthz and /metrics (0: any free port)."""
    status_file: Path | None = None
    """JSON file rewritten after every poll (workers, last decision and reason) for
    `scripts/stack status`; unset: none."""

    @model_validator(mode="after")
    def _consistent_policy(self) -> ScalerSettings:
        self.scaling_policy()  # raises ValueError with every problem at once
        return self

    def scaling_policy(self) -> ScalingPolicy:
        """The decision's parameters, taken from these settings (the fields share their names)."""
        return ScalingPolicy(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(ScalingPolicy)}
        )


class ProcessSettings(CommonSettings):
    """What the scaler process reads: the shared ``CE_*`` fields and its own ``scaler``."""

    scaler: ScalerSettings = Field(default_factory=ScalerSettings)

    def production_secrets(self) -> dict[str, str]:
        if self.scaler.mode == "deletion-cost":
            return {}  # reads only pods and their /metrics: it is given no credentials
        # The scaler opens no AMQP connection, so it is given no AMQP URL (least privilege),
        # and a database connection only to count the unpublished events.
        secrets = {"management password": self.scaler.management_password.get_secret_value()}
        if self.scaler.count_unpublished:
            secrets["database password"] = super().production_secrets()["database password"]
        return secrets


def load_settings(**overrides: Any) -> ProcessSettings:
    """Settings from the environment, with ``overrides`` (field names) taking precedence."""
    return ProcessSettings(**overrides)


@functools.cache
def get_settings() -> ProcessSettings:
    """The process's settings, read once from the environment."""
    return load_settings()
