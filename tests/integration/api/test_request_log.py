"""The request log: one JSON line per request, with what an operator needs and nothing private."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest
from tests.integration.api.conftest import API_KEY, as_key, unique_tenant
from tests.support.payloads import conversation

from conversation_events.logs import JsonFormatter

END = "/v1/conversations/end"


class Lines(logging.Handler):
    """Every record as the process would write it, formatted where it is emitted (the
    request's context variables are set there)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter("api"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name != "httpx":  # the test's own client logs the URLs it requests
            self.lines.append(self.format(record))

    def requests(self) -> list[dict]:
        entries = [orjson.loads(line) for line in self.lines]
        return [e for e in entries if e["logger"] == "conversation_events_api.requests"]


@pytest.fixture
def logged() -> Iterator[Lines]:
    handler = Lines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def test_one_line_per_request_names_route_key_and_tenant_never_content(
    make_client: Callable[..., httpx.Client],
    new_key: Callable[..., str],
    logged: Lines,
) -> None:
    client = make_client()
    tenant = unique_tenant()
    key_name = f"ingest-{uuid.uuid4().hex[:8]}"
    key = new_key(tenant, "ingest,read", name=key_name)
    secret_words = f"my secret is {uuid.uuid4().hex}"
    body = conversation(conversation_id=f"conv-{uuid.uuid4().hex}")
    body["conversation_log"][0]["content"] = secret_words
    logged.lines.clear()

    accepted = client.post(END, json=body, headers={**as_key(key), "X-Request-ID": "req-1"})
    assert accepted.status_code == 202, accepted.text
    read = client.get(f"/v1/conversations/{body['conversation_id']}", headers=as_key(key))
    assert read.status_code == 200
    refused = client.post(END, json=body, headers={"X-API-Key": "not-a-key-" + "x" * 30})
    assert refused.status_code == 401
    assert client.get("/healthz").status_code == 200  # a passing probe is not logged

    entries = logged.requests()
    assert [(e["method"], e["route"], e["status"]) for e in entries] == [
        ("POST", END, 202),
        ("GET", "/v1/conversations/{conversation_id}", 200),
        ("POST", END, 401),
    ]
    post, get, unauthorized = entries
    assert post["request_id"] == "req-1"
    assert get["request_id"] == read.headers["x-request-id"]
    for entry in (post, get):
        assert entry["key"] == key_name and entry["tenant"] == tenant
        assert entry["duration_ms"] >= 0
    assert "key" not in unauthorized and unauthorized["tenant"] is None

    # Nothing the client sent beyond ids' shapes: no content, no key, no path values.
    everything = "\n".join(logged.lines)
    for private in (secret_words, key, API_KEY, "not-a-key-", body["conversation_id"]):
        assert private not in everything


def test_the_request_log_can_be_turned_off(
    make_client: Callable[..., httpx.Client], logged: Lines
) -> None:
    client = make_client(request_log=False)
    logged.lines.clear()
    assert client.post(END, json=conversation()).status_code == 202
    assert logged.requests() == []
