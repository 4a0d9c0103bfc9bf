"""The consumer: prefetch C, a pool of C threads, acks on the connection's own thread.

Life of a message: the connection thread receives it and hands it to the pool; a pool thread
processes it (its own PostgreSQL transaction) and schedules the ack/nack back on the connection
thread with `add_callback_threadsafe`, the only thread-safe pika call. The connection thread
never does slow work, so heartbeats are always answered.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties
from sqlalchemy import Engine

from conversation_events import logs
from conversation_events.errors import PermanentError, RetryableError
from conversation_events.messaging.contract import EventMessage
from conversation_events.messaging.topology import Topology
from conversation_events.persistence.tables import EventStatus
from conversation_events.processing import (
    Outcome,
    ProcessingConfig,
    ProcessResult,
    fail_event,
    process_event,
)
from conversation_events_worker import metrics
from conversation_events_worker.broker import (
    CONNECTION_ERRORS,
    connection_parameters,
    declare_topology,
)
from conversation_events_worker.settings import WorkerSettings

log = logging.getLogger(__name__)

Processor = Callable[[Engine, str, ProcessingConfig], ProcessResult]


class Settle(Enum):
    ACK = "ack"
    REQUEUE = "requeue"
    DEAD_LETTER = "dead_letter"


@dataclass
class Health:
    """What /healthz and /readyz report; written by the connection thread."""

    last_loop: float = 0.0
    consuming: bool = False


class Consumer:
    def __init__(
        self,
        settings: WorkerSettings,
        engine: Engine,
        config: ProcessingConfig,
        *,
        processor: Processor = process_event,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._config = config
        self._processor = processor
        self._topology = Topology(
            settings.exchange_name, settings.queue_name, settings.delivery_limit
        )
        self._pool = ThreadPoolExecutor(settings.worker_prefetch, thread_name_prefix="worker")
        self._stop = threading.Event()
        self._in_flight = 0  # touched only on the connection thread
        self._failures: dict[str, int] = {}  # consecutive transient failures per event
        self._failures_lock = threading.Lock()
        self.health = Health()

    def request_stop(self) -> None:
        """Begin draining (safe from a signal handler: it only sets a flag)."""
        self._stop.set()

    def run(self) -> int:
        """Consume until stopped; reconnect after broker outages. Returns the exit code."""
        # Each event allocates thousands of short-lived objects (SQLAlchemy statements, rows,
        # the score breakdown), so the default gen-0 threshold (700) runs the cyclic collector
        # constantly over every long-lived library object. Freeze what exists now (it is never
        # garbage) and collect less often; reference counting still frees per-event garbage.
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        delay = 0.5
        while not self._stop.is_set():
            try:
                self._consume_once()
                delay = 0.5
            except CONNECTION_ERRORS as exc:
                self.health.consuming = False
                metrics.CONNECTED.set(0)
                log.warning(
                    "broker connection lost; reconnecting",
                    extra={"error": repr(exc), "retry_in_s": delay},
                )
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
        self._pool.shutdown(wait=True)
        log.info("worker stopped")
        return 0

    def _consume_once(self) -> None:
        connection = pika.BlockingConnection(
            connection_parameters(
                self._settings.amqp_url.get_secret_value(), self._settings.heartbeat_s
            )
        )
        try:
            channel = connection.channel()
            declare_topology(channel, self._topology)
            channel.basic_qos(prefetch_count=self._settings.worker_prefetch)
            on_message = functools.partial(self._on_message, connection)
            tag = channel.basic_consume(self._topology.queue, on_message)
            self._in_flight = 0
            self.health.consuming = True
            metrics.CONNECTED.set(1)
            log.info(
                "consuming",
                extra={"queue": self._topology.queue, "prefetch": self._settings.worker_prefetch},
            )
            while not self._stop.is_set():
                connection.process_data_events(time_limit=0.25)
                self.health.last_loop = time.monotonic()
            self._drain(connection, channel, tag)
        finally:
            self.health.consuming = False
            metrics.CONNECTED.set(0)
            if connection.is_open:
                with contextlib.suppress(*CONNECTION_ERRORS):
                    connection.close()

    def _drain(
        self, connection: pika.BlockingConnection, channel: BlockingChannel, tag: str
    ) -> None:
        """Stop taking messages, let in-flight ones finish and be acked, within the timeout."""
        channel.basic_cancel(tag)
        deadline = time.monotonic() + self._settings.worker_drain_timeout_s
        log.info("draining", extra={"in_flight": self._in_flight})
        while self._in_flight > 0 and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.1)
            self.health.last_loop = time.monotonic()
        if self._in_flight:
            log.warning(
                "drain timeout; unacked messages return to the queue",
                extra={"in_flight": self._in_flight},
            )

    def _on_message(
        self,
        connection: pika.BlockingConnection,
        channel: BlockingChannel,
        method: Basic.Deliver,
        properties: BasicProperties,
        body: bytes,
    ) -> None:
        self._in_flight += 1
        metrics.IN_FLIGHT.set(self._in_flight)
        self._pool.submit(self._work, connection, channel, method.delivery_tag, body)

    def _work(
        self,
        connection: pika.BlockingConnection,
        channel: BlockingChannel,
        delivery_tag: int,
        body: bytes,
    ) -> None:
        settle = Settle.REQUEUE
        try:
            settle = self.handle(body)
        except Exception:  # never lose the settle callback: a requeue is always safe
            log.exception("unexpected error handling a message")
        # If the connection is gone, the broker redelivers the message; our effect (if any) is
        # committed and the redelivery will find the event terminal.
        with contextlib.suppress(*CONNECTION_ERRORS):
            connection.add_callback_threadsafe(
                functools.partial(self._settle, channel, delivery_tag, settle)
            )

    def _settle(self, channel: BlockingChannel, delivery_tag: int, settle: Settle) -> None:
        self._in_flight -= 1
        metrics.IN_FLIGHT.set(self._in_flight)
        if not channel.is_open:
            return
        if settle is Settle.ACK:
            channel.basic_ack(delivery_tag)
        elif settle is Settle.REQUEUE:
            channel.basic_nack(delivery_tag, requeue=True)
        else:
            channel.basic_nack(delivery_tag, requeue=False)

    def handle(self, body: bytes) -> Settle:
        """Process one message body and decide how to settle it (runs on a pool thread)."""
        started = time.perf_counter()
        try:
            message = EventMessage.from_bytes(body)
        except PermanentError as exc:
            log.error("malformed message dead-lettered", extra={"error": str(exc)})
            metrics.DEAD_LETTERED.inc()
            return Settle.DEAD_LETTER
        token = logs.event_id.set(message.event_id)
        try:
            return self._handle(message, started)
        finally:
            logs.event_id.reset(token)

    def _handle(self, message: EventMessage, started: float) -> Settle:
        event_id = message.event_id
        try:
            result = self._processor(self._engine, event_id, self._config)
        except PermanentError as exc:
            log.error("permanent failure", extra={"error": str(exc)})
            self._record(event_id, str(exc), permanent=True)
            metrics.FAILED.labels("permanent").inc()
            metrics.DEAD_LETTERED.inc()
            return Settle.DEAD_LETTER
        except Exception as exc:  # transient, or a bug: retried within the attempt budget
            error = str(exc) if isinstance(exc, RetryableError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, RetryableError):
                log.exception("unexpected processing error")
            status = self._record(event_id, error, permanent=False)
            if status is EventStatus.FAILED:
                log.error("attempts exhausted; dead-lettered", extra={"error": error})
                metrics.FAILED.labels("attempts").inc()
                metrics.DEAD_LETTERED.inc()
                self._forget(event_id)
                return Settle.DEAD_LETTER
            delay = self._backoff(event_id)
            log.warning(
                "transient failure; retrying", extra={"error": error, "retry_in_s": round(delay, 2)}
            )
            metrics.RETRIED.inc()
            self._stop.wait(delay)  # a drain cuts the wait short; the message is requeued
            return Settle.REQUEUE
        self._forget(event_id)
        metrics.PROCESSING_SECONDS.observe(time.perf_counter() - started)
        if result.outcome is Outcome.EXHAUSTED:
            log.error("attempts exhausted; dead-lettered")
            metrics.FAILED.labels("attempts").inc()
            metrics.DEAD_LETTERED.inc()
            return Settle.DEAD_LETTER
        metrics.PROCESSED.labels(result.outcome.value).inc()
        if result.accepted_at is not None and result.outcome is not Outcome.DUPLICATE:
            metrics.LAG_SECONDS.observe(max(0.0, time.time() - result.accepted_at.timestamp()))
        return Settle.ACK

    def _record(self, event_id: str, error: str, *, permanent: bool) -> EventStatus | None:
        """Count the failed attempt in PostgreSQL; None when that is impossible right now."""
        try:
            return fail_event(
                self._engine,
                event_id,
                error,
                permanent=permanent,
                max_attempts=self._settings.max_attempts,
            )
        except RetryableError:
            return None  # the database is down: not the event's fault, so not counted

    def _backoff(self, event_id: str) -> float:
        with self._failures_lock:
            n = self._failures.get(event_id, 0)
            if len(self._failures) > 10_000:
                self._failures.clear()
            self._failures[event_id] = n + 1
        ceiling = min(self._settings.worker_retry_cap_s, self._settings.worker_retry_base_s * 2**n)
        return random.uniform(ceiling / 2, ceiling)  # full jitter would allow ~0: keep half

    def _forget(self, event_id: str) -> None:
        with self._failures_lock:
            self._failures.pop(event_id, None)
