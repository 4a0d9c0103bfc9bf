"""The API app in-process (real lifespan: real PostgreSQL, real RabbitMQ), one per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import Engine
from tests.support.server import ServerThread
from tests.support.services import wait_for

from conversation_events.processing import Outcome, ProcessingConfig, ProcessResult, process_batch
from conversation_events_api.main import create_app
from conversation_events_api.server import uvicorn_options
from conversation_events_api.settings import ApiSettings

API_KEY = "integration-test-key-0123456789"


def make_settings(
    database_url: str, amqp_url: str, names: tuple[str, str], **overrides: Any
) -> ApiSettings:
    exchange, queue = names
    values: dict[str, Any] = {
        "database_url": database_url,
        "amqp_url": amqp_url,
        "exchange_name": exchange,
        "queue_name": queue,
        "api_keys": API_KEY,
        "relay_interval_s": 0.2,
        "relay_delay_s": 1.0,
        # The session's database keeps other tests' PENDING events (no worker consumes them):
        # re-driven after the default 120 s, they would land in this test's queue.
        "relay_redrive_after_s": 3600.0,
        "db_connect_timeout_s": 1.0,
        **overrides,
    }
    return ApiSettings(**values)


@pytest.fixture
def make_client(
    database_url: str, amqp_url: str, names: tuple[str, str]
) -> Iterator[Callable[..., httpx.Client]]:
    """Start an app with optional settings overrides; waits until it is ready."""
    servers: list[ServerThread] = []
    clients: list[httpx.Client] = []

    def factory(require_broker: bool = True, **overrides: Any) -> httpx.Client:
        settings = make_settings(
            overrides.pop("database_url", database_url),
            overrides.pop("amqp_url", amqp_url),
            names,
            **overrides,
        )
        app = create_app(settings)
        server = ServerThread(app, **uvicorn_options(settings, app.state.in_flight)).__enter__()
        client = server.client(headers={"X-API-Key": API_KEY})
        servers.append(server)
        clients.append(client)
        query = "" if require_broker else "?broker=optional"
        wait_for(
            lambda: client.get(f"/readyz{query}").status_code == 200, timeout=15, what="readyz"
        )
        return client

    yield factory
    for client in clients:
        client.close()
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., httpx.Client]) -> httpx.Client:
    return make_client()


def unique_tenant() -> str:
    """A tenant no other test uses."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def new_key(client: httpx.Client) -> Callable[..., str]:
    """Create a key through the admin endpoint with the bootstrap key; returns the key."""

    def create(tenant: str, scopes: str = "ingest,read,admin", name: str | None = None) -> str:
        response = client.post(
            "/v1/admin/keys",
            json={
                "name": name or f"key-{uuid.uuid4().hex[:8]}",
                "tenant": tenant,
                "scopes": scopes.split(","),
            },
        )
        assert response.status_code == 201, response.text
        key: str = response.json()["key"]
        return key

    return create


def as_key(key: str) -> dict[str, str]:
    """Request headers that authenticate with `key`."""
    return {"X-API-Key": key}


@pytest.fixture
def admin(new_key: Callable[..., str]) -> dict[str, str]:
    """Request headers of a key with every scope, in a tenant of its own."""
    return as_key(new_key(unique_tenant()))


def process(engine: Engine, event_id: str) -> None:
    """What a worker does with the event's message (these tests run no worker)."""
    config = ProcessingConfig(zone=ZoneInfo("UTC"), max_attempts=3, lease_s=60)
    result = process_batch(engine, [event_id], config)[event_id]
    assert isinstance(result, ProcessResult) and result.outcome is Outcome.PROCESSED, result
