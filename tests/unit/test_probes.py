"""What the worker's and the scaler's probe endpoints answer (Kubernetes acts on the status)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from conversation_events_scaler.server import http_server
from conversation_events_worker.consumer import Health
from conversation_events_worker.http import STALL_S, serve


@pytest.fixture
def health() -> Health:
    return Health(last_loop=time.monotonic(), consuming=True)


@pytest.fixture
def worker(health: Health) -> Iterator[str]:
    server = serve("127.0.0.1", 0, health)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def answer(url: str) -> tuple[int, str]:
    response = httpx.get(url, timeout=5)
    return response.status_code, response.text


def test_worker_liveness_fails_only_when_the_connection_thread_stalls(
    worker: str, health: Health
) -> None:
    assert answer(f"{worker}/healthz") == (200, "ok\n")
    health.last_loop = time.monotonic() - STALL_S - 1
    assert answer(f"{worker}/healthz") == (503, "stalled\n")
    health.consuming = False  # reconnecting: not consuming is not a stall
    assert answer(f"{worker}/healthz") == (200, "ok\n")


def test_worker_readiness_follows_consuming_and_holding(worker: str, health: Health) -> None:
    assert answer(f"{worker}/readyz") == (200, "consuming\n")
    health.holding = True
    assert answer(f"{worker}/readyz") == (503, "holding: PostgreSQL unreachable\n")
    health.holding = health.consuming = False
    assert answer(f"{worker}/readyz") == (503, "not consuming\n")


def test_worker_serves_metrics_and_nothing_else(worker: str) -> None:
    metrics = httpx.get(f"{worker}/metrics", timeout=5)
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "# TYPE" in metrics.text
    assert answer(f"{worker}/admin") == (404, "not found\n")


def test_scaler_health_and_metrics() -> None:
    registry = CollectorRegistry()
    Counter("probe_test_polls", "polls", registry=registry).inc()
    healthy = [True]
    server = http_server("127.0.0.1", 0, registry, lambda: healthy[0]).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert answer(f"{base}/healthz") == (200, '{"status": "ok"}')
        healthy[0] = False
        assert answer(f"{base}/healthz?verbose=1") == (503, '{"status": "stuck"}')
        assert "probe_test_polls_total 1.0" in answer(f"{base}/metrics")[1]
        assert answer(f"{base}/other") == (404, '{"detail": "not found"}')
    finally:
        server.stop()
