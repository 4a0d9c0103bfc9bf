"""The scaler counts the events waiting in PostgreSQL (the outbox), against the real database.

Work the publishers have not handed to the queue yet is work all the same: a scaler that reads
only the queue keeps one worker while thousands of accepted events wait to be published.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import Engine, create_engine, text
from tests.integration.scaler.scaler_helpers import amqp_connection, declare_quorum_queue
from tests.integration.scaler.test_scaler_loop import MemoryActuator, source_for
from tests.support import services
from tests.support.payloads import conversation
from tests.support.pipeline import new_event
from tests.support.proxy import TcpProxy
from tests.support.services import wait_for

from conversation_events.persistence.db import make_engine
from conversation_events.persistence.events import insert_events, mark_published
from conversation_events_scaler.decision import Observation, ScalingPolicy
from conversation_events_scaler.errors import MetricsUnavailable
from conversation_events_scaler.loop import ScalerLoop, ScalerMetrics
from conversation_events_scaler.outbox_source import WithOutbox


class FixedQueue:
    """A queue observation that never changes (the queue's own reading is tested elsewhere)."""

    def __init__(self, observation: Observation) -> None:
        self.observation = observation

    def read(self) -> Observation:
        return self.observation

    def close(self) -> None:
        pass


@pytest.fixture
def outbox_url() -> Iterator[str]:
    """A database of its own: the count covers every event in it."""
    services.require(services.port_open("127.0.0.1", 5432), "PostgreSQL at 127.0.0.1:5432")
    url = services.create_database("ce_outbox")
    yield url
    services.drop_database(url)


@pytest.fixture
def outbox(outbox_url: str) -> Iterator[Engine]:
    engine = create_engine(outbox_url, pool_size=2)
    yield engine
    engine.dispose()


def store_events(engine: Engine, count: int) -> list[str]:
    events = [new_event(conversation()) for _ in range(count)]
    with engine.begin() as conn:
        insert_events(conn, events)
    return [e.id for e in events]


def set_rows(engine: Engine, ids: list[str], assignments: str) -> None:
    statement = f"UPDATE conversation_events SET {assignments} WHERE id = ANY(CAST(:ids AS uuid[]))"
    with engine.begin() as conn:
        conn.execute(text(statement), {"ids": ids})


def scaler_engine(url: str) -> Engine:
    return make_engine(
        url,
        pool_size=1,
        connect_timeout_s=1,
        statement_timeout_ms=2000,
        deadline_s=2,
        application_name="test-scaler",
    )


def test_only_events_waiting_for_a_publish_are_counted_and_added_to_the_queue(
    outbox: Engine, outbox_url: str
) -> None:
    ids = store_events(outbox, 9)
    with outbox.begin() as conn:
        mark_published(conn, ids[:2])  # the broker confirmed them: they are in the queue
    set_rows(outbox, ids[2:3], "not_before = now() + interval '1 hour'")  # a retry, not yet due
    set_rows(outbox, ids[3:4], "not_before = now() - interval '1 second'")  # a retry now due
    set_rows(outbox, ids[4:5], "status = 'PROCESSED', processed_at = now()")
    set_rows(outbox, ids[5:6], "status = 'PROCESSING', lease_until = now() + interval '5 minutes'")
    queue = FixedQueue(Observation(ready=5, unacked=2, consumers=1, total=7))
    source = WithOutbox(queue, scaler_engine(outbox_url), limit=100)
    try:
        observation = source.read()
        # ids 3, 6, 7, 8: never confirmed, or a retry whose instant has passed.
        assert observation.unpublished == 4
        assert observation.messages() == 7 + 4
        assert observation.messages(ready_only=True) == 5 + 4
        # The count stops at its bound (where the decision is at its maximum anyway).
        bounded = WithOutbox(queue, scaler_engine(outbox_url), limit=3)
        assert bounded.read().unpublished == 3
        bounded.close()
    finally:
        source.close()


def test_an_unreachable_database_leaves_the_scaler_the_queue_alone(outbox_url: str) -> None:
    proxy, url = TcpProxy.in_front_of(outbox_url)
    queue = FixedQueue(Observation(ready=3, unacked=0))
    registry = CollectorRegistry()
    errors = Counter("outbox_errors", "test", registry=registry)
    source = WithOutbox(queue, scaler_engine(url), limit=100, errors=errors)

    def failures() -> float | None:
        return registry.get_sample_value("outbox_errors_total")

    try:
        assert source.read().unpublished == 0
        proxy.cut()
        blind = source.read()
        assert blind.unpublished is None  # not counted, and not taken for zero either
        assert blind.messages() == 3
        assert failures() == 1
        proxy.restore()
        wait_for(lambda: source.read().unpublished == 0, timeout=30, what="the count after the cut")
        # A database that hangs (connection open, no answer): the engine's deadline ends the
        # count, and the poll goes on with the queue alone instead of hanging with it.
        proxy.freeze()
        hung = source.read()
        assert hung.unpublished is None and hung.messages() == 3
        assert failures() == 2
        proxy.thaw()
        wait_for(
            lambda: source.read().unpublished == 0, timeout=30, what="the count after the hang"
        )
    finally:
        source.close()
        proxy.close()


def test_a_failing_queue_read_is_not_hidden_by_the_outbox(outbox_url: str) -> None:
    class Unavailable:
        def read(self) -> Observation:
            raise MetricsUnavailable("management API unreachable")

        def close(self) -> None:
            pass

    source = WithOutbox(Unavailable(), scaler_engine(outbox_url), limit=100)
    try:
        with pytest.raises(MetricsUnavailable):
            source.read()  # the fallback rules apply, as without the outbox
    finally:
        source.close()


def test_the_scaler_scales_out_for_events_that_never_reached_the_queue(
    management_url: str, unique_name: str, outbox: Engine, outbox_url: str
) -> None:
    """Accepted faster than published: 450 events in PostgreSQL, the real queue empty."""
    connection = amqp_connection()
    channel = connection.channel()
    declare_quorum_queue(channel, unique_name)
    queue = source_for(management_url, unique_name)
    try:

        def readable() -> Any:
            try:
                return queue.read()
            except MetricsUnavailable:
                return None

        wait_for(readable, timeout=30, what="the new queue's statistics")
        store_events(outbox, 450)
        policy = ScalingPolicy(
            min_replicas=1, max_replicas=10, target_per_replica=100, stats_lag_s=0
        )

        def one_tick(source: Any) -> tuple[int, str]:
            actuator = MemoryActuator(1)
            loop = ScalerLoop(
                source=source,
                actuator=actuator,
                policy=policy,
                metrics=ScalerMetrics(),
                polling_interval_s=1,
                fast_polling_interval_s=1,
            )
            loop.tick()
            assert loop.last_decision is not None
            return actuator.replicas, loop.last_decision.reason

        # The queue alone: nothing to do.
        assert one_tick(queue)[0] == 1
        # With the outbox: ceil(450 / 100) = 5 workers for the work about to arrive.
        with_outbox = WithOutbox(queue, scaler_engine(outbox_url), limit=1000)
        try:
            replicas, reason = one_tick(with_outbox)
        finally:
            with_outbox.close()
        assert replicas == 5
        assert "450 unpublished" in reason
    finally:
        queue.close()
        channel.queue_delete(unique_name)
        connection.close()
