"""Idle-first scale-in: each worker pod's ``pod-deletion-cost`` follows its in-flight work.

When a ReplicaSet scales in, it removes among its running, ready pods the one with the lowest
``controller.kubernetes.io/pod-deletion-cost`` first (pending and unready pods go before any
of them). Neither the HPA nor KEDA knows which worker is busy; this loop tells the ReplicaSet:
every ``interval_s`` it lists the worker pods (one LIST), reads each running pod's
``conversation_events_worker_in_flight`` from its ``/metrics`` (pod IP, worker HTTP port) and
patches the annotation **only when the value changed**, so the API server sees at most one
PATCH per pod per interval, and none while a pod's work is steady.

A worker that cannot be read keeps the annotation it has: an unknown worker is neither made
cheap (it might be busy) nor expensive. RBAC: ``list`` and ``patch`` on ``pods`` in the
namespace (``get`` for ``kubectl auth can-i`` and diagnostics), nothing else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from conversation_events.errors import ConversationEventsError
from conversation_events_scaler.actuators import fetch_in_flight, translate_api_error

log = logging.getLogger(__name__)

ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
#: The annotation is an int32 (kube-controller-manager ignores values outside it).
_MAX_COST = 2**31 - 1
_RBAC = "`list` and `patch` on `pods` in that namespace"

#: ``(pod IP, port) -> messages in flight``, or None when the worker does not answer.
InFlightReader = Callable[[str, int], "int | None"]


def deletion_cost(in_flight: int) -> int:
    """The annotation's value for a worker processing ``in_flight`` messages: the count itself
    (so the idlest worker is removed first), within the annotation's int32 range."""
    return max(0, min(in_flight, _MAX_COST))


def http_in_flight_reader(timeout_s: float = 0.5) -> InFlightReader:
    """Reads ``conversation_events_worker_in_flight`` from ``http://<ip>:<port>/metrics``."""

    def read(ip: str, port: int) -> int | None:
        return fetch_in_flight(ip, port, timeout_s)

    return read


@dataclass(frozen=True)
class SyncResult:
    """What one pass did: pods seen, annotations patched, workers that did not answer."""

    pods: int = 0
    patched: int = 0
    unreadable: int = 0


@dataclass(eq=False)
class DeletionCostUpdater:
    """Keeps the deletion cost of the pods matching ``selector`` equal to their in-flight work."""

    core: client.CoreV1Api
    namespace: str
    selector: str
    port: int
    _: KW_ONLY
    read_in_flight: InFlightReader
    timeout_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    last_sync_at: float | None = field(default=None, init=False)
    #: End of the last pass, successful or not (liveness: the loop is not stuck).
    last_pass_at: float | None = field(default=None, init=False)

    def sync(self) -> SyncResult:
        """One pass; raises the project's retryable / permanent error when listing fails."""
        try:
            pods = self.core.list_namespaced_pod(
                self.namespace, label_selector=self.selector, _request_timeout=self.timeout_s
            )
        except (ApiException, Urllib3HTTPError, OSError) as exc:
            raise translate_api_error(
                exc, f"list the worker pods in {self.namespace}", needs=_RBAC
            ) from exc
        seen = patched = unreadable = 0
        for pod in pods.items:
            meta, status = pod.metadata, pod.status
            ip = status.pod_ip if status else None
            if meta is None or not meta.name or meta.deletion_timestamp:
                continue  # leaving: the ReplicaSet no longer counts it
            if not ip or status is None or status.phase != "Running":
                continue  # not started: the ReplicaSet removes those first anyway
            seen += 1
            in_flight = self.read_in_flight(ip, self.port)
            if in_flight is None:
                unreadable += 1
                continue
            cost = str(deletion_cost(in_flight))
            if (meta.annotations or {}).get(ANNOTATION) == cost:
                continue
            if self._patch(meta.name, cost):
                patched += 1
        self.last_sync_at = self.clock()
        return SyncResult(pods=seen, patched=patched, unreadable=unreadable)

    def _patch(self, name: str, cost: str) -> bool:
        body: dict[str, Any] = {"metadata": {"annotations": {ANNOTATION: cost}}}
        try:
            self.core.patch_namespaced_pod(
                name, self.namespace, body, _request_timeout=self.timeout_s
            )
        except (ApiException, Urllib3HTTPError, OSError) as exc:
            if isinstance(exc, ApiException) and exc.status == 404:
                return False  # deleted since the list: nothing to rank any more
            raise translate_api_error(
                exc, f"annotate pod {self.namespace}/{name}", needs=_RBAC
            ) from exc
        return True

    def run(self, stop: threading.Event, interval_s: float) -> None:
        """Sync every ``interval_s`` until ``stop`` is set; errors are logged, never fatal."""
        while not stop.is_set():
            try:
                result = self.sync()
            except ConversationEventsError as exc:
                log.warning("could not update the pod deletion costs", extra={"error": str(exc)})
            except Exception:  # a bug must not stop the loop beside the autoscaler
                log.exception("pod deletion cost pass failed unexpectedly")
            else:
                if result.patched or result.unreadable:
                    log.info(
                        "pod deletion costs updated",
                        extra={
                            "pods": result.pods,
                            "patched": result.patched,
                            "unreadable": result.unreadable,
                        },
                    )
            self.last_pass_at = self.clock()
            stop.wait(interval_s)

    def healthy(self, interval_s: float, now: float | None = None) -> bool:
        """False when no pass ended for three intervals: the loop is stuck (a failing API is
        logged and retried, not a reason to restart the pod, which would not fix it)."""
        if self.last_pass_at is None:
            return True  # starting
        now = self.clock() if now is None else now
        return now - self.last_pass_at <= 3 * interval_s + 30
