"""Actuators: what the scaler acts on, behind one small interface (``current()``, ``scale(n)``).

* :class:`KubernetesActuator` reads and patches the ``scale`` subresource of exactly one
  Deployment with the official ``kubernetes`` client (RBAC: ``get`` and ``patch`` on
  ``deployments/scale``, nothing else).
* :class:`LocalProcessActuator` starts and stops worker processes on this machine; it stops them
  with ``SIGTERM`` so they drain (finish and ack their in-flight messages) and kills only after
  a grace period.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from conversation_events.errors import ConversationEventsError
from conversation_events_scaler.errors import (
    ActuatorUnavailable,
    ScaleConflict,
    ScaleForbidden,
    ScaleTargetNotFound,
)

log = logging.getLogger(__name__)


class Actuator(abc.ABC):
    """Where the replicas live."""

    @abc.abstractmethod
    def current(self) -> int:
        """Replicas asked for and running (not counting ones that are draining away)."""

    @abc.abstractmethod
    def scale(self, replicas: int) -> None:
        """Ask for ``replicas``; returns once the request is accepted, not when they run."""

    def status(self) -> dict[str, Any]:
        """Details for the status file."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release resources; the local actuator also stops its workers."""


# --- Kubernetes ------------------------------------------------------------------------------


class KubernetesActuator(Actuator):
    """Scales one Deployment through its ``scale`` subresource; never touches anything else."""

    def __init__(
        self, apps: client.AppsV1Api, namespace: str, deployment: str, *, timeout_s: float = 10.0
    ) -> None:
        self._apps = apps
        self.namespace = namespace
        self.deployment = deployment
        self._timeout_s = timeout_s

    @property
    def target(self) -> str:
        return f"deployment {self.namespace}/{self.deployment}"

    def current(self) -> int:
        try:
            scale = self._apps.read_namespaced_deployment_scale(
                self.deployment, self.namespace, _request_timeout=self._timeout_s
            )
        except (ApiException, Urllib3HTTPError, OSError) as exc:
            raise translate_api_error(exc, f"read the scale of {self.target}") from exc
        return int(scale.spec.replicas or 0) if scale.spec else 0

    def scale(self, replicas: int) -> None:
        if replicas < 0:
            raise ValueError("replicas must not be negative")
        try:
            self._apps.patch_namespaced_deployment_scale(
                self.deployment,
                self.namespace,
                {"spec": {"replicas": replicas}},
                _request_timeout=self._timeout_s,
            )
        except (ApiException, Urllib3HTTPError, OSError) as exc:
            raise translate_api_error(exc, f"scale {self.target} to {replicas}") from exc

    def status(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "deployment": self.deployment}


_SCALE_RBAC = "`get` and `patch` on `deployments/scale` (apps) in that namespace"


def translate_api_error(
    exc: Exception, action: str, *, needs: str = _SCALE_RBAC
) -> ConversationEventsError:
    """A kubernetes-client exception as the project's retryable / permanent error; ``needs``
    names the permission a 401/403 lacks."""
    if not isinstance(exc, ApiException) or exc.status in (None, 0):
        return ActuatorUnavailable(f"could not {action}: Kubernetes API unreachable ({exc})")
    status = int(exc.status)
    detail = f"HTTP {status} {exc.reason or ''}".strip()
    if status == 404:
        return ScaleTargetNotFound(f"could not {action}: not found ({detail})")
    if status in (401, 403):
        return ScaleForbidden(
            f"could not {action}: {detail}; the scaler's ServiceAccount needs {needs}"
        )
    if status == 409:
        return ScaleConflict(f"could not {action}: changed meanwhile ({detail})")
    if status == 429 or status >= 500:
        return ActuatorUnavailable(f"could not {action}: {detail}")
    return ScaleForbidden(f"could not {action}: rejected ({detail})")


# --- local processes ---------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    """One local worker: its slot (→ port), process, and when it started or began stopping."""

    slot: int
    port: int
    process: subprocess.Popen[bytes]
    started_at: float
    stopping_since: float | None = None
    killed: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid


InFlightProbe = Callable[[WorkerProcess], "int | None"]

_MIN_HEALTHY_UPTIME_S = 30.0

_IN_FLIGHT = re.compile(r"^conversation_events_worker_in_flight(?:\{[^}]*\})?\s+(\S+)", re.M)


def parse_in_flight(metrics_text: str) -> int | None:
    """``conversation_events_worker_in_flight`` from a worker's ``/metrics`` text, if there."""
    match = _IN_FLIGHT.search(metrics_text)
    return int(float(match.group(1))) if match else None


def fetch_in_flight(ip: str, port: int, timeout_s: float) -> int | None:
    """``conversation_events_worker_in_flight`` from ``http://<ip>:<port>/metrics``; None when
    the worker does not answer or does not report it."""
    host = f"[{ip}]" if ":" in ip else ip
    try:
        response = httpx.get(f"http://{host}:{port}/metrics", timeout=timeout_s)
    except httpx.HTTPError:
        return None
    return parse_in_flight(response.text) if response.status_code == 200 else None


def http_in_flight_probe(timeout_s: float = 0.5) -> InFlightProbe:
    """Reads ``conversation_events_worker_in_flight`` from a worker's ``/metrics``.

    ``None`` when the worker does not answer (still starting, or no fixed port), so such a
    worker ranks as busy: an unknown worker is not assumed idle.
    """

    def probe(worker: WorkerProcess) -> int | None:
        return fetch_in_flight("127.0.0.1", worker.port, timeout_s) if worker.port else None

    return probe


@dataclass(eq=False)
class LocalProcessActuator(Actuator):
    """Runs ``n`` worker processes of ``command`` on this machine.

    * Worker ``i`` (its *slot*, the lowest free one) gets ``CE_WORKER_HTTP_PORT = base + i``
      (``0`` when ``http_base_port`` is 0) so their ``/metrics`` never clash.
    * Scale-in sends ``SIGTERM`` to the idlest workers (lowest in-flight count when a probe is
      given), newest first among equals; they drain and exit by themselves, and get ``SIGKILL``
      only after ``grace_s``. Draining workers no longer count in :meth:`current`.
    * Workers that exit on their own are reaped and replaced (with a growing back-off when they
      keep crashing right after start).
    """

    command: Sequence[str]
    _: KW_ONLY
    env: Mapping[str, str] = field(repr=False)  # holds credentials
    cwd: Path | None = None
    http_base_port: int = 9100
    grace_s: float = 60.0
    log_dir: Path | None = None
    in_flight: InFlightProbe | None = None
    restart_backoff_s: float = 1.0
    max_restart_backoff_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    running: list[WorkerProcess] = field(default_factory=list, init=False)
    stopping: list[WorkerProcess] = field(default_factory=list, init=False)
    target: int = field(default=0, init=False)
    crashes: int = field(default=0, init=False)
    _backoff: float = field(default=0.0, init=False, repr=False)
    _restart_not_before: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.command:
            raise ValueError("the worker command must not be empty")
        self.command = list(self.command)
        self.env = dict(self.env)
        self._backoff = self.restart_backoff_s

    # -- the interface --

    def current(self) -> int:
        self.reap()
        return len(self.running)

    def scale(self, replicas: int) -> None:
        if replicas < 0:
            raise ValueError("replicas must not be negative")
        self.target = replicas
        self.reap()
        while len(self.running) > replicas:
            self._stop(self._victim())

    def status(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "crashes": self.crashes,
            "workers": [self._describe(w, "running") for w in self.running]
            + [self._describe(w, "stopping") for w in self.stopping],
        }

    def close(self, timeout_s: float | None = None) -> None:
        """SIGTERM every worker, wait for them to drain, kill what is left after the grace."""
        self.target = 0
        for worker in list(self.running):
            self._stop(worker)
        deadline = self.clock() + (self.grace_s if timeout_s is None else timeout_s)
        while self.stopping and self.clock() < deadline:
            self._wait_any(deadline)
            self.reap()
        for worker in list(self.stopping):
            self._kill(worker)
        for worker in list(self.stopping):
            worker.process.wait()
        self.reap()

    # -- mechanics --

    def reap(self) -> None:
        """Collect exited workers, kill drained-too-long ones, replace crashed ones."""
        now = self.clock()
        for worker in list(self.running):
            code = worker.process.poll()
            if code is None:
                continue
            self.running.remove(worker)
            self.crashes += 1
            lived = now - worker.started_at
            log.warning(
                "worker exited unexpectedly; replacing it",
                extra={"pid": worker.pid, "exit_code": code, "lived_s": round(lived, 1)},
            )
            if lived < _MIN_HEALTHY_UPTIME_S:  # dies right after start: do not spin
                self._restart_not_before = now + self._backoff
                self._backoff = min(self._backoff * 2, self.max_restart_backoff_s)
            else:
                self._backoff = self.restart_backoff_s
        for worker in list(self.stopping):
            code = worker.process.poll()
            if code is not None:
                self.stopping.remove(worker)
                log.info(
                    "worker stopped",
                    extra={
                        "pid": worker.pid,
                        "exit_code": code,
                        "drained_s": round(now - (worker.stopping_since or now), 1),
                        "killed": worker.killed,
                    },
                )
            elif not worker.killed and now - (worker.stopping_since or now) >= self.grace_s:
                self._kill(worker)
        if len(self.running) < self.target and now >= self._restart_not_before:
            while len(self.running) < self.target:
                self._start()

    def _start(self) -> WorkerProcess:
        used = {w.slot for w in self.running + self.stopping}
        slot = next(i for i in range(len(used) + 1) if i not in used)
        port = self.http_base_port + slot if self.http_base_port else 0
        env = dict(self.env)
        env["CE_WORKER_HTTP_PORT"] = str(port)
        output: IO[bytes] | int | None = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            output = (self.log_dir / f"worker-{slot}.log").open("ab")
        try:
            process = subprocess.Popen(  # noqa: S603 - the configured worker command
                self.command,
                env=env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT if output is not None else None,
            )
        except OSError as exc:
            raise ActuatorUnavailable(f"could not start worker {self.command!r}: {exc}") from exc
        finally:
            if output is not None and not isinstance(output, int):
                output.close()  # the child holds its own descriptor
        worker = WorkerProcess(slot=slot, port=port, process=process, started_at=self.clock())
        self.running.append(worker)
        log.info("worker started", extra={"pid": process.pid, "slot": slot, "http_port": port})
        return worker

    def _victim(self) -> WorkerProcess:
        def rank(worker: WorkerProcess) -> tuple[float, float]:
            busy: float = 0.0
            if self.in_flight is not None:
                count = self.in_flight(worker)
                busy = float("inf") if count is None else float(count)
            return (busy, -worker.started_at)

        return min(self.running, key=rank)

    def _stop(self, worker: WorkerProcess) -> None:
        self.running.remove(worker)
        worker.stopping_since = self.clock()
        self.stopping.append(worker)
        with contextlib.suppress(ProcessLookupError):  # exited meanwhile: reaped next time
            worker.process.send_signal(signal.SIGTERM)
        log.info("worker asked to drain (SIGTERM)", extra={"pid": worker.pid, "slot": worker.slot})

    def _kill(self, worker: WorkerProcess) -> None:
        if worker.process.poll() is None:
            log.warning(
                "worker did not drain within the grace period; killing it",
                extra={"pid": worker.pid, "grace_s": self.grace_s},
            )
            worker.process.kill()
        worker.killed = True

    def _wait_any(self, deadline: float) -> None:
        """Block until a stopping worker exits or a short slice passes (no busy loop)."""
        remaining = max(0.0, deadline - self.clock())
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.stopping[0].process.wait(timeout=min(0.2, remaining))

    def _describe(self, worker: WorkerProcess, state: str) -> dict[str, Any]:
        return {
            "pid": worker.pid,
            "slot": worker.slot,
            "http_port": worker.port,
            "state": state,
            "age_s": round(self.clock() - worker.started_at, 1),
        }


def worker_environment(base: Mapping[str, str]) -> dict[str, str]:
    """The environment of local workers: the scaler's own (all ``CE_*`` settings pass through)."""
    env = dict(base)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def default_worker_command(python: str | None = None) -> list[str]:
    """This Python running the installed worker package (the workspace installs the worker
    beside the scaler)."""
    return [python or sys.executable, "-m", "conversation_events_worker"]


def in_cluster_namespace(default: str = "default") -> str:
    """The namespace of the pod this runs in, else ``default``."""
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    try:
        return path.read_text().strip() or default
    except OSError:
        return default


def kubernetes_api_client(kubeconfig: Path | None) -> client.ApiClient:
    """An API client from the in-cluster service account, or from a kubeconfig (development)."""
    from kubernetes import config

    # The client's config loaders carry no annotations; what they return is an ApiClient.
    if kubeconfig is not None:
        api_client: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig)
        )
        return api_client
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        if "KUBECONFIG" in os.environ or Path("~/.kube/config").expanduser().exists():
            api_client = config.new_client_from_config()  # type: ignore[no-untyped-call]
            return api_client
        raise
    return client.ApiClient(configuration)
