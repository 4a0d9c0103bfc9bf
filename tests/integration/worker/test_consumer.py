"""The consumer in-process against real PostgreSQL and RabbitMQ: acks, retries, dead letters."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Collection
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine, event
from tests.integration.worker.conftest import MAX_ATTEMPTS, per_event
from tests.support.database import one_value
from tests.support.payloads import conversation, expected_change
from tests.support.pipeline import (
    event_row,
    event_row_when,
    preload,
    publish,
    redrive_due,
    score_sums,
    statuses,
    store,
)
from tests.support.proxy import TcpProxy
from tests.support.services import (
    apply_policy,
    delivery_limit_in_force,
    queue_counts,
    wait_for,
)

from conversation_events.errors import PermanentError, RetryableError
from conversation_events.messaging.contract import EventMessage
from conversation_events.messaging.topology import Topology
from conversation_events.processing import ProcessingConfig, ProcessResult, process_batch
from conversation_events_worker.consumer import Consumer


def retries() -> float:
    return REGISTRY.get_sample_value("conversation_events_retried_total") or 0.0


def in_flight() -> float:
    return REGISTRY.get_sample_value("conversation_events_worker_in_flight") or 0.0


def probe_failures() -> float:
    return REGISTRY.get_sample_value("conversation_events_worker_db_probe_failures_total") or 0.0


def queue_empty(queue: str) -> bool:
    return queue_counts(queue)[0] == 0


def test_processes_event_updates_friendship_and_acks(
    engine: Engine, topology: Topology, run_consumer: Callable[..., Consumer]
) -> None:
    body = conversation(emotion="interesting", questions=2, memories=1)
    event_id = store(engine, body)
    run_consumer()
    publish(topology, event_id, body)

    row = event_row_when(engine, event_id, "PROCESSED")
    assert row["friendship_score_change"] == expected_change(body) == 1.5 + 6 + 15 + 5
    assert row["score_calculation_details"]["scoring_version"] == 1
    assert row["attempts"] == 1
    changes, scores = score_sums(engine, [body["user_id"]])
    assert scores[body["user_id"]] == changes[body["user_id"]] == expected_change(body)
    wait_for(lambda: queue_counts(topology.queue) == (0, 1), timeout=5, what="message acked")


def test_duplicate_deliveries_apply_once(
    engine: Engine, topology: Topology, run_consumer: Callable[..., Consumer]
) -> None:
    body = conversation()
    event_id = store(engine, body)
    for _ in range(3):
        publish(topology, event_id, body)
    run_consumer()

    event_row_when(engine, event_id, "PROCESSED")
    wait_for(lambda: queue_empty(topology.queue), timeout=10, what="all copies acked")
    _, scores = score_sums(engine, [body["user_id"]])
    assert scores[body["user_id"]] == expected_change(body)


def test_next_lesson_events_are_skipped(
    engine: Engine, topology: Topology, run_consumer: Callable[..., Consumer]
) -> None:
    body = conversation(bot_type="NEXT_LESSON")
    event_id = store(engine, body)
    run_consumer()
    publish(topology, event_id, body)
    row = event_row_when(engine, event_id, "SKIPPED")
    assert row["friendship_score_change"] is None
    assert score_sums(engine, [body["user_id"]]) == ({}, {})


def test_unknown_event_and_malformed_body_are_dead_lettered(
    topology: Topology, run_consumer: Callable[..., Consumer]
) -> None:
    run_consumer()
    publish(topology, "00000000-0000-4000-8000-000000000000", conversation())
    publish(topology, "", raw=b"not json at all")
    wait_for(
        lambda: queue_counts(topology.dead_letter_queue)[0] == 2,
        timeout=15,
        what="two dead letters",
    )
    assert queue_empty(topology.queue)


def test_an_unknown_major_version_is_dead_lettered_with_a_clear_error(
    engine: Engine,
    topology: Topology,
    run_consumer: Callable[..., Consumer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A later major version is refused, not guessed at: the message goes to the dead-letter
    queue and the event stays as it was, while a later minor version with unknown fields is
    processed."""
    caplog.set_level(logging.ERROR, logger="conversation_events_worker.consumer")
    refused, accepted = conversation(), conversation()
    refused_id, accepted_id = store(engine, refused), store(engine, accepted)
    run_consumer()

    def versioned(event_id: str, body: dict[str, Any], version: str) -> bytes:
        message = EventMessage.now(
            event_id, body["conversation_id"], body["user_id"], body["bot_id"]
        )
        return orjson.dumps({**orjson.loads(message.to_bytes()), "version": version, "x": 1})

    publish(topology, refused_id, raw=versioned(refused_id, refused, "2.0"))
    publish(topology, accepted_id, raw=versioned(accepted_id, accepted, "1.9"))
    event_row_when(engine, accepted_id, "PROCESSED")
    wait_for(
        lambda: queue_counts(topology.dead_letter_queue)[0] == 1, timeout=10, what="dead letter"
    )
    assert event_row(engine, refused_id)["status"] == "PENDING"
    errors = [getattr(r, "error", "") for r in caplog.records]
    assert "message version '2.0' is not supported: this worker reads 1.x" in errors


def test_permanent_error_fails_event_once_and_dead_letters(
    engine: Engine, topology: Topology, run_consumer: Callable[..., Consumer]
) -> None:
    calls: list[str] = []

    def broken(engine: Engine, event_id: str, config: ProcessingConfig) -> ProcessResult:
        calls.append(event_id)
        raise PermanentError("conversation cannot be scored")

    body = conversation()
    event_id = store(engine, body)
    run_consumer(processor=per_event(broken))
    publish(topology, event_id, body)

    row = event_row_when(engine, event_id, "FAILED")
    assert row["last_error"] == "conversation cannot be scored"
    wait_for(
        lambda: queue_counts(topology.dead_letter_queue)[0] == 1, timeout=10, what="dead letter"
    )
    assert queue_empty(topology.queue)
    assert calls == [event_id]


def test_always_transient_event_fails_after_the_configured_attempts(
    engine: Engine, topology: Topology, run_consumer: Callable[..., Consumer]
) -> None:
    calls: list[str] = []

    def flaky(
        engine: Engine, event_ids: list[str], config: ProcessingConfig, **options: Any
    ) -> dict[str, Any]:
        # Claims redeliveries like the real processor (counting the attempt), then times out;
        # the consumer counts a first delivery's attempt when it records the failure.
        from conversation_events.persistence import events as repo

        redelivered: Collection[str] = options.get("redelivered", ())
        with engine.begin() as conn:
            repo.claim_many(conn, [i for i in event_ids if i in redelivered], config.lease_s)
        calls.extend(event_ids)
        return dict.fromkeys(event_ids, RetryableError("scoring backend timed out"))

    body = conversation()
    event_id = store(engine, body)
    run_consumer(processor=flaky)
    publish(topology, event_id, body)

    # Each failure is acked and the event left PENDING, due again after its backoff; the relay
    # (here its stand-in, polled) republishes it then.
    row = wait_for(
        lambda: (
            redrive_due(engine, topology, [event_id]) >= 0
            and (r := event_row(engine, event_id))["status"] == "FAILED"
            and r
        ),
        timeout=30,
        what="FAILED",
    )
    assert row["attempts"] == MAX_ATTEMPTS
    assert row["last_error"] == "scoring backend timed out"
    wait_for(
        lambda: queue_counts(topology.dead_letter_queue)[0] == 1, timeout=10, what="dead letter"
    )
    assert queue_empty(topology.queue)
    assert len(calls) == MAX_ATTEMPTS


def test_database_outage_holds_messages_instead_of_exhausting_the_delivery_limit(
    engine: Engine, database_url: str, names: tuple[str, str], run_consumer: Callable[..., Consumer]
) -> None:
    # With the old behaviour (requeue while the database is down) a limit of 2 dead-letters
    # every message within a few retry cycles; held messages are never returned, so never
    # counted by the broker.
    topology = apply_policy(*names, delivery_limit=2)
    proxy, proxied_url = TcpProxy.in_front_of(database_url)
    try:
        consumer = run_consumer(db_url=proxied_url, delivery_limit=2)
        bodies = [conversation(user_id=f"u-{uuid.uuid4().hex[:8]}") for _ in range(3)]
        bodies += [conversation(user_id=bodies[i % 3]["user_id"]) for i in range(5)]
        ids = [store(engine, body) for body in bodies]
        proxy.cut()
        probes_before = probe_failures()
        for event_id, body in zip(ids, bodies, strict=True):
            publish(topology, event_id, body)

        wait_for(lambda: consumer.health.holding, timeout=10, what="the consumer to hold")
        assert not consumer.health.ready
        # Several probe cycles, each a chance to bounce the messages had they been returned.
        wait_for(lambda: probe_failures() >= probes_before + 5, timeout=15, what="failed probes")
        # The management API shows a queue's policy with its next statistics sample (~5 s).
        wait_for(
            lambda: delivery_limit_in_force(topology.queue) == 2,
            timeout=15,
            what="the delivery limit of 2 in force",
        )
        assert consumer.health.holding
        assert queue_counts(topology.dead_letter_queue)[0] == 0
        assert statuses(engine, [b["conversation_id"] for b in bodies]) == {"PENDING": len(ids)}
        proxy.restore()

        wait_for(
            lambda: (
                statuses(engine, [b["conversation_id"] for b in bodies]) == {"PROCESSED": len(ids)}
            ),
            timeout=20,
            what="every event PROCESSED after recovery",
        )
        assert consumer.health.ready
        assert all(event_row(engine, event_id)["attempts"] == 1 for event_id in ids)
        users = sorted({b["user_id"] for b in bodies})
        changes, scores = score_sums(engine, users)
        assert scores == changes
        assert changes == pytest.approx(
            {u: sum(expected_change(b) for b in bodies if b["user_id"] == u) for u in users}
        )
        wait_for(lambda: queue_empty(topology.queue), timeout=10, what="all messages acked")
        assert queue_counts(topology.dead_letter_queue)[0] == 0
    finally:
        proxy.close()


def test_a_transient_failure_holds_neither_its_batch_nor_a_thread(
    engine: Engine, topology: Topology, run_consumer: Callable[..., Consumer]
) -> None:
    # A backoff of 10-20 s: a worker that sleeps it (or holds the batch's acks meanwhile)
    # keeps its whole prefetch of 4 unacked, and the second wave below cannot even arrive.
    bodies = [conversation() for _ in range(8)]
    first, second = bodies[:4], bodies[4:]
    ids = preload(engine, topology, first)
    failing, failures = ids[0], list[str]()

    def once_flaky(
        engine: Engine, event_ids: list[str], config: ProcessingConfig, **options: Any
    ) -> dict[str, Any]:
        if failing not in event_ids or failures:
            return process_batch(engine, event_ids, config, **options)
        failures.append(failing)
        rest = [i for i in event_ids if i != failing]
        results: dict[str, Any] = process_batch(engine, rest, config, **options)
        return {**results, failing: RetryableError("scoring backend timed out")}

    run_consumer(processor=once_flaky, worker_retry_base_s=20.0, worker_retry_cap_s=20.0)
    wait_for(
        lambda: statuses(engine, [b["conversation_id"] for b in first[1:]]) == {"PROCESSED": 3},
        timeout=10,
        what="the failing event's neighbours PROCESSED",
    )
    row = wait_for(
        lambda: (r := event_row(engine, failing))["attempts"] == 1 and r,
        timeout=10,
        what="the failure recorded",
    )
    assert (row["status"], row["published_at"]) == ("PENDING", None)
    due_in = one_value(
        engine,
        "SELECT extract(epoch FROM not_before - now()) FROM conversation_events WHERE id = :id",
        id=failing,
    )
    assert 8 < float(due_in) <= 20

    second_ids = preload(engine, topology, second)
    wait_for(
        lambda: statuses(engine, [b["conversation_id"] for b in second]) == {"PROCESSED": 4},
        timeout=8,
        what="the second wave processed while the retry waits",
    )
    wait_for(lambda: in_flight() == 0, timeout=5, what="nothing left unacked")
    assert redrive_due(engine, topology, [failing]) == 0  # not due yet: the relay waits too

    publish(topology, failing, first[0])  # what the relay does once the retry is due
    row = event_row_when(
        engine, failing, "PROCESSED", timeout=10, what="the retried event PROCESSED"
    )
    assert row["attempts"] == 2
    assert failures == [failing]
    users = [b["user_id"] for b in bodies]
    changes, scores = score_sums(engine, users)
    assert scores == changes == {b["user_id"]: expected_change(b) for b in bodies}
    assert all(event_row(engine, i)["attempts"] == 1 for i in ids[1:] + second_ids)
    wait_for(lambda: queue_empty(topology.queue), timeout=5, what="queue empty")


def test_a_frozen_database_is_held_through_not_hung_on(
    engine: Engine,
    database_url: str,
    topology: Topology,
    run_consumer: Callable[..., Consumer],
) -> None:
    # PostgreSQL's sockets stay open but nothing comes back: without a client-side deadline
    # the batch's thread would wait in recv forever and its messages with it.
    proxy, proxied_url = TcpProxy.in_front_of(database_url)
    armed: list[bool] = []

    def freeze_at_first_statement(*_: Any) -> None:
        if armed and not armed[1:]:
            armed.append(True)
            proxy.freeze()

    def freezing(
        engine: Engine,
        event_ids: list[str],
        config: ProcessingConfig,
        *,
        redelivered: Collection[str] = (),
    ) -> dict[str, Any]:
        # Once the pool is warm, the next batch finds the database hung mid-transaction.
        if armed and not event.contains(engine, "before_cursor_execute", freeze_at_first_statement):
            event.listen(engine, "before_cursor_execute", freeze_at_first_statement)
        return process_batch(engine, event_ids, config, redelivered=redelivered)

    try:
        consumer = run_consumer(
            processor=freezing, db_url=proxied_url, db_deadline_s=1.5, worker_db_probe_cap_s=0.5
        )
        warm_up = conversation()
        preload(engine, topology, [warm_up])
        wait_for(
            lambda: statuses(engine, [warm_up["conversation_id"]]) == {"PROCESSED": 1},
            timeout=10,
            what="the warm-up event",
        )
        armed.append(True)
        users = [f"u-{uuid.uuid4().hex[:8]}" for _ in range(3)]
        bodies = [conversation(user_id=users[i % 3]) for i in range(6)]
        preload(engine, topology, bodies)
        probes_before = probe_failures()

        wait_for(lambda: consumer.health.holding, timeout=10, what="the batch held")
        assert not consumer.health.ready
        wait_for(lambda: probe_failures() >= probes_before + 2, timeout=15, what="failed probes")
        # The connection thread kept looping (heartbeats) while the database was silent.
        assert time.monotonic() - consumer.health.last_loop < 2
        assert statuses(engine, [b["conversation_id"] for b in bodies]) == {"PENDING": 6}
        proxy.thaw()

        wait_for(
            lambda: statuses(engine, [b["conversation_id"] for b in bodies]) == {"PROCESSED": 6},
            timeout=20,
            what="every event PROCESSED after the thaw",
        )
        wait_for(lambda: consumer.health.ready, timeout=5, what="ready again")
        changes, scores = score_sums(engine, users)
        assert scores == changes
        assert changes == pytest.approx(
            {u: sum(expected_change(b) for b in bodies if b["user_id"] == u) for u in users}
        )
        assert len(armed) == 2  # the freeze did happen mid-batch
        wait_for(lambda: queue_empty(topology.queue), timeout=10, what="all messages acked")
        assert queue_counts(topology.dead_letter_queue)[0] == 0
    finally:
        proxy.close()


def test_at_light_load_messages_arriving_within_the_window_share_one_batch(
    engine: Engine, topology: Topology, run_consumer: Callable[..., Consumer]
) -> None:
    # Five messages 50 ms apart: without the window each would find a free thread and be a
    # transaction of its own; with a 1 s window they are one batch (one transaction).
    bodies = [conversation() for _ in range(5)]
    ids = [store(engine, body) for body in bodies]
    batches: list[list[str]] = []

    def recording(
        engine: Engine, event_ids: list[str], config: ProcessingConfig, **options: Any
    ) -> dict[str, Any]:
        batches.append(list(event_ids))
        result: dict[str, Any] = process_batch(engine, event_ids, config, **options)
        return result

    run_consumer(
        processor=recording, worker_prefetch=10, worker_batch_size=10, worker_batch_window_s=1.0
    )
    for event_id, body in zip(ids, bodies, strict=True):
        publish(topology, event_id, body)
        time.sleep(0.05)  # shapes the arrivals; nothing waits on it
    wait_for(
        lambda: statuses(engine, [b["conversation_id"] for b in bodies]) == {"PROCESSED": 5},
        timeout=20,
        what="the five events PROCESSED",
    )
    assert [sorted(b) for b in batches] == [sorted(ids)]


def test_a_batch_does_not_wait_for_messages_the_prefetch_cannot_deliver(
    engine: Engine, topology: Topology, run_consumer: Callable[..., Consumer]
) -> None:
    # A prefetch of 2 under a batch size of 50: once the two are here nothing more can come
    # until they are acked, so waiting out the (here two-minute) window would only stall.
    bodies = [conversation() for _ in range(6)]
    ids = [store(engine, body) for body in bodies]
    run_consumer(
        worker_prefetch=2, worker_batch_size=50, unchecked={"worker_batch_window_s": 120.0}
    )
    for event_id, body in zip(ids, bodies, strict=True):
        publish(topology, event_id, body)
    wait_for(
        lambda: statuses(engine, [b["conversation_id"] for b in bodies]) == {"PROCESSED": 6},
        timeout=60,
        what="the six events PROCESSED well within the window",
    )
