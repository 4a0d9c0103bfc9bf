"""``/healthz`` and ``/metrics`` of the scaler."""

from __future__ import annotations

import json
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from conversation_events.probes import ProbeServer, Reply

_JSON = "application/json"


def http_server(
    host: str, port: int, registry: CollectorRegistry, healthy: Callable[[], bool]
) -> ProbeServer:
    """Serves the registry on ``/metrics`` and ``healthy()`` on ``/healthz`` (200 or 503)."""

    def health() -> Reply:
        ok = healthy()
        return 200 if ok else 503, json.dumps({"status": "ok" if ok else "stuck"}).encode(), _JSON

    routes = {
        "/metrics": lambda: (200, generate_latest(registry), CONTENT_TYPE_LATEST),
        "/healthz": health,
    }
    return ProbeServer(
        host, port, routes, not_found=(404, b'{"detail": "not found"}', _JSON), name="scaler-http"
    )
