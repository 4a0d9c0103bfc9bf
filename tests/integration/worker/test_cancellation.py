"""A live worker process whose queue is deleted and re-declared under it.

RabbitMQ sends Basic.Cancel when a consumed queue is deleted; when the queue is declared again
at once (a publisher re-declares it), 3.10 sends nothing and the consumer stays registered but
starved (its deliveries held unacked at the broker, never sent). Either way the worker must
consume again, and every event must apply exactly once.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pika
import pika.exceptions
import pytest
from sqlalchemy import Engine
from tests.support.payloads import conversation, expected_change
from tests.support.pipeline import publish, score_sums, statuses, store
from tests.support.processes import Service, common_env, start_worker
from tests.support.services import AMQP_URL, free_port, queue_counts, wait_for

from conversation_events.messaging.topology import Topology
from conversation_events_worker.settings import WorkerSettings

RESUMED = "consuming again after cancellation"


@dataclass
class LiveWorker:
    service: Service
    port: int
    topology: Topology

    def ready(self) -> bool:
        assert self.service.alive(), self.service.log()
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def resubscribed(self, reason: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        sample = f'conversation_events_consumer_resubscribed_total{{reason="{reason}"}} '
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(sample))


@pytest.fixture
def worker(database_url: str, amqp_url: str, names: tuple[str, str]) -> Iterator[LiveWorker]:
    port = free_port()
    service = start_worker(
        common_env(database_url, amqp_url, *names),
        CE_WORKER_HTTP_PORT=str(port),
        CE_WORKER_IDLE_RESUBSCRIBE_S="2",
    )
    live = LiveWorker(service, port, Topology(*names, WorkerSettings().delivery_limit))
    try:
        wait_for(live.ready, timeout=20, what="worker ready")
        yield live
    finally:
        assert service.stop() == 0, service.log()


def delete_queue(queue: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        connection.channel().queue_delete(queue)
    finally:
        connection.close()


def stored(engine: Engine, n: int, users: list[str]) -> list[tuple[str, dict[str, Any]]]:
    bodies = [conversation(user_id=users[i % len(users)]) for i in range(n)]
    return [(store(engine, body), body) for body in bodies]


def all_processed(engine: Engine, events: list[tuple[str, dict[str, Any]]]) -> bool:
    conversation_ids = [body["conversation_id"] for _, body in events]
    return statuses(engine, conversation_ids) == {"PROCESSED": len(events)}


def assert_applied_once(engine: Engine, events: list[tuple[str, dict[str, Any]]]) -> None:
    users = sorted({body["user_id"] for _, body in events})
    changes, scores = score_sums(engine, users)
    assert scores == changes
    assert changes == {
        u: sum(expected_change(b) for _, b in events if b["user_id"] == u) for u in users
    }


def test_a_cancelled_consumer_redeclares_the_queue_and_consumes_again(
    engine: Engine, worker: LiveWorker
) -> None:
    events = stored(engine, 10, [f"u-{uuid.uuid4().hex[:8]}"])
    delete_queue(worker.topology.queue)  # nobody re-declares it: the worker must

    wait_for(lambda: RESUMED in worker.service.log(), timeout=10, what="re-subscription")
    assert "consumer cancelled by the broker" in worker.service.log()
    wait_for(worker.ready, timeout=10, what="worker ready again")
    assert queue_counts(worker.topology.queue)[1] == 1
    for event_id, body in events:
        publish(worker.topology, event_id, body)
    wait_for(lambda: all_processed(engine, events), timeout=20, what="fresh messages consumed")
    assert_applied_once(engine, events)
    assert worker.resubscribed("cancelled") == 1


def test_a_queue_deleted_during_a_stream_is_consumed_again_and_each_event_applies_once(
    engine: Engine, worker: LiveWorker
) -> None:
    users = [f"u-{uuid.uuid4().hex[:8]}" for _ in range(4)]
    streamed, fresh = stored(engine, 40, users), stored(engine, 20, users)
    done = threading.Event()

    def stream() -> None:
        try:
            for event_id, body in streamed:
                # Each publish re-declares the queue, as the API's publisher does. One that
                # races the deletion is refused: its event stays PENDING, re-driven below.
                with contextlib.suppress(pika.exceptions.AMQPError):
                    publish(worker.topology, event_id, body)
        finally:
            done.set()

    threading.Thread(target=stream, daemon=True).start()
    wait_for(
        lambda: (
            statuses(engine, [b["conversation_id"] for _, b in streamed]).get("PROCESSED", 0) >= 5
        ),
        timeout=15,
        what="the stream under way",
    )
    delete_queue(worker.topology.queue)
    wait_for(done.is_set, timeout=30, what="the stream to end")

    # The broker either cancels the consumer, or (the queue re-declared at once) leaves it
    # registered and starved until the worker moves to a fresh channel once idle.
    for event_id, body in fresh:
        publish(worker.topology, event_id, body)
    wait_for(lambda: all_processed(engine, fresh), timeout=20, what="fresh messages consumed")

    # Messages that went with the deleted queue: their events are re-driven (the relay's job
    # in production), with a few duplicates of done ones; each applies exactly once.
    lost = [
        (i, b) for i, b in streamed if statuses(engine, [b["conversation_id"]]) != {"PROCESSED": 1}
    ]
    for event_id, body in lost + streamed[::7]:
        publish(worker.topology, event_id, body)
    wait_for(lambda: all_processed(engine, streamed), timeout=20, what="every event PROCESSED")
    assert_applied_once(engine, streamed + fresh)
    assert worker.resubscribed("cancelled") + worker.resubscribed("idle") >= 1
    assert worker.ready()
