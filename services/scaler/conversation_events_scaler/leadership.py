"""Only one scaler acts at a time.

* On one machine: an exclusive ``fcntl`` lock on a file (:class:`FileLock`); a second scaler
  for the same queue refuses to start instead of fighting over the same workers.
* On Kubernetes: a ``coordination.k8s.io`` Lease (:class:`LeaseLock`), renewed on every poll;
  a scaler that does not hold it (or cannot renew it) observes but does not act. The chart
  may instead run exactly one scaler pod with ``strategy: Recreate`` and switch this off.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from kubernetes import client
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError as Urllib3HTTPError

log = logging.getLogger(__name__)


class Leadership(Protocol):
    def acquire(self) -> bool:
        """Take or renew leadership; True while this process may act."""
        ...

    def release(self) -> None:
        """Give leadership up (on shutdown), so a successor need not wait for expiry."""
        ...


class AlreadyRunning(RuntimeError):
    """Another scaler holds the lock."""


class FileLock:
    """Exclusive, non-blocking ``flock`` on ``path``; the holder's pid is written into it.

    The kernel drops the lock when the process dies, however it dies, so a stale file never
    blocks a new scaler.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def acquire(self) -> bool:
        if self._file is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise AlreadyRunning(
                f"another scaler (pid {holder}) holds {self.path}; stop it first"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return True

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


class LeaseLock:
    """Leader election on a ``coordination.k8s.io/v1`` Lease.

    Acquire when the Lease is absent, ours, or not renewed for ``leaseDurationSeconds``;
    the patch carries the read ``resourceVersion``, so of two contenders only one wins (the
    other gets 409 and stays a follower). RBAC: ``get``, ``create``, ``patch`` on ``leases``.
    """

    def __init__(
        self,
        coordination: client.CoordinationV1Api,
        namespace: str,
        name: str,
        identity: str,
        *,
        duration_s: float = 45.0,
        timeout_s: float = 10.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api = coordination
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self._duration = max(1, round(duration_s))
        self._timeout = timeout_s
        self._now = now
        self.leading = False

    def acquire(self) -> bool:
        try:
            leading = self._try_acquire()
        except (ApiException, Urllib3HTTPError, OSError) as exc:
            # Cannot renew: stop acting now rather than risk two leaders after expiry.
            log.warning(
                "could not take or renew the scaler lease; not acting this poll",
                extra={"lease": f"{self.namespace}/{self.name}", "error": str(exc)[:300]},
            )
            leading = False
        if leading != self.leading:
            log.info(
                "scaler leadership changed",
                extra={"leading": leading, "identity": self.identity, "lease": self.name},
            )
        self.leading = leading
        return leading

    def _try_acquire(self) -> bool:
        now = self._now()
        try:
            lease = self._api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            return self._create(now)
        spec = lease.spec or client.V1LeaseSpec()
        holder = spec.holder_identity
        if holder and holder != self.identity and not self._expired(spec, now):
            return False
        changes: dict[str, Any] = {
            "holderIdentity": self.identity,
            "renewTime": _micro_time(now),
            "leaseDurationSeconds": self._duration,
        }
        if holder != self.identity:
            changes["acquireTime"] = _micro_time(now)
            changes["leaseTransitions"] = (spec.lease_transitions or 0) + 1
        # The read resourceVersion makes the patch conditional: a contender that wrote in
        # between makes ours fail with 409 instead of both believing they lead.
        body = {
            "metadata": {"resourceVersion": _resource_version(lease)},
            "spec": changes,
        }
        try:
            self._api.patch_namespaced_lease(
                self.name, self.namespace, body, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def _create(self, now: datetime) -> bool:
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
            spec=client.V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=self._duration,
                acquire_time=now,
                renew_time=now,
                lease_transitions=0,
            ),
        )
        try:
            self._api.create_namespaced_lease(self.namespace, body, _request_timeout=self._timeout)
        except ApiException as exc:
            if exc.status == 409:  # created by a contender meanwhile
                return False
            raise
        return True

    def _expired(self, spec: client.V1LeaseSpec, now: datetime) -> bool:
        renewed = spec.renew_time or spec.acquire_time
        if renewed is None:
            return True
        if renewed.tzinfo is None:
            renewed = renewed.replace(tzinfo=UTC)
        duration = spec.lease_duration_seconds or self._duration
        return (now - renewed).total_seconds() > duration

    def release(self) -> None:
        if not self.leading:
            return
        self.leading = False
        with contextlib.suppress(ApiException, Urllib3HTTPError, OSError):
            lease = self._api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=self._timeout
            )
            if lease.spec and lease.spec.holder_identity == self.identity:
                body = {
                    "metadata": {"resourceVersion": _resource_version(lease)},
                    "spec": {"holderIdentity": None, "renewTime": None},
                }
                self._api.patch_namespaced_lease(
                    self.name, self.namespace, body, _request_timeout=self._timeout
                )


def _micro_time(moment: datetime) -> str:
    """RFC 3339 with microseconds, as Kubernetes' MicroTime."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _resource_version(lease: client.V1Lease) -> str | None:
    return lease.metadata.resource_version if lease.metadata else None
