"""Probes, metrics and the OpenAPI document (SPEC section 2, "Other endpoints")."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.helpers import Api, Target, conversation

pytestmark = pytest.mark.e2e

API_METRICS = (
    "conversation_events_accepted_total",
    "conversation_events_duplicates_total",
    "conversation_events_conflicts_total",
    "conversation_events_published_total",
    "conversation_events_publish_failures_total",
    "conversation_events_relay_republished_total",
    "conversation_events_leases_released_total",
    "conversation_events_publisher_connected",
    "conversation_events_http_request_seconds",
)


def test_healthz_answers_without_a_key(anonymous: httpx.Client) -> None:
    response = anonymous.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_database_and_broker(anonymous: httpx.Client) -> None:
    response = anonymous.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "database": "ok", "broker": "ok"}
    assert anonymous.get("/readyz", params={"broker": "optional"}).status_code == 200
    assert anonymous.get("/readyz", params={"broker": "sometimes"}).status_code == 422


def test_metrics_expose_the_api_series_in_prometheus_text(
    api: Api, anonymous: httpx.Client, target: Target
) -> None:
    api.accept(conversation())  # at least one request observed by this replica's histogram
    response = anonymous.get(target.metrics_url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    missing = [name for name in API_METRICS if f"# TYPE {name}" not in text and name not in text]
    assert not missing, f"metrics not exposed: {missing}"
    assert "conversation_events_http_request_seconds_bucket{" in text


def test_openapi_describes_every_route(anonymous: httpx.Client) -> None:
    response = anonymous.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {
        "/v1/conversations/end",
        "/v1/conversations/{conversation_id}",
        "/v1/friendship/status/{user_id}",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= paths.keys()
    post = paths["/v1/conversations/end"]["post"]["responses"]
    assert {"202", "401", "409", "413", "422", "503"} <= post.keys()
    assert anonymous.get("/docs").status_code == 200


def test_every_response_carries_a_request_id(api: Api) -> None:
    response = api.http.get("/healthz", headers={"X-Request-ID": "e2e-trace-42"})
    assert response.headers["x-request-id"] == "e2e-trace-42"
    assert api.http.get("/healthz").headers["x-request-id"]
