"""Validation, limits, authentication and the read endpoints of the API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from tests.integration.api.conftest import API_KEY
from tests.support.payloads import conversation
from tests.support.services import free_port

from conversation_events_api.settings import ApiSettings

END = "/v1/conversations/end"


def error_locs(response: httpx.Response) -> list[tuple]:
    return [tuple(e["loc"]) for e in response.json()["detail"]]


#: Invalid bodies (a change to a valid one) and where their 422 points; batch items too.
INVALID_BODIES = [
    (lambda b: b.pop("conversation_id"), ("body", "conversation_id")),
    (lambda b: b.update(conversation_id=""), ("body", "conversation_id")),
    (lambda b: b.update(conversation_id="   "), ("body", "conversation_id")),
    (lambda b: b.update(user_id="u" * 256), ("body", "user_id")),
    (lambda b: b.update(bot_id=12), ("body", "bot_id")),
    (lambda b: b.update(end_time="2026-11-20T09:00:00+00:00"), ("body", "end_time")),
    (lambda b: b.update(start_time="2026-11-20T09:00:00"), ("body", "start_time")),
    (lambda b: b.update(start_time="yesterday"), ("body", "start_time")),
    (lambda b: b.pop("conversation_log"), ("body", "conversation_log")),
    (lambda b: b.update(conversation_log="hello"), ("body", "conversation_log")),
    (
        lambda b: b["conversation_log"].append({"content": "no speaker"}),
        ("body", "conversation_log", 6, "character"),
    ),
    (lambda b: b.update(user_id="nul\x00byte"), ("body", "user_id")),
    (
        lambda b: b["metadata"].update(session_emotion="ecstatic"),
        ("body", "metadata", "session_emotion"),
    ),
    (
        lambda b: b["metadata"].update(user_initiated_questions=-1),
        ("body", "metadata", "user_initiated_questions"),
    ),
    (lambda b: b.update(status="PROCESSED"), ("body",)),
    (lambda b: b.update(start_time=1700000000), ("body", "start_time")),
    (
        lambda b: b["metadata"].update(new_memories_count="3"),
        ("body", "metadata", "new_memories_count"),
    ),
    (
        lambda b: b["metadata"].update(user_initiated_questions=True),
        ("body", "metadata", "user_initiated_questions"),
    ),
]
INVALID_IDS = [
    "missing-id",
    "empty-id",
    "blank-id",
    "id-too-long",
    "wrong-type",
    "end-before-start",
    "naive-time",
    "bad-time",
    "missing-log",
    "log-not-list",
    "log-item-no-character",
    "nul",
    "unknown-emotion",
    "negative-count",
    "server-owned-field",
    "unix-timestamp",
    "count-as-text",
    "count-as-bool",
]


@pytest.mark.parametrize(("mutate", "loc"), INVALID_BODIES, ids=INVALID_IDS)
def test_invalid_bodies_get_field_level_422(
    client: httpx.Client, mutate: Callable[[dict], object], loc: tuple
) -> None:
    body = conversation()
    mutate(body)
    response = client.post(END, json=body)
    assert response.status_code == 422
    assert loc in error_locs(response)


def test_empty_log_is_accepted(client: httpx.Client) -> None:
    assert client.post(END, json=conversation(messages=0)).status_code == 202


def test_not_json_and_deeply_nested_json_are_4xx(client: httpx.Client) -> None:
    assert (
        client.post(
            END, content=b"{not json", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )
    deep = b'{"metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert client.post(
        END, content=deep, headers={"content-type": "application/json"}
    ).status_code in (400, 413, 422)


def test_too_many_messages_is_422(make_client: Callable[..., httpx.Client]) -> None:
    client = make_client(max_log_items=10)
    response = client.post(END, json=conversation(messages=11))
    assert response.status_code == 422
    assert ("body", "conversation_log") in error_locs(response)


def test_body_over_the_limit_is_413_declared_or_streamed(
    make_client: Callable[..., httpx.Client],
) -> None:
    client = make_client(max_body_bytes=4096)
    body = conversation()
    body["conversation_log"][0]["content"] = "x" * 5000
    declared = client.post(END, json=body)
    assert declared.status_code == 413
    assert declared.json()["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:
        yield b'{"conversation_id": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    streamed = client.post(END, content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", END),
        ("GET", "/v1/conversations/some-id"),
        ("GET", "/v1/friendship/status/some-user"),
    ],
)
def test_every_v1_route_requires_a_valid_key(client: httpx.Client, method: str, path: str) -> None:
    for headers in (
        {"X-API-Key": ""},
        {"X-API-Key": "wrong"},
        {"X-API-Key": "", "Authorization": "Bearer wrong"},
        {"X-API-Key": "", "Authorization": "Basic " + API_KEY},
    ):
        response = client.request(method, path, json=conversation(), headers=headers)
        assert response.status_code == 401, headers
        assert "WWW-Authenticate" in response.headers
    bare = httpx.request(method, f"{client.base_url}{path}", json=conversation())
    assert bare.status_code == 401


def test_bearer_token_is_accepted(client: httpx.Client) -> None:
    headers = {"X-API-Key": "", "Authorization": f"Bearer {API_KEY}"}
    assert client.post(END, json=conversation(), headers=headers).status_code == 202


def test_get_conversation_reports_pending_then_404_for_unknown(client: httpx.Client) -> None:
    body = conversation()
    event_id = client.post(END, json=body).json()["event_id"]
    view = client.get(f"/v1/conversations/{body['conversation_id']}").json()
    assert view["event_id"] == event_id
    assert view["status"] == "PENDING"
    assert view["attempts"] == 0
    assert view["friendship_score_change"] is None
    assert client.get("/v1/conversations/unknown-conversation").status_code == 404


def test_friendship_of_unknown_user_is_404(client: httpx.Client) -> None:
    response = client.get("/v1/friendship/status/nobody-here")
    assert response.status_code == 404


def test_probes_and_metrics_need_no_key(client: httpx.Client) -> None:
    client.post(END, json=conversation())
    plain = httpx.Client(base_url=str(client.base_url))
    try:
        assert plain.get("/healthz").json() == {"status": "ok"}
        ready = plain.get("/readyz").json()
        assert ready == {"status": "ready", "database": "ok", "broker": "ok"}
        text = plain.get("/metrics").text
        assert "conversation_events_accepted_total" in text
        assert "conversation_events_http_request_seconds_bucket" in text
        assert plain.get("/openapi.json").json()["paths"][END]["post"]["responses"]["202"]
    finally:
        plain.close()


def test_api_keys_never_reach_the_logs(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    client.post(END, json=conversation(), headers={"X-API-Key": "not-the-key-secret"})
    client.post(END, json=conversation())
    assert API_KEY not in caplog.text
    assert "not-the-key-secret" not in caplog.text


def test_refusals_are_counted_by_reason(client: httpx.Client) -> None:
    def rejected(reason: str) -> float:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith(f'conversation_events_rejected_total{{reason="{reason}"}}'):
                return float(line.split()[-1])
        return 0.0

    before = {r: rejected(r) for r in ("invalid", "unauthorized")}
    client.post(END, json={"conversation_id": "x"})
    client.post(END, json=conversation(), headers={"X-API-Key": "wrong"})
    assert rejected("invalid") == before["invalid"] + 1
    assert rejected("unauthorized") == before["unauthorized"] + 1


def test_non_numeric_content_length_is_400(client: httpx.Client) -> None:
    import socket

    host, port = client.base_url.host, client.base_url.port
    request = (
        f"POST {END} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {API_KEY}\r\n"
        "Content-Type: application/json\r\nContent-Length: abc\r\nConnection: close\r\n\r\n{}"
    )
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(request.encode())
        status_line = sock.recv(1024).split(b"\r\n", 1)[0]
    assert b" 400 " in status_line


def test_openapi_declares_both_ways_to_send_the_key(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"apiKey", "http"}
    assert document["paths"][END]["post"]["security"]


def test_instants_beyond_the_clock_skew_are_422_and_within_it_accepted(
    client: httpx.Client,
) -> None:
    far = conversation(end_time=datetime(2999, 1, 1, tzinfo=UTC))
    response = client.post(END, json=far)
    assert response.status_code == 422
    locs = [tuple(e["loc"]) for e in response.json()["detail"]]
    assert ("body", "end_time") in locs and ("body", "start_time") in locs

    soon = conversation(end_time=datetime.now(UTC) + timedelta(seconds=60))  # skew is 300 s
    assert client.post(END, json=soon).status_code == 202
    late = conversation(end_time=datetime.now(UTC) + timedelta(seconds=600))
    assert client.post(END, json=late).status_code == 422


def test_metrics_on_a_port_of_their_own_are_not_on_the_api_port(
    make_client: Callable[..., httpx.Client],
) -> None:
    port = free_port()
    client = make_client(metrics_port=port)
    assert client.get("/metrics").status_code == 404
    answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert answer.status_code == 200
    assert "conversation_events_accepted_total" in answer.text


def test_production_serves_no_api_documentation_unless_asked(
    make_client: Callable[..., httpx.Client],
) -> None:
    def settings(**values: Any) -> ApiSettings:
        return ApiSettings.model_construct(**{"docs_enabled": None, **values})

    assert not settings(environment="production").serves_docs
    assert settings(environment="production", docs_enabled=True).serves_docs
    assert settings(environment="development").serves_docs
    client = make_client(docs_enabled=False)
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code == 404, path
