"""The outbox relay against real PostgreSQL and RabbitMQ: what it republishes, and when it waits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from sqlalchemy import Engine, create_engine, event, text
from tests.support import services
from tests.support.payloads import conversation
from tests.support.pipeline import event_row, store
from tests.support.services import AMQP_URL, queue_counts, wait_for

from conversation_events.messaging.contract import EventMessage
from conversation_events.messaging.topology import Topology
from conversation_events.persistence import retention
from conversation_events_api.publisher import Publisher
from conversation_events_api.relay import Relay


@pytest.fixture(scope="module")
def own_database() -> Iterator[Engine]:
    """A database of this module's own: a relay pass takes every due event it holds."""
    url = services.create_database()
    engine = create_engine(url, pool_size=2)
    yield engine
    engine.dispose()
    services.drop_database(url)


@pytest.fixture
def engine(own_database: Engine) -> Engine:
    with own_database.begin() as conn:
        conn.execute(text("DELETE FROM conversation_events"))
    return own_database


def aged_event(engine: Engine, assignments: str = "published_at = NULL") -> str:
    """An event stored a minute ago, PENDING, then with `assignments` applied to its row."""
    event_id = store(engine, conversation())
    with engine.begin() as conn:
        for change in ("created_at = now() - interval '1 minute'", assignments):
            conn.execute(
                text(f"UPDATE conversation_events SET {change} WHERE id = :id"), {"id": event_id}
            )
    return event_id


def unpublished_event(engine: Engine) -> str:
    """An event stored a minute ago whose publish was never confirmed."""
    return aged_event(engine)


@pytest_asyncio.fixture
async def relay(engine: Engine, names: tuple[str, str]) -> AsyncIterator[Relay]:
    """A connected publisher and a relay that re-drives after 30 s (passes run by the test)."""
    publisher = Publisher(AMQP_URL, Topology(*names, 50), engine, publish_timeout_s=5)
    relay = Relay(
        engine, publisher, interval_s=3600, delay_s=1.0, redrive_after_s=30, batch_size=100
    )
    await publisher.start()
    await asyncio.to_thread(
        wait_for, lambda: publisher.connected, timeout=10, what="publisher connected"
    )
    yield relay
    await relay.stop()
    await publisher.stop()


@pytest.mark.asyncio
async def test_relay_redrives_an_event_published_long_ago_and_never_started(
    engine: Engine, names: tuple[str, str], relay: Relay
) -> None:
    # The broker confirmed it 40 s ago, but its message is gone (returned, purged, or lost).
    vanished = aged_event(engine, "published_at = now() - interval '40 seconds'")
    recent = aged_event(engine, "published_at = now() - interval '5 seconds'")
    started = aged_event(
        engine,
        "published_at = now() - interval '40 seconds', status = 'PROCESSING', "
        "lease_until = now() + interval '1 minute'",
    )
    before = event_row(engine, vanished)["published_at"]
    recent_before = event_row(engine, recent)["published_at"]

    await relay.run_once()

    assert event_row(engine, vanished)["published_at"] > before  # the horizon starts again
    assert event_row(engine, recent)["published_at"] == recent_before
    assert event_row(engine, started)["status"] == "PROCESSING"
    assert wait_for(lambda: queue_counts(names[1])[0] == 1, timeout=10, what="one message")
    assert (await relay.run_once()) is False  # republished once per horizon, not per pass
    assert queue_counts(names[1])[0] == 1


@pytest.mark.asyncio
async def test_relay_waits_for_a_retry_to_be_due(
    engine: Engine, names: tuple[str, str], relay: Relay
) -> None:
    event_id = aged_event(engine, "published_at = NULL, not_before = now() + interval '1 hour'")

    await relay.run_once()
    assert event_row(engine, event_id)["published_at"] is None

    with engine.begin() as conn:
        conn.execute(
            text("UPDATE conversation_events SET not_before = now() WHERE id = :id"),
            {"id": event_id},
        )
    await relay.run_once()
    row = event_row(engine, event_id)
    assert row["published_at"] is not None
    assert row["not_before"] is None
    assert wait_for(lambda: queue_counts(names[1])[0] == 1, timeout=10, what="the retry queued")


@pytest.mark.asyncio
async def test_relay_measures_the_oldest_unfinished_event(
    engine: Engine, names: tuple[str, str], relay: Relay
) -> None:
    from conversation_events_api import metrics

    await relay.run_once()
    assert metrics.OLDEST_UNFINISHED._value.get() == 0

    aged_event(engine, "created_at = now() - interval '2 days', status = 'PROCESSED'")
    aged_event(
        engine,
        "created_at = now() - interval '30 minutes', status = 'PROCESSING', "
        "lease_until = now() + interval '1 hour'",
    )
    store(engine, conversation())
    await relay.run_once()
    assert 1800 <= metrics.OLDEST_UNFINISHED._value.get() < 1800 + 600


@pytest.mark.asyncio
async def test_relay_reports_the_last_purge_run(engine: Engine, relay: Relay) -> None:
    from conversation_events_api import metrics

    def exported() -> tuple[float, float, float, float]:
        return (
            metrics.PURGE_LAST_RUN._value.get(),
            metrics.PURGE_LAST_SECONDS._value.get(),
            metrics.PURGE_LAST_ROWS.labels("content_dropped")._value.get(),
            metrics.PURGE_LAST_ROWS.labels("events_deleted")._value.get(),
        )

    with engine.begin() as conn:
        conn.execute(text("DELETE FROM purge_runs"))
    before = exported()
    await relay.run_once()
    assert exported() == before  # no run recorded yet: nothing to report

    with engine.begin() as conn:
        retention.record_run(conn, seconds=4.0, content_dropped=7, events_deleted=2, batches=3)
        conn.execute(text("UPDATE purge_runs SET finished_at = now() - interval '1 day'"))
        retention.record_run(conn, seconds=1.5, content_dropped=30, events_deleted=5, batches=2)
        latest = conn.execute(text("SELECT max(finished_at) FROM purge_runs")).scalar_one()
    await relay.run_once()

    assert exported() == (latest.timestamp(), 1.5, 30, 5)


@pytest.mark.asyncio
async def test_relay_waits_while_its_publisher_is_behind_then_republishes(
    engine: Engine, names: tuple[str, str]
) -> None:
    publisher = Publisher(AMQP_URL, Topology(*names, 50), engine, publish_timeout_s=5)
    relay = Relay(
        engine, publisher, interval_s=3600, delay_s=1.0, redrive_after_s=60, batch_size=100
    )
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


async def _submit_five_spaced(engine: Engine, publisher: Publisher) -> list[str]:
    """Once `publisher` is connected, five stored events handed to it 20 ms apart; their ids."""
    await asyncio.to_thread(
        wait_for, lambda: publisher.connected, timeout=10, what="publisher connected"
    )
    ids = [store(engine, conversation()) for _ in range(5)]
    for event_id in ids:
        publisher.submit(EventMessage.announcing(event_row(engine, event_id)))
        await asyncio.sleep(0.02)  # shapes the arrivals; nothing waits on it
    return ids


@pytest.mark.asyncio
async def test_the_publishers_confirms_within_its_window_are_recorded_by_one_update(
    engine: Engine, names: tuple[str, str]
) -> None:
    # Five events published 20 ms apart, each its own batch: their confirms are recorded
    # together, once the first has waited the window (here 2 s), in one UPDATE.
    marks: list[str] = []

    def count_marks(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("UPDATE") and "published_at" in statement:
            marks.append(statement)

    event.listen(engine, "before_cursor_execute", count_marks)
    publisher = Publisher(
        AMQP_URL, Topology(*names, 50), engine, publish_timeout_s=5, mark_window_s=2.0
    )
    await publisher.start()
    try:
        ids = await _submit_five_spaced(engine, publisher)
        await asyncio.to_thread(
            wait_for,
            lambda: all(event_row(engine, i)["published_at"] is not None for i in ids),
            timeout=15,
            what="the five confirms recorded",
        )
        assert len(marks) == 1
        assert queue_counts(names[1])[0] == 5
    finally:
        event.remove(engine, "before_cursor_execute", count_marks)
        await publisher.stop()


@pytest.mark.asyncio
async def test_the_messages_submitted_within_the_publish_window_share_one_publish(
    engine: Engine, names: tuple[str, str]
) -> None:
    # Five stored events handed to the publisher 20 ms apart, as five insert batches at light
    # load: with a window far longer than their arrivals (3 s, for a loaded machine) they go
    # out as one batch of five (one publish, its confirms awaited together); without one the
    # first is published alone as soon as it arrives.
    publisher = Publisher(AMQP_URL, Topology(*names, 50), engine, publish_timeout_s=5, window_s=3.0)
    batches: list[int] = []
    publish_now = publisher.publish_now

    async def counting(messages: Sequence[EventMessage], *, source: str = "api") -> list[str]:
        batches.append(len(messages))
        return await publish_now(messages, source=source)

    publisher.publish_now = counting  # type: ignore[method-assign]
    await publisher.start()
    try:
        await _submit_five_spaced(engine, publisher)
        await asyncio.to_thread(
            wait_for, lambda: queue_counts(names[1])[0] == 5, timeout=15, what="five queued"
        )
        assert batches == [5]
    finally:
        await publisher.stop()
