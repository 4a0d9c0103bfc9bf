"""Operator commands.

    conversation-events-admin requeue-failed [--tenant T] [--conversation-id ID]
    conversation-events-admin replay-dead-letters [--limit N]
    conversation-events-admin migrate-queue
    conversation-events-admin purge [--batch-size N]

`requeue-failed` gives FAILED events a fresh attempt budget and publishes them again.
`replay-dead-letters` moves messages from the dead-letter queue back to the main queue, first
resetting their events to PENDING when they had FAILED; messages whose events are already
done are dropped; messages whose events are unknown here (another database, or erased) and
malformed ones are kept in the dead-letter queue and counted.
`migrate-queue` re-creates a main queue that an earlier version declared with arguments
(dead-lettering, delivery limit) as a queue with its type only, governed by the queue policy,
keeping its messages; it is safe to run again, also after it was interrupted.
`purge` applies the retention policy: it drops the content (log and metadata) of events
processed more than `CE_RETENTION_CONTENT_DAYS` ago and deletes events processed more than
`CE_RETENTION_EVENT_DAYS` ago, in transactions of `--batch-size` rows that skip rows others
hold; FAILED and unfinished events are left alone. It is safe to run at any time and again.
Each prints one JSON summary line.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Sequence

import pika
from pika.adapters.blocking_connection import BlockingChannel
from sqlalchemy import Engine, text

from conversation_events.cli import command_engine, command_parser, print_json
from conversation_events.errors import PermanentError
from conversation_events.messaging.contract import EventMessage
from conversation_events.messaging.policy import (
    apply_queue_policy,
    declared_arguments,
    legacy_arguments,
)
from conversation_events.messaging.topology import Topology
from conversation_events.persistence import events as event_repo
from conversation_events.persistence import retention
from conversation_events.persistence import users as user_repo
from conversation_events.persistence.db import translate_errors
from conversation_events.persistence.tables import EventStatus
from conversation_events_worker.broker import (
    connection_parameters,
    declare_topology,
    publish_confirmed,
)
from conversation_events_worker.settings import PurgeSettings, WorkerSettings

log = logging.getLogger(__name__)


def requeue_failed(
    settings: WorkerSettings,
    engine: Engine,
    conversation_ids: Sequence[str] | None,
    tenant: str | None = None,
) -> dict[str, int]:
    topology = settings.topology()
    with translate_errors(), engine.begin() as conn:
        ids = event_repo.requeue_failed(conn, conversation_ids, tenant=tenant)
        rows = [event_repo.get_event(conn, event_id) for event_id in ids]
    published: list[str] = []
    with _channel(settings, topology) as channel:
        for row in rows:
            if row is None:
                continue
            message = EventMessage.announcing(row)
            publish_confirmed(channel, topology, message)
            published.append(message.event_id)
    with translate_errors(), engine.begin() as conn:
        event_repo.mark_published(conn, published)
    return {"requeued": len(ids), "published": len(published)}


def replay_dead_letters(settings: WorkerSettings, engine: Engine, limit: int) -> dict[str, int]:
    topology = settings.topology()
    replayed = dropped = erased = 0
    kept: list[int] = []  # malformed
    unknown: list[int] = []
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
                if row is None:
                    if user_repo.erased_at(conn, message.tenant, message.user_id) is not None:
                        # Its event went with its user's erasure: nothing of it may remain.
                        erased += 1
                        channel.basic_ack(method.delivery_tag)
                        continue
                    # Nothing here can process it, and it may be the only trace of an event
                    # another database holds: keep it, like a malformed one.
                    unknown.append(method.delivery_tag)
                    continue
                message = dataclasses.replace(message, trace_context=row["trace_context"])
                if row["status"] == EventStatus.FAILED:
                    event_repo.requeue_failed(conn, event_ids=[message.event_id])
                    status: EventStatus | None = EventStatus.PENDING
                else:
                    status = EventStatus(row["status"])
            if status in (EventStatus.PENDING, EventStatus.PROCESSING):
                publish_confirmed(channel, topology, message)
                with translate_errors(), engine.begin() as conn:
                    event_repo.mark_published(conn, [message.event_id])
                replayed += 1
            else:
                dropped += 1  # already done: nothing left to do for it
            channel.basic_ack(method.delivery_tag)
        # Held unacked until now (a requeue at once would hand the same message straight back).
        for tag in kept + unknown:
            channel.basic_nack(tag, requeue=True)
    return {
        "replayed": replayed,
        "dropped": dropped,
        "malformed_kept": len(kept),
        "unknown_kept": len(unknown),
        "erased_dropped": erased,
    }


def purge(settings: WorkerSettings, engine: Engine, batch_size: int) -> dict[str, float]:
    """Apply the retention policy in small transactions until nothing is due.

    Rows past the event retention are deleted first, so no content is dropped from a row that
    is deleted next. Between two full batches it pauses `purge_pause_s`, which leaves the disk
    and the WAL to the accept path's commits most of the time. Its own commits do not wait for
    the WAL flush (`synchronous_commit = off`): one lost in a crash is purged again next run.
    """
    started = time.monotonic()
    dropped = deleted = batches = 0
    for step, days in (
        (retention.delete_events, settings.retention_event_days),
        (retention.drop_content, settings.retention_content_days),
    ):
        while True:
            with translate_errors(), engine.begin() as conn:
                conn.execute(text("SET LOCAL synchronous_commit = off"))
                done = step(conn, days, batch_size)
            batches += 1
            if step is retention.drop_content:
                dropped += done
            else:
                deleted += done
            if done < batch_size:
                break
            time.sleep(settings.purge_pause_s)
    seconds = time.monotonic() - started
    with translate_errors(), engine.begin() as conn:
        retention.record_run(
            conn,
            seconds=seconds,
            content_dropped=dropped,
            events_deleted=deleted,
            batches=batches,
        )
    summary = {
        "content_dropped": dropped,
        "events_deleted": deleted,
        "batches": batches,
        "seconds": round(seconds, 3),
        "content_days": settings.retention_content_days,
        "event_days": settings.retention_event_days,
    }
    log.info("retention purge done", extra=summary)
    return summary


def migrate_queue(settings: WorkerSettings) -> dict[str, object]:
    """Re-create a main queue declared with arguments by an earlier version, keeping messages.

    The queue's messages wait in a holding queue meanwhile, which is bound in the queue's place
    so nothing published in between is lost: bind the holding queue, unbind the old one, move
    its messages, delete it, apply the policy, declare the queue anew (type only), move the
    messages back, delete the holding queue. Consumers of the old queue are cancelled by the
    deletion and consume the new one once it exists. Messages unacked by a consumer at the
    deletion go with the old queue; their events are re-driven by the relay's horizon.
    """
    topology = settings.topology()
    api = settings.management_api()
    legacy = legacy_arguments(api, topology)
    holding = f"{topology.queue}.migrating"
    moved = 0
    with _channel(settings, topology, declare=False) as channel:
        if legacy:
            log.info("migrating queue", extra={"queue": topology.queue, "arguments": legacy})
            _declare_holding(channel, topology, holding)
            channel.queue_unbind(
                topology.queue, topology.exchange, routing_key=topology.routing_key
            )
            moved = _move(channel, topology.queue, holding)
            channel.queue_delete(topology.queue)
        apply_queue_policy(api, topology)
        declare_topology(channel, topology)
        if legacy or declared_arguments(api, holding) is not None:  # also an interrupted run
            _declare_holding(channel, topology, holding)
            channel.queue_unbind(holding, topology.exchange, routing_key=topology.routing_key)
            moved = _move(channel, holding, topology.queue)
            channel.queue_delete(holding)
    return {"migrated": bool(legacy), "removed_arguments": sorted(legacy), "messages": moved}


def _declare_holding(channel: BlockingChannel, topology: Topology, holding: str) -> None:
    channel.exchange_declare(topology.exchange, "direct", durable=True)
    channel.queue_declare(holding, durable=True, arguments=topology.dead_letter_queue_arguments)
    channel.queue_bind(holding, topology.exchange, routing_key=topology.routing_key)


def _move(channel: BlockingChannel, source: str, target: str) -> int:
    """Move every message of `source` to `target`: confirmed publish first, then the ack."""
    moved = 0
    while True:
        method, properties, body = channel.basic_get(source, auto_ack=False)
        if method is None:
            return moved
        channel.basic_publish("", target, body, properties, mandatory=True)
        channel.basic_ack(method.delivery_tag)
        moved += 1


class _channel:
    """A confirm-mode channel (with the topology declared unless asked not to), closed on exit."""

    def __init__(self, settings: WorkerSettings, topology: Topology, *, declare: bool = True):
        self._params = connection_parameters(
            settings.amqp_url.get_secret_value(), settings.heartbeat_s
        )
        self._topology = topology
        self._declare = declare

    def __enter__(self) -> BlockingChannel:
        self._connection = pika.BlockingConnection(self._params)
        channel = self._connection.channel()
        channel.confirm_delivery()
        if self._declare:
            declare_topology(channel, self._topology)
        return channel

    def __exit__(self, *exc: object) -> None:
        if self._connection.is_open:
            self._connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser, sub = command_parser("conversation-events-admin", __doc__)
    requeue = sub.add_parser("requeue-failed", help="retry FAILED events")
    requeue.add_argument(
        "--conversation-id", action="append", dest="ids", help="only these (repeatable)"
    )
    requeue.add_argument(
        "--tenant", help="only this tenant's (the conversation ids' tenant; default: default)"
    )
    replay = sub.add_parser("replay-dead-letters", help="move dead letters back to the main queue")
    replay.add_argument("--limit", type=int, default=10_000, help="most messages to move")
    sub.add_parser(
        "migrate-queue", help="re-create a queue declared with arguments by an earlier version"
    )
    purging = sub.add_parser("purge", help="drop content and delete events past retention")
    purging.add_argument("--batch-size", type=int, help="rows per transaction")
    args = parser.parse_args(argv)

    settings = PurgeSettings() if args.command == "purge" else WorkerSettings()
    summary: dict[str, object]
    with command_engine(settings, "admin") as engine:
        if args.command == "requeue-failed":
            summary = dict(requeue_failed(settings, engine, args.ids, args.tenant))
        elif args.command == "replay-dead-letters":
            summary = dict(replay_dead_letters(settings, engine, args.limit))
        elif args.command == "purge":
            batch = args.batch_size or settings.purge_batch_size
            summary = dict(purge(settings, engine, max(1, batch)))
        else:
            summary = migrate_queue(settings)
    print_json(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
