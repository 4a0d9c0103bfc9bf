"""The outbox relay against real PostgreSQL and RabbitMQ: what it republishes, and when it waits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from tests.support.payloads import conversation
from tests.support.pipeline import event_row, store
from tests.support.services import AMQP_URL, wait_for

from conversation_events.messaging.contract import EventMessage
from conversation_events.messaging.topology import Topology
from conversation_events_api.publisher import Publisher
from conversation_events_api.relay import Relay


def unpublished_event(engine: Engine) -> str:
    """An event stored a minute ago whose publish was never confirmed."""
    event_id = store(engine, conversation())
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE conversation_events SET created_at = now() - interval '1 minute'"
                " WHERE id = :id"
            ),
            {"id": event_id},
        )
    return event_id


@pytest.mark.asyncio
async def test_relay_waits_while_its_publisher_is_behind_then_republishes(
    engine: Engine, names: tuple[str, str]
) -> None:
    publisher = Publisher(AMQP_URL, Topology(*names, 50), engine, publish_timeout_s=5)
    relay = Relay(engine, publisher, interval_s=3600, delay_s=1.0, batch_size=100)
    await publisher.start()
    try:
        await asyncio.to_thread(
            wait_for, lambda: publisher.connected, timeout=10, what="publisher connected"
        )
        event_id = unpublished_event(engine)
        # A message that has waited two seconds for its first publish: the process is busy.
        # (Submitted past the publishing loop, which would otherwise take it at once.)
        stale = EventMessage("stale", "c", "u", "b", datetime.now(UTC) - timedelta(seconds=2))
        publisher._pending._items.append(stale)
        assert publisher.behind

        assert await relay.run_once() is False
        assert event_row(engine, event_id)["published_at"] is None

        publisher._pending._items.clear()
        assert not publisher.behind
        await relay.run_once()
        assert event_row(engine, event_id)["published_at"] is not None
    finally:
        await relay.stop()
        await publisher.stop()
