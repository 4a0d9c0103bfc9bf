"""Operator commands.

    python -m conversation_events_worker.admin requeue-failed [--conversation-id ID ...]
    python -m conversation_events_worker.admin replay-dead-letters [--limit N]

`requeue-failed` gives FAILED events a fresh attempt budget and publishes them again.
`replay-dead-letters` moves messages from the dead-letter queue back to the main queue, first
resetting their events to PENDING when they had FAILED; messages whose events are already
done are dropped. Both print one JSON summary line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import orjson
import pika
from sqlalchemy import Engine

from conversation_events.errors import PermanentError
from conversation_events.logs import configure_logging
from conversation_events.messaging.contract import EventMessage
from conversation_events.messaging.topology import Topology
from conversation_events.persistence import events as event_repo
from conversation_events.persistence.db import make_engine, translate_errors
from conversation_events.persistence.tables import EventStatus
from conversation_events_worker.broker import (
    connection_parameters,
    declare_topology,
    publish_confirmed,
)
from conversation_events_worker.settings import WorkerSettings


def requeue_failed(
    settings: WorkerSettings, engine: Engine, conversation_ids: Sequence[str] | None
) -> dict[str, int]:
    topology = Topology(settings.exchange_name, settings.queue_name, settings.delivery_limit)
    with translate_errors(), engine.begin() as conn:
        ids = event_repo.requeue_failed(conn, conversation_ids)
        rows = [event_repo.get_event(conn, event_id) for event_id in ids]
    published: list[str] = []
    with _channel(settings, topology) as channel:
        for row in rows:
            if row is None:
                continue
            message = EventMessage.now(
                str(row["id"]), row["conversation_id"], row["user_id"], row["bot_id"]
            )
            publish_confirmed(channel, topology, message)
            published.append(message.event_id)
    with translate_errors(), engine.begin() as conn:
        event_repo.mark_published(conn, published)
    return {"requeued": len(ids), "published": len(published)}


def replay_dead_letters(settings: WorkerSettings, engine: Engine, limit: int) -> dict[str, int]:
    topology = Topology(settings.exchange_name, settings.queue_name, settings.delivery_limit)
    replayed = dropped = 0
    kept: list[int] = []
    with _channel(settings, topology) as channel:
        for _ in range(limit):
            method, _props, body = channel.basic_get(topology.dead_letter_queue, auto_ack=False)
            if method is None:
                break
            try:
                message = EventMessage.from_bytes(body)
            except PermanentError:
                # Kept for a human to inspect: held unacked until the end (a requeue now would
                # hand the same message straight back), then returned to the dead-letter queue.
                kept.append(method.delivery_tag)
                continue
            with translate_errors(), engine.begin() as conn:
                row = event_repo.get_event(conn, message.event_id, lock=True)
                if row is not None and row["status"] == EventStatus.FAILED:
                    event_repo.requeue_failed(conn, [row["conversation_id"]])
                    status: EventStatus | None = EventStatus.PENDING
                else:
                    status = None if row is None else EventStatus(row["status"])
            if status in (EventStatus.PENDING, EventStatus.PROCESSING):
                publish_confirmed(channel, topology, message)
                with translate_errors(), engine.begin() as conn:
                    event_repo.mark_published(conn, [message.event_id])
                replayed += 1
            else:
                dropped += 1  # unknown or already done: nothing left to do for it
            channel.basic_ack(method.delivery_tag)
        for tag in kept:
            channel.basic_nack(tag, requeue=True)
    return {"replayed": replayed, "dropped": dropped, "malformed_kept": len(kept)}


class _channel:
    """A confirm-mode channel with the topology declared, closed on exit."""

    def __init__(self, settings: WorkerSettings, topology: Topology) -> None:
        self._params = connection_parameters(
            settings.amqp_url.get_secret_value(), settings.heartbeat_s
        )
        self._topology = topology

    def __enter__(self) -> pika.adapters.blocking_connection.BlockingChannel:
        self._connection = pika.BlockingConnection(self._params)
        channel = self._connection.channel()
        channel.confirm_delivery()
        declare_topology(channel, self._topology)
        return channel

    def __exit__(self, *exc: object) -> None:
        if self._connection.is_open:
            self._connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conversation_events_worker.admin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    requeue = sub.add_parser("requeue-failed", help="retry FAILED events")
    requeue.add_argument(
        "--conversation-id", action="append", dest="ids", help="only these (repeatable)"
    )
    replay = sub.add_parser("replay-dead-letters", help="move dead letters back to the main queue")
    replay.add_argument("--limit", type=int, default=10_000, help="most messages to move")
    args = parser.parse_args(argv)

    settings = WorkerSettings()
    configure_logging("admin", settings.log_level)
    engine = make_engine(
        settings.database_url.get_secret_value(),
        pool_size=2,
        connect_timeout_s=settings.db_connect_timeout_s,
        statement_timeout_ms=settings.db_statement_timeout_ms,
        deadline_s=settings.db_deadline_s,
        application_name="conversation-events-admin",
    )
    try:
        if args.command == "requeue-failed":
            summary = requeue_failed(settings, engine, args.ids)
        else:
            summary = replay_dead_letters(settings, engine, args.limit)
    finally:
        engine.dispose()
    sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
