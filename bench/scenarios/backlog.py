"""A pre-loaded backlog: stored, unprocessed events, and their messages put on a queue."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

import pika
from sqlalchemy import text

from bench import infra
from bench.infra import AMQP_URL
from bench.payloads import bodies
from bench.scenarios.common import UNFINISHED, Run, run_module

Row = tuple[str, str, str, str]


def preload_template(events: int, users: int) -> str:
    """A database holding `events` stored, unprocessed events (copied for every run)."""
    from conversation_events.persistence.events import NewEvent, content_hash, insert_events

    url = infra.create_database("backlog")
    engine = infra.engine_for(url, 1)
    batch: list[NewEvent] = []
    prefix = f"pre{uuid.uuid4().hex[:6]}"
    with engine.begin() as conn:
        for b in bodies(prefix, events, users):
            batch.append(
                NewEvent(
                    id=str(uuid.uuid4()),
                    conversation_id=b["conversation_id"],
                    user_id=b["user_id"],
                    bot_id=b["bot_id"],
                    bot_name=b["bot_name"],
                    bot_type=b["bot_type"],
                    agent_tag=b["agent_tag"],
                    start_time=datetime.fromisoformat(b["start_time"]),
                    end_time=datetime.fromisoformat(b["end_time"]),
                    conversation_log=b["conversation_log"],
                    metadata=b.get("metadata"),
                    content_hash=content_hash(b),
                )
            )
            if len(batch) == 1000:
                insert_events(conn, batch)
                batch = []
        if batch:
            insert_events(conn, batch)
        conn.execute(text("UPDATE conversation_events SET published_at = now()"))
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            text("VACUUM ANALYZE conversation_events")
        )
    engine.dispose()
    return url


def event_ids(url: str, scored_only: bool = False) -> list[Row]:
    """Every stored event not finished yet (a database may also hold finished history); with
    `scored_only`, those whose processing scores the conversation (and so updates the user's
    friendship row: the others are skipped)."""
    from conversation_events.domain.conversation import is_scored_bot_type

    engine = infra.engine_for(url, 1)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, conversation_id, user_id, bot_id, bot_type FROM conversation_events"
                f" WHERE {UNFINISHED}"
            )
        ).all()
    engine.dispose()
    return [
        (str(r[0]), r[1], r[2], r[3]) for r in rows if not scored_only or is_scored_bot_type(r[4])
    ]


def publish(
    channel: pika.adapters.blocking_connection.BlockingChannel,
    exchange: str,
    routing_key: str,
    rows: Sequence[Row],
    progress: Callable[[int], None] = lambda _: None,
    rate: float = 0,
) -> None:
    """One event message per row, persistent, as the API's publisher sends them; at most
    `rate` messages per second when it is set (on schedule: a late message is sent at once)."""
    from conversation_events.messaging.contract import EventMessage

    started = time.monotonic()
    for i, (event_id, cid, uid, bid) in enumerate(rows):
        if rate:
            ahead = started + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        channel.basic_publish(
            exchange,
            routing_key,
            EventMessage.now(event_id, cid, uid, bid).to_bytes(),
            pika.BasicProperties(
                content_type="application/json", delivery_mode=2, message_id=event_id
            ),
        )
        if i % 500 == 0:
            progress(i)


def publish_backlog(kind: str, run: Run) -> int:
    """Queue one message per stored event, in the format `kind`'s worker consumes."""
    rows = event_ids(run.url)
    if kind == "celery":
        env = {"BENCH_DATABASE_URL": run.url, "BENCH_AMQP_URL": AMQP_URL, "BENCH_QUEUE": run.queue}
        return int(run_module("bench.baselines.celery.enqueue", env=env).strip())
    from conversation_events.messaging.topology import Topology
    from conversation_events_worker.broker import declare_topology

    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        if kind == "seed":
            channel.queue_declare(queue=run.queue, durable=True)
            publish(channel, "", run.queue, rows)
        else:
            topology = Topology(run.exchange, run.queue, 50)
            declare_topology(channel, topology)
            publish(channel, run.exchange, topology.routing_key, rows)
    finally:
        connection.close()
    infra.wait_for(
        lambda: (infra.queue_ready(run.queue) or 0) >= len(rows), timeout=60, what="backlog queued"
    )
    return len(rows)


def publish_in_background(run: Run, rate: float = 0) -> dict[str, float]:
    """Publish the backlog on a thread (the burst; at `rate` messages/s when set); the dict
    fills in as it goes."""
    from conversation_events.messaging.topology import Topology

    state: dict[str, float] = {"published": 0, "seconds": 0.0}
    rows = event_ids(run.url)

    def progress(i: int) -> None:
        state["published"] = i

    def publish_all() -> None:
        started = time.monotonic()
        topology = Topology(run.exchange, run.queue, 50)
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        publish(connection.channel(), run.exchange, topology.routing_key, rows, progress, rate)
        connection.close()
        state["published"] = len(rows)
        state["seconds"] = time.monotonic() - started

    threading.Thread(target=publish_all, daemon=True).start()
    return state
