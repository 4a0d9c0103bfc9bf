"""Idle-first scale-in: the pod-deletion-cost loop, with the real ``kubernetes`` client against
kmock's emulator, and fake workers serving ``/metrics`` on loopback addresses (each pod IP is
its own 127.0.0.x, all on one port, as worker pods share their port on a cluster)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import kmock
import pytest
from kubernetes import client
from tests.integration.scaler.scaler_helpers import Cluster
from tests.support.services import wait_for

from conversation_events.errors import PermanentError
from conversation_events_scaler.deletion_cost import (
    ANNOTATION,
    DeletionCostUpdater,
    deletion_cost,
    http_in_flight_reader,
)
from conversation_events_scaler.errors import ScaleForbidden

NAMESPACE = "ce"
WORKER = {"app.kubernetes.io/name": "ce", "app.kubernetes.io/component": "worker"}
SELECTOR = "app.kubernetes.io/name=ce,app.kubernetes.io/component=worker"
PODS_PATH = f"/api/v1/namespaces/{NAMESPACE}/pods"


class FakeWorkers:
    """One /metrics server per loopback IP, all on the same port; ``in_flight[ip]`` is served."""

    def __init__(self, ips: list[str]) -> None:
        self.in_flight: dict[str, float] = dict.fromkeys(ips, 0)
        self.reads: list[str] = []
        workers = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                address = self.server.server_address
                ip = address[0] if isinstance(address, tuple) else address
                workers.reads.append(str(ip))
                body = (
                    "# TYPE conversation_events_worker_in_flight gauge\n"
                    f"conversation_events_worker_in_flight {workers.in_flight[str(ip)]}\n"
                    "conversation_events_worker_connected 1.0\n"
                ).encode()
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        first = ThreadingHTTPServer((ips[0], 0), Handler)
        self.port = int(first.server_address[1])
        self.servers = [first] + [ThreadingHTTPServer((ip, self.port), Handler) for ip in ips[1:]]
        for server in self.servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def workers() -> Iterator[FakeWorkers]:
    fake = FakeWorkers(["127.0.0.2", "127.0.0.3"])
    yield fake
    fake.close()


@pytest.fixture
def core(kubernetes_api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kubernetes_api)


def updater(core: client.CoreV1Api, port: int) -> DeletionCostUpdater:
    return DeletionCostUpdater(
        core, NAMESPACE, SELECTOR, port, read_in_flight=http_in_flight_reader(timeout_s=2)
    )


def patches(cluster: Cluster) -> list[tuple[str, object]]:
    return [(r.url.path, r.data) for r in cluster.emulator[kmock.method.PATCH]]


def test_the_annotation_follows_the_in_flight_gauge(
    cluster: Cluster, core: client.CoreV1Api, workers: FakeWorkers
) -> None:
    cluster.add_pod("worker-a", "127.0.0.2", WORKER)
    cluster.add_pod("worker-b", "127.0.0.3", WORKER)
    workers.in_flight.update({"127.0.0.2": 7, "127.0.0.3": 0})
    costs = updater(core, workers.port)

    assert costs.sync().patched == 2
    assert cluster.annotations("worker-a") == {ANNOTATION: "7"}
    assert cluster.annotations("worker-b") == {ANNOTATION: "0"}

    workers.in_flight.update({"127.0.0.2": 0, "127.0.0.3": 42})  # the busy one went idle
    result = costs.sync()
    assert (result.pods, result.patched, result.unreadable) == (2, 2, 0)
    assert cluster.annotations("worker-a") == {ANNOTATION: "0"}
    assert cluster.annotations("worker-b") == {ANNOTATION: "42"}
    assert patches(cluster)[-2:] == [
        (f"{PODS_PATH}/worker-a", {"metadata": {"annotations": {ANNOTATION: "0"}}}),
        (f"{PODS_PATH}/worker-b", {"metadata": {"annotations": {ANNOTATION: "42"}}}),
    ]


def test_no_patch_when_the_value_is_unchanged(
    cluster: Cluster, core: client.CoreV1Api, workers: FakeWorkers
) -> None:
    cluster.add_pod("worker-a", "127.0.0.2", WORKER, annotations={ANNOTATION: "5"})
    cluster.add_pod("worker-b", "127.0.0.3", WORKER)
    workers.in_flight.update({"127.0.0.2": 5, "127.0.0.3": 1})
    costs = updater(core, workers.port)

    assert costs.sync().patched == 1  # worker-a already carries 5
    before = cluster.requests()
    assert costs.sync().patched == 0
    assert cluster.requests()[len(before) :] == [("GET", PODS_PATH)]  # one LIST, no PATCH
    workers.in_flight["127.0.0.3"] = 2
    assert costs.sync().patched == 1
    assert [path for path, _ in patches(cluster)] == [f"{PODS_PATH}/worker-b"] * 2


def test_only_running_worker_pods_that_answer_are_annotated(
    cluster: Cluster, core: client.CoreV1Api, workers: FakeWorkers
) -> None:
    workers.in_flight["127.0.0.2"] = 3
    cluster.add_pod("worker-a", "127.0.0.2", WORKER)
    cluster.add_pod("worker-pending", None, WORKER, phase="Pending")
    cluster.add_pod("worker-leaving", "127.0.0.3", WORKER, deleting=True)
    # Nothing listens on 127.0.0.4: an unknown worker keeps the cost it has.
    cluster.add_pod("worker-silent", "127.0.0.4", WORKER, annotations={ANNOTATION: "9"})

    result = updater(core, workers.port).sync()

    assert (result.pods, result.patched, result.unreadable) == (2, 1, 1)
    assert cluster.annotations("worker-a") == {ANNOTATION: "3"}
    assert cluster.annotations("worker-silent") == {ANNOTATION: "9"}
    for untouched in ("worker-pending", "worker-leaving"):
        assert cluster.annotations(untouched) == {}
    assert set(workers.reads) == {"127.0.0.2"}
    # Only the worker Deployment's pods are listed: the API server applies the selector.
    [listing] = [r for r in cluster.emulator if r.url.path == PODS_PATH]
    assert listing.url.query.get("labelSelector") == SELECTOR


def test_the_loop_keeps_following_the_gauge(
    cluster: Cluster, core: client.CoreV1Api, workers: FakeWorkers
) -> None:
    cluster.add_pod("worker-a", "127.0.0.2", WORKER)
    costs = updater(core, workers.port)
    stop = threading.Event()
    thread = threading.Thread(target=costs.run, args=(stop, 0.05), daemon=True)
    thread.start()
    try:
        for value in (12, 0, 3):
            workers.in_flight["127.0.0.2"] = value

            def follows(expected: str = str(value)) -> bool:
                return cluster.annotations("worker-a").get(ANNOTATION) == expected

            wait_for(
                follows,
                timeout=10,
                what=f"the deletion cost to follow the gauge to {value}",
            )
        assert costs.healthy(0.05)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert len(patches(cluster)) == 3  # one per change, however many passes ran


def test_forbidden_names_the_pods_permission(cluster: Cluster, core: client.CoreV1Api) -> None:
    cluster.emulator[kmock.namespace(NAMESPACE)] << kmock.KubernetesError(
        status=403, reason="Forbidden", message="pods is forbidden"
    )
    with pytest.raises(ScaleForbidden, match="`list` and `patch` on `pods`") as listing:
        updater(core, 9100).sync()
    assert isinstance(listing.value, PermanentError)


@pytest.mark.parametrize(("in_flight", "cost"), [(0, 0), (1, 1), (100, 100), (2**40, 2**31 - 1)])
def test_the_cost_is_the_in_flight_count_within_int32(in_flight: int, cost: int) -> None:
    assert deletion_cost(in_flight) == cost
