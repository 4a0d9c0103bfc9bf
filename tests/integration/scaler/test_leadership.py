"""Only one scaler acts: the local file lock, and the Lease election against kmock's API server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import kmock
import pytest
from kubernetes import client
from tests.integration.scaler.scaler_helpers import Cluster

from conversation_events_scaler.leadership import AlreadyRunning, FileLock, LeaseLock

LEASES = kmock.resource("coordination.k8s.io", "v1", "leases")
NAMESPACE = "ce"


def test_a_second_local_scaler_is_refused_until_the_first_releases(tmp_path: Path) -> None:
    path = tmp_path / "scaler.lock"
    first = FileLock(path)
    assert first.acquire()
    with pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}"):
        FileLock(path).acquire()
    first.release()
    second = FileLock(path)
    assert second.acquire()
    second.release()


def test_the_lock_is_held_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "scaler.lock"
    holder = FileLock(path)
    holder.acquire()
    try:
        probe = (
            "import fcntl, sys\n"
            f"f = open({str(path)!r}, 'a+')\n"
            "try:\n"
            "    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
            "except BlockingIOError:\n"
            "    sys.exit(3)\n"
        )
        assert subprocess.run([sys.executable, "-c", probe], check=False).returncode == 3
    finally:
        holder.release()


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def coordination(cluster: Cluster) -> Iterator[client.CoordinationV1Api]:
    configuration = client.Configuration()
    configuration.host = cluster.url
    with client.ApiClient(configuration) as api_client:
        yield client.CoordinationV1Api(api_client)


def holder(cluster: Cluster) -> str | None:
    lease = cluster.emulator.objects[LEASES, NAMESPACE, "scaler"]
    return lease["spec"].get("holderIdentity")


def test_one_leader_at_a_time_and_takeover_after_expiry(
    cluster: Cluster, coordination: client.CoordinationV1Api
) -> None:
    clock = Clock()
    a = LeaseLock(coordination, NAMESPACE, "scaler", "scaler-a", duration_s=30, now=clock)
    b = LeaseLock(coordination, NAMESPACE, "scaler", "scaler-b", duration_s=30, now=clock)

    assert a.acquire()  # creates the Lease
    assert not b.acquire()
    assert holder(cluster) == "scaler-a"

    clock.now += timedelta(seconds=20)
    assert a.acquire()  # renews
    clock.now += timedelta(seconds=20)
    assert not b.acquire()  # 20 s since the renewal: still a's

    clock.now += timedelta(seconds=31)  # a stopped renewing: the Lease expired
    assert b.acquire()
    assert holder(cluster) == "scaler-b"
    assert not a.acquire()
    lease = cluster.emulator.objects[LEASES, NAMESPACE, "scaler"]
    assert lease["spec"]["leaseTransitions"] == 1
    assert lease["spec"]["leaseDurationSeconds"] == 30

    b.release()  # graceful handover: no need to wait for expiry
    assert a.acquire()
    assert holder(cluster) == "scaler-a"


def test_a_conflicting_write_leaves_the_contender_a_follower(
    cluster: Cluster, coordination: client.CoordinationV1Api
) -> None:
    clock = Clock()
    a = LeaseLock(coordination, NAMESPACE, "scaler", "scaler-a", duration_s=30, now=clock)
    assert a.acquire()
    cluster.emulator["patch", LEASES] << kmock.KubernetesError(
        status=409, reason="Conflict", message="the object has been modified"
    )
    assert not a.acquire()  # another writer won the renewal race
    assert not a.leading


def test_forbidden_or_unreachable_means_not_acting(
    cluster: Cluster, coordination: client.CoordinationV1Api
) -> None:
    cluster.emulator[LEASES] << kmock.KubernetesError(status=403, reason="Forbidden", message="no")
    lock = LeaseLock(coordination, NAMESPACE, "scaler", "scaler-a")
    assert not lock.acquire()
    lock.release()  # a non-leader releases nothing, and does not raise
