"""POST /v1/conversations/end against real PostgreSQL and RabbitMQ."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import Engine, text
from tests.support.database import one_value
from tests.support.payloads import conversation
from tests.support.proxy import TcpProxy
from tests.support.services import AMQP_URL, get_messages, queue_counts, wait_for

from conversation_events.messaging.contract import MESSAGE_TYPE


def stored(engine: Engine, conversation_id: str) -> dict[str, Any] | None:
    """The stored event of a conversation, if there is one."""
    with engine.connect() as conn:
        row = (
            conn.execute(
                text("SELECT * FROM conversation_events WHERE conversation_id = :c"),
                {"c": conversation_id},
            )
            .mappings()
            .first()
        )
    return None if row is None else dict(row)


def assert_relayed(
    engine: Engine, bodies: list[dict], queue: str, *, timeout: float, what: str
) -> None:
    """Within `timeout`, every body's event is recorded as published; then its message is queued."""
    wait_for(
        lambda: all(stored_row(engine, b["conversation_id"])["published_at"] for b in bodies),
        timeout=timeout,
        what=f"the relay to {what}",
    )
    queued = {m["conversation_id"] for _, m in get_messages(queue)}
    assert {b["conversation_id"] for b in bodies} <= queued


def stored_count(engine: Engine, conversation_id: str) -> int:
    """Events stored under `conversation_id`, in any tenant."""
    return int(
        one_value(
            engine,
            "SELECT count(*) FROM conversation_events WHERE conversation_id = :c",
            c=conversation_id,
        )
    )


def stored_row(engine: Engine, conversation_id: str) -> dict[str, Any]:
    """The stored event of a conversation, which must exist."""
    row = stored(engine, conversation_id)
    assert row is not None, f"no event stored for {conversation_id}"
    return row


def test_accepts_stores_pending_and_queues_ids_only(
    client: httpx.Client, engine: Engine, names: tuple[str, str]
) -> None:
    body = conversation()
    response = client.post("/v1/conversations/end", json=body)

    assert response.status_code == 202
    reply = response.json()
    assert reply["status"] == "accepted"
    assert reply["conversation_id"] == body["conversation_id"]
    assert reply["status_url"] == f"/v1/conversations/{body['conversation_id']}"
    row = stored(engine, body["conversation_id"])
    assert row is not None and row["status"] == "PENDING" and str(row["id"]) == reply["event_id"]
    assert row["conversation_log"][0]["content"] == "message 0"

    wait_for(lambda: queue_counts(names[1])[0] == 1, timeout=10, what="one queued message")
    [(props, message)] = get_messages(names[1])
    assert props.message_id == reply["event_id"]
    assert props.delivery_mode == 2
    assert props.type == MESSAGE_TYPE  # what docs/asyncapi.yaml names
    assert "traceparent" not in (props.headers or {})  # untraced: no trace context to carry
    ids = {"event_id", "tenant", "conversation_id", "user_id", "bot_id", "enqueued_at"}
    assert set(message) == ids | {"version"}
    assert (message["tenant"], message["user_id"]) == ("default", body["user_id"])
    wait_for(
        lambda: stored_row(engine, body["conversation_id"])["published_at"] is not None,
        timeout=5,
        what="confirm recorded",
    )


def test_accepts_conversation_logs_alias(client: httpx.Client, engine: Engine) -> None:
    body = conversation()
    body["conversation_logs"] = body.pop("conversation_log")
    assert client.post("/v1/conversations/end", json=body).status_code == 202
    assert len(stored_row(engine, body["conversation_id"])["conversation_log"]) == 6


def test_resend_is_idempotent_and_queued_once(client: httpx.Client, names: tuple[str, str]) -> None:
    body = conversation()
    first = client.post("/v1/conversations/end", json=body).json()
    # The same instants written with another offset are the same content.
    again = dict(body, end_time=body["end_time"].replace("+00:00", "Z"))
    second = client.post("/v1/conversations/end", json=again)

    assert second.status_code == 202
    assert second.json()["event_id"] == first["event_id"]
    wait_for(lambda: queue_counts(names[1])[0] >= 1, timeout=10, what="queued message")
    assert len(get_messages(names[1])) == 1


def test_same_id_other_content_is_a_conflict(client: httpx.Client, engine: Engine) -> None:
    body = conversation()
    first = client.post("/v1/conversations/end", json=body).json()
    changed = dict(body, bot_name="Somebody else")

    response = client.post("/v1/conversations/end", json=changed)

    assert response.status_code == 409
    assert response.json()["code"] == "conflict"
    assert response.json()["event_id"] == first["event_id"]
    assert stored_row(engine, body["conversation_id"])["bot_name"] == "Pika"


def test_concurrent_duplicates_in_one_batch_create_one_event(
    client: httpx.Client, engine: Engine
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    body = conversation()
    with ThreadPoolExecutor(8) as pool:
        replies = list(
            pool.map(lambda _: client.post("/v1/conversations/end", json=body), range(8))
        )

    assert {r.status_code for r in replies} == {202}
    assert len({r.json()["event_id"] for r in replies}) == 1
    assert stored_count(engine, body["conversation_id"]) == 1


def test_database_unreachable_answers_503_with_retry_after_and_writes_nothing(
    make_client: Callable[..., httpx.Client], database_url: str, engine: Engine
) -> None:
    proxy, proxied_url = TcpProxy.in_front_of(database_url)
    try:
        client = make_client(database_url=proxied_url)
        proxy.cut()
        body = conversation()
        response = client.post("/v1/conversations/end", json=body)
        assert response.status_code == 503
        assert int(response.headers["Retry-After"]) > 0
        assert response.json()["code"] == "unavailable"
        assert client.get("/readyz").status_code == 503
        assert stored(engine, body["conversation_id"]) is None

        proxy.restore()
        assert client.post("/v1/conversations/end", json=body).status_code == 202
        assert stored_row(engine, body["conversation_id"])["status"] == "PENDING"
    finally:
        proxy.close()


def kill_api_connections(engine: Engine) -> int:
    """What a PostgreSQL restart does to the API's pooled connections."""
    return int(
        one_value(
            engine,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database()"
            " AND application_name = 'conversation-events-api'",
        )
    )


def test_connections_killed_by_a_database_restart_cost_no_request(
    make_client: Callable[..., httpx.Client], engine: Engine
) -> None:
    client = make_client(relay_interval_s=3600)  # nothing else touches the pool meanwhile
    first = conversation()
    assert client.post("/v1/conversations/end", json=first).status_code == 202
    wait_for(
        lambda: stored_row(engine, first["conversation_id"])["published_at"] is not None,
        timeout=5,
        what="confirm recorded",
    )

    # Each first use of a dead pooled connection is redone on a fresh one.
    assert kill_api_connections(engine) >= 1
    assert client.get(f"/v1/conversations/{first['conversation_id']}").status_code == 200
    assert kill_api_connections(engine) >= 1
    assert client.get("/readyz").status_code == 200
    assert kill_api_connections(engine) >= 1
    bodies = [conversation() for _ in range(5)]
    assert [client.post("/v1/conversations/end", json=b).status_code for b in bodies] == [202] * 5
    assert all(stored_row(engine, b["conversation_id"])["status"] == "PENDING" for b in bodies)


def test_broker_outage_does_not_fail_requests_and_the_relay_catches_up(
    make_client: Callable[..., httpx.Client], engine: Engine, names: tuple[str, str]
) -> None:
    proxy, proxied_url = TcpProxy.in_front_of(AMQP_URL)
    try:
        client = make_client(amqp_url=proxied_url)
        proxy.cut()
        wait_for(
            lambda: client.get("/readyz").json()["broker"] == "unavailable",
            timeout=10,
            what="publisher to notice the outage",
        )
        assert client.get("/readyz?broker=optional").status_code == 200
        bodies = [conversation() for _ in range(5)]
        for body in bodies:
            assert client.post("/v1/conversations/end", json=body).status_code == 202
        assert all(stored_row(engine, b["conversation_id"])["published_at"] is None for b in bodies)

        proxy.restore()
        assert_relayed(engine, bodies, names[1], timeout=30, what="republish after the outage")
    finally:
        proxy.close()
