"""``/healthz``, ``/readyz`` and ``/metrics`` of a worker, on their own daemon thread."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from conversation_events.probes import ProbeServer, Reply
from conversation_events_worker.consumer import Health

#: /healthz fails when the connection thread has not looped for this long (it loops every 0.25 s
#: while connected, and at least every 10 s while reconnecting).
STALL_S = 30.0
_TEXT = "text/plain"


def serve(host: str, port: int, health: Health) -> ProbeServer:
    def live() -> Reply:
        stalled = health.consuming and time.monotonic() - health.last_loop > STALL_S
        return (503, b"stalled\n", _TEXT) if stalled else (200, b"ok\n", _TEXT)

    def ready() -> Reply:
        if health.ready:
            return 200, b"consuming\n", _TEXT
        if health.holding:
            return 503, b"holding: PostgreSQL unreachable\n", _TEXT
        return 503, b"not consuming\n", _TEXT

    routes = {
        "/metrics": lambda: (200, generate_latest(), CONTENT_TYPE_LATEST),
        "/healthz": live,
        "/readyz": ready,
    }
    return ProbeServer(
        host, port, routes, not_found=(404, b"not found\n", _TEXT), name="worker-http"
    ).start()
