"""Helpers to put events in the database and the queue, and to read results back."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pika
from sqlalchemy import Engine, text

from conversation_events.access import DEFAULT_TENANT
from conversation_events.messaging.contract import EventMessage
from conversation_events.messaging.topology import Topology
from conversation_events.persistence import events as event_repo
from conversation_events.persistence.events import NewEvent, content_hash, insert_events
from conversation_events_worker.broker import declare_topology, publish_confirmed
from tests.spec import expected_change
from tests.support.services import AMQP_URL, wait_for


def new_event(body: dict[str, Any], tenant: str = DEFAULT_TENANT) -> NewEvent:
    """A request body as the API would store it (in `tenant`)."""
    return NewEvent(
        tenant=tenant,
        id=str(uuid.uuid4()),
        conversation_id=body["conversation_id"],
        user_id=body["user_id"],
        bot_id=body["bot_id"],
        bot_name=body.get("bot_name"),
        bot_type=body.get("bot_type"),
        agent_tag=body.get("agent_tag"),
        start_time=datetime.fromisoformat(body["start_time"]),
        end_time=datetime.fromisoformat(body["end_time"]),
        conversation_log=body["conversation_log"],
        metadata=body.get("metadata"),
        content_hash=content_hash(body),
    )


def store(engine: Engine, body: dict[str, Any], tenant: str = DEFAULT_TENANT) -> str:
    """Insert a request body as the API would; returns the event id."""
    with engine.begin() as conn:
        [outcome] = insert_events(conn, [new_event(body, tenant)])
    return outcome.event_id


def publish(
    topology: Topology,
    event_id: str,
    body: dict[str, Any] | None = None,
    raw: bytes | None = None,
    tenant: str = DEFAULT_TENANT,
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        declare_topology(channel, topology)
        if raw is not None:
            channel.basic_publish(topology.exchange, topology.routing_key, raw)
            return
        assert body is not None
        message = EventMessage.now(
            event_id, body["conversation_id"], body["user_id"], body["bot_id"], tenant=tenant
        )
        publish_confirmed(channel, topology, message)
    finally:
        connection.close()


def event_row(engine: Engine, event_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(
            conn.execute(text("SELECT * FROM conversation_events WHERE id = :id"), {"id": event_id})
            .mappings()
            .one()
        )


def event_row_when(
    engine: Engine, event_id: str, status: str, *, timeout: float = 15.0, what: str = ""
) -> dict[str, Any]:
    """The event's row once it has `status` (polled until `timeout`)."""
    return wait_for(
        lambda: (row := event_row(engine, event_id))["status"] == status and row,
        timeout=timeout,
        what=what or status,
    )


def statuses(engine: Engine, conversation_ids: list[str]) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT status, count(*) AS n FROM conversation_events "
                "WHERE conversation_id = ANY(:ids) GROUP BY status"
            ),
            {"ids": conversation_ids},
        )
        return {r.status: r.n for r in rows}


def score_sums(engine: Engine, user_ids: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """(sum of each user's event changes, each user's friendship_score)."""
    with engine.connect() as conn:
        changes = {
            r.user_id: r.total
            for r in conn.execute(
                text(
                    "SELECT user_id, sum(friendship_score_change) AS total "
                    "FROM conversation_events "
                    "WHERE user_id = ANY(:ids) AND status = 'PROCESSED' GROUP BY user_id"
                ),
                {"ids": user_ids},
            )
        }
        scores = {
            r.user_id: r.friendship_score
            for r in conn.execute(
                text(
                    "SELECT user_id, friendship_score FROM friendship_status "
                    "WHERE user_id = ANY(:ids)"
                ),
                {"ids": user_ids},
            )
        }
    return changes, scores


#: Locks the status rows of the users `:u`, in user order (two lockers never deadlock).
LOCK_STATUS_ROWS = text(
    "SELECT user_id FROM friendship_status WHERE user_id = ANY(:u) ORDER BY user_id FOR UPDATE"
)


@contextlib.contextmanager
def friendship_rows_locked(engine: Engine, users: list[str]) -> Iterator[None]:
    """Hold these users' status rows locked meanwhile: a worker processing one of their
    events waits on its lock mid-transaction, as on a slow database."""
    with engine.connect() as conn:
        locked = conn.execute(LOCK_STATUS_ROWS, {"u": users}).all()
        assert len(locked) == len(users)
        try:
            yield
        finally:
            conn.rollback()


def assert_processed_exactly_once(
    engine: Engine, bodies: list[dict[str, Any]], *, timeout: float = 120.0
) -> None:
    """Every body's event PROCESSED (polled until `timeout`), each applied once: a user's score
    and the sum of its events' recorded changes both equal the sum of their expected changes."""
    unique = {b["conversation_id"]: b for b in bodies}
    ids = list(unique)
    wait_for(
        lambda: statuses(engine, ids) == {"PROCESSED": len(ids)},
        timeout=timeout,
        interval=0.5,
        what=f"{len(ids)} events PROCESSED",
    )
    expected: dict[str, float] = {}
    for body in unique.values():
        expected[body["user_id"]] = expected.get(body["user_id"], 0.0) + expected_change(body)
    changes, scores = score_sums(engine, list(expected))
    assert scores == changes == expected


def preload(engine: Engine, topology: Topology, bodies: list[dict[str, Any]]) -> list[str]:
    """Store and publish many events quickly (one statement per 500, one channel)."""
    events = [new_event(b) for b in bodies]
    with engine.begin() as conn:
        for i in range(0, len(events), 500):
            insert_events(conn, events[i : i + 500])
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        declare_topology(channel, topology)
        for event in events:
            message = EventMessage.now(
                event.id, event.conversation_id, event.user_id, event.bot_id, tenant=event.tenant
            )
            publish_confirmed(channel, topology, message)
    finally:
        connection.close()
    return [e.id for e in events]


def redrive_due(engine: Engine, topology: Topology, event_ids: list[str]) -> int:
    """One relay pass over these events only: republish those due (the relay's own query).

    Worker tests run no API; this stands in for its relay, which republishes an event whose
    retry is due (`not_before` passed) or whose message went missing.
    """
    wanted = set(event_ids)
    with engine.begin() as conn:
        rows = event_repo.take_due(conn, unconfirmed_after_s=0, redrive_after_s=3600, limit=1000)
        due = [row for row in rows if str(row["id"]) in wanted]
        if not due:
            return 0
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            for row in due:
                publish_confirmed(channel, topology, EventMessage.announcing(row))
        finally:
            connection.close()
        event_repo.mark_republished(conn, [str(row["id"]) for row in due])
    return len(due)
