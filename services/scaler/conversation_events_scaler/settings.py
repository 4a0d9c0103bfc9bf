"""Settings of the scaler process: ``CE_SCALER_*`` environment variables (plus the shared ``CE_*``).

Every field states its unit and why it has its default. The scaling fields have the same
meanings as the chart's ``autoscaling`` values, which also drive KEDA's ``ScaledObject``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from conversation_events.settings import CommonSettings
from conversation_events_scaler.decision import ScalingPolicy


class ScalerSettings(CommonSettings):
    """Fields of the scaler; the queue is the shared ``CE_QUEUE_NAME``."""

    # --- the decision (chart: autoscaling.*) ---------------------------------------------------
    scaler_min_replicas: int = Field(
        default=1,
        ge=0,
        description=(
            "Fewest workers (replicas). 1 keeps one worker warm so a single event is processed "
            "at once; 0 lets an idle queue cost nothing (then `activation` wakes the workers)."
        ),
    )
    scaler_max_replicas: int = Field(
        default=8,
        ge=1,
        description=(
            "Most workers. 8 is the design note's static size (W ≈ 2 × DB cores); beyond the "
            "database's capacity more workers only add lock contention."
        ),
    )
    scaler_target_per_replica: float = Field(
        default=200.0,
        gt=0,
        description=(
            "Messages (ready + unacked) per worker that the formula aims at. 200 = prefetch 100 "
            "× k 2: every worker has a full prefetch window in flight plus one more waiting "
            "(see docs/autoscaling.md)."
        ),
    )
    scaler_activation: int = Field(
        default=0,
        ge=0,
        description=(
            "Messages above which workers start from zero (and below which the last one may "
            "leave after the cooldown). 0, as KEDA: any message wakes a worker."
        ),
    )
    scaler_tolerance: float = Field(
        default=0.1,
        ge=0,
        description="Relative deviation from the target that changes nothing; 0.1 as the HPA.",
    )
    scaler_scale_up_factor: float = Field(
        default=2.0,
        ge=1,
        description=(
            "One step grows to at most current × factor (or + step, whichever is more). "
            "2.0 as the HPA's default 100 % policy."
        ),
    )
    scaler_scale_up_step: int = Field(
        default=4,
        ge=1,
        description="Replicas one step may add at least (also from zero); 4 as the HPA's default.",
    )
    scaler_polling_interval_s: float = Field(
        default=5.0,
        gt=0,
        description=(
            "Seconds between two reads of the queue when nothing moves. 5 (KEDA: 30): one "
            "management API call is cheap, and a burst is then acted on within one statistics "
            "sample (5 s) of its start; the fast interval follows it while it grows."
        ),
    )
    scaler_fast_polling_interval_s: float = Field(
        default=2.5,
        gt=0,
        description=(
            "Seconds between reads while the backlog grows or a scale-up is under way: half of "
            "RabbitMQ's 5 s statistics interval, so a burst is seen within one sample."
        ),
    )
    scaler_stats_lag_s: float = Field(
        default=10.0,
        ge=0,
        description=(
            "Age of the management statistics in seconds: no scale-in while the last scale-out "
            "is younger. 10 = twice RabbitMQ's default `collect_statistics_interval` (5 s)."
        ),
    )
    scaler_scale_down_stabilization_s: float = Field(
        default=300.0,
        ge=0,
        description=(
            "Seconds of recommendations whose highest value bounds a scale-in (the HPA's "
            "`scaleDown.stabilizationWindowSeconds`, default 300): bursts a few minutes apart "
            "find their workers still there."
        ),
    )
    scaler_cooldown_s: float = Field(
        default=300.0,
        ge=0,
        description=(
            "Seconds the queue must stay inactive before the last worker goes (only with "
            "min 0). 300 as KEDA's `cooldownPeriod`."
        ),
    )
    scaler_fallback_replicas: int = Field(
        default=1,
        ge=0,
        description=(
            "Workers to run at least once the metric failed `fallback_after_failures` times in "
            "a row (KEDA's `fallback.replicas`). 1: someone keeps draining while we are blind; "
            "the scaler never scales in without metrics."
        ),
    )
    scaler_fallback_after_failures: int = Field(
        default=3,
        ge=1,
        description="Metric failures in a row before the fallback; 3 as KEDA's failureThreshold.",
    )
    scaler_ready_only: bool = Field(
        default=False,
        description=(
            "Count only ready messages, as KEDA's AMQP mode. Off: ready + unacked, so busy "
            "workers are not taken for idle ones."
        ),
    )

    # --- the input: RabbitMQ management HTTP API -------------------------------------------------
    scaler_management_url: str = Field(
        default="http://127.0.0.1:15672",
        description="Base URL of the RabbitMQ management API. Default: the local dev broker.",
    )
    scaler_management_user: str = Field(
        default="guest", description="Management API user (monitoring)."
    )
    scaler_management_password: SecretStr = Field(
        default=SecretStr("guest"),
        description="Management API password; refused in production when a placeholder.",
    )
    scaler_management_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description=(
            "Seconds for connect and for read of one management API call; well below the "
            "polling interval so a hung broker becomes a counted failure, not a stuck loop."
        ),
    )
    scaler_vhost: str = Field(
        default="/",
        description="Virtual host of the queue (URL-encoded by the scaler: `/` → `%2F`).",
    )

    # --- the actuator ---------------------------------------------------------------------------
    scaler_actuator: Literal["kubernetes", "local"] = Field(
        default="local",
        description=(
            "`kubernetes` patches the worker Deployment's scale subresource; `local` starts and "
            "stops worker processes on this machine. Default `local` (the one-machine stack); "
            "the chart sets `kubernetes`."
        ),
    )
    scaler_namespace: str | None = Field(
        default=None,
        description=(
            "Namespace of the worker Deployment. Unset: the pod's own namespace (in-cluster), "
            "else `default`."
        ),
    )
    scaler_deployment: str = Field(
        default="conversation-events-worker",
        description="Name of the one Deployment the scaler may scale (the chart's worker name).",
    )
    scaler_kubeconfig: Path | None = Field(
        default=None,
        description="Kubeconfig for development outside a cluster; unset: in-cluster config.",
    )
    scaler_kubernetes_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Seconds for one Kubernetes API call before it counts as unavailable.",
    )
    scaler_leader_election: bool = Field(
        default=True,
        description=(
            "Kubernetes only: act only while holding a coordination.k8s.io Lease, so two "
            "scaler pods (a rollout, a partitioned node) never fight over the replicas."
        ),
    )
    scaler_lease_name: str = Field(
        default="conversation-events-scaler",
        description="Name of that Lease, in the scaler's namespace.",
    )
    scaler_lease_duration_s: float = Field(
        default=45.0,
        ge=5,
        description=(
            "Seconds a Lease stays valid without renewal: three polling intervals, so one slow "
            "poll does not hand over leadership."
        ),
    )
    scaler_identity: str | None = Field(
        default=None,
        description="Holder identity in the Lease; unset: the host (pod) name and process id.",
    )
    scaler_worker_command: list[str] | None = Field(
        default=None,
        description=(
            "Local only: the worker command (JSON list). Unset: this Python with "
            "`-m conversation_events_worker`."
        ),
    )
    scaler_worker_cwd: Path | None = Field(
        default=None,
        description="Local only: working directory of the workers; unset: the scaler's own.",
    )
    scaler_worker_pythonpath: str | None = Field(
        default=None,
        description=(
            "Local only: PYTHONPATH of the workers (e.g. `src:services/worker`); unset: the "
            "scaler's own environment is passed through unchanged."
        ),
    )
    scaler_worker_log_dir: Path | None = Field(
        default=None,
        description=(
            "Local only: directory for `worker-<slot>.log` (appended); unset: the workers "
            "write to the scaler's own stdout and stderr."
        ),
    )
    scaler_worker_http_base_port: int = Field(
        default=9100,
        ge=0,
        le=65535,
        description=(
            "Local only: worker i gets CE_WORKER_HTTP_PORT = base + i so their /metrics do not "
            "clash (9100 is the worker's default port). 0: every worker picks a free port."
        ),
    )
    scaler_worker_grace_s: float = Field(
        default=60.0,
        gt=0,
        description=(
            "Local only: seconds a SIGTERMed worker may drain before SIGKILL; above the longest "
            "processing time (as the chart's terminationGracePeriodSeconds)."
        ),
    )
    scaler_lock_file: Path | None = Field(
        default=None,
        description=(
            "Local only: file locked (fcntl) so only one scaler acts on this machine. Unset: "
            "the status file's path + `.lock`, else one per queue in the temp directory."
        ),
    )

    # --- the process ----------------------------------------------------------------------------
    scaler_http_host: str = Field(
        default="127.0.0.1",
        description="Address of /healthz and /metrics; the chart sets 0.0.0.0 for the probes.",
    )
    scaler_http_port: int = Field(
        default=9200,
        ge=0,
        le=65535,
        description="Port of /healthz and /metrics (0: any free port).",
    )
    scaler_status_file: Path | None = Field(
        default=None,
        description=(
            "JSON file rewritten after every poll (workers, last decision and reason) for "
            "`scripts/stack status`; unset: none."
        ),
    )

    @model_validator(mode="after")
    def _consistent_bounds(self) -> ScalerSettings:
        self.scaling_policy()  # raises ValueError with every problem at once
        return self

    def production_secrets(self) -> dict[str, str]:
        secrets = super().production_secrets()
        secrets["management password"] = self.scaler_management_password.get_secret_value()
        return secrets

    def scaling_policy(self) -> ScalingPolicy:
        """The decision's parameters, taken from these settings."""
        return ScalingPolicy(
            min_replicas=self.scaler_min_replicas,
            max_replicas=self.scaler_max_replicas,
            target_per_replica=self.scaler_target_per_replica,
            activation=self.scaler_activation,
            tolerance=self.scaler_tolerance,
            scale_up_factor=self.scaler_scale_up_factor,
            scale_up_step=self.scaler_scale_up_step,
            scale_down_stabilization_s=self.scaler_scale_down_stabilization_s,
            cooldown_s=self.scaler_cooldown_s,
            stats_lag_s=self.scaler_stats_lag_s,
            fallback_replicas=self.scaler_fallback_replicas,
            fallback_after_failures=self.scaler_fallback_after_failures,
            ready_only=self.scaler_ready_only,
        )


def load_settings(**overrides: Any) -> ScalerSettings:
    """Settings from the environment, with ``overrides`` (field names) taking precedence."""
    return ScalerSettings(**overrides)


@functools.cache
def get_settings() -> ScalerSettings:
    """The process's settings, read once from the environment."""
    return load_settings()
