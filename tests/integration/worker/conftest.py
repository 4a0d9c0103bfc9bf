"""Fixtures of the worker tests: a consumer on a thread against real services."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine
from tests.support.services import apply_policy, wait_for

from conversation_events.errors import ConversationEventsError
from conversation_events.messaging.topology import Topology
from conversation_events.persistence.db import make_engine
from conversation_events.processing import ProcessingConfig, ProcessResult, process_batch
from conversation_events_worker.consumer import Consumer
from conversation_events_worker.settings import WorkerSettings

MAX_ATTEMPTS = 3


@pytest.fixture
def topology(names: tuple[str, str]) -> Topology:
    """The test's topology names, with the queue policy a worker process applies on start."""
    return apply_policy(*names, WorkerSettings().delivery_limit)


@pytest.fixture
def run_consumer(
    database_url: str, amqp_url: str, names: tuple[str, str]
) -> Iterator[Callable[..., Consumer]]:
    """Start a consumer on a thread; stopped (drained) at teardown."""
    running: list[tuple[Consumer, threading.Thread, Engine]] = []

    def start(
        processor: Callable[..., Any] = process_batch,
        db_url: str | None = None,
        unchecked: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> Consumer:
        """`overrides`: WorkerSettings fields that differ from these test defaults;
        `unchecked`: fields set past their validation (e.g. a window longer than allowed)."""
        fields: dict[str, Any] = {
            "database_url": db_url or database_url,
            "amqp_url": amqp_url,
            "exchange_name": names[0],
            "queue_name": names[1],
            "max_attempts": MAX_ATTEMPTS,
            "worker_prefetch": 4,
            "worker_retry_base_s": 0.01,
            "worker_retry_cap_s": 0.05,
            "worker_db_probe_base_s": 0.05,
            "worker_db_probe_cap_s": 0.2,
            "db_connect_timeout_s": 1.0,
        }
        settings = WorkerSettings(**{**fields, **overrides}).model_copy(update=unchecked)
        engine = make_engine(
            settings.database_url.get_secret_value(),
            pool_size=5,
            connect_timeout_s=1.0,
            statement_timeout_ms=5000,
            deadline_s=settings.db_deadline_s,
            application_name="test-worker",
        )
        config = ProcessingConfig(
            zone=ZoneInfo("Asia/Ho_Chi_Minh"), max_attempts=MAX_ATTEMPTS, lease_s=60
        )
        consumer = Consumer(settings, engine, config, processor=processor)
        thread = threading.Thread(target=consumer.run, daemon=True)
        thread.start()
        wait_for(lambda: consumer.health.consuming, timeout=10, what="consumer to start")
        running.append((consumer, thread, engine))
        return consumer

    yield start
    for consumer, thread, engine in running:
        consumer.request_stop()
        thread.join(timeout=30)
        engine.dispose()


def per_event(fn: Callable[[Engine, str, ProcessingConfig], ProcessResult]) -> Callable[..., Any]:
    """A batch processor that runs `fn` for each event (errors become that event's result)."""

    def batch(
        engine: Engine, event_ids: list[str], config: ProcessingConfig, **_: Any
    ) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for event_id in event_ids:
            try:
                results[event_id] = fn(engine, event_id, config)
            except ConversationEventsError as exc:
                results[event_id] = exc
        return results

    return batch
