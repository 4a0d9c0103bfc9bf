"""The consumer: prefetch C, batches of at most B, acks on the connection's own thread.

Life of a message: the connection thread receives it; whenever one of the C/B pool threads is
free it hands it what arrived, at most B messages (`CE_WORKER_BATCH_SIZE`); the pool thread
processes the batch in one PostgreSQL transaction (`process_batch`; redeliveries add a
committed claim first) and schedules each message's ack/nack back on the connection thread with
`add_callback_threadsafe`, the only thread-safe pika call. The connection thread never does
slow work, so heartbeats are always answered. Under load batches fill up to B; when idle a
batch is one message, so latency never waits for a batch to fill.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import random
import threading
import time
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties
from sqlalchemy import Engine

from conversation_events import logs
from conversation_events.errors import ConversationEventsError, PermanentError, RetryableError
from conversation_events.messaging.contract import EventMessage
from conversation_events.messaging.topology import Topology
from conversation_events.persistence.tables import EventStatus
from conversation_events.processing import (
    Outcome,
    Outcomes,
    ProcessingConfig,
    ProcessResult,
    fail_event,
    process_batch,
)
from conversation_events_worker import metrics
from conversation_events_worker.broker import (
    CONNECTION_ERRORS,
    connection_parameters,
    declare_topology,
)
from conversation_events_worker.settings import WorkerSettings

log = logging.getLogger(__name__)


class Processor(Protocol):
    def __call__(
        self,
        engine: Engine,
        event_ids: Sequence[str],
        config: ProcessingConfig,
        *,
        redelivered: Collection[str] = ...,
    ) -> Outcomes: ...


@dataclass(frozen=True, slots=True)
class Delivery:
    channel: BlockingChannel
    tag: int
    body: bytes
    redelivered: bool  # the broker delivered it before (see `process_batch`)


class Settle(Enum):
    ACK = "ack"
    REQUEUE = "requeue"
    DEAD_LETTER = "dead_letter"


@dataclass
class Health:
    """What /healthz and /readyz report; written by the connection thread."""

    last_loop: float = 0.0
    consuming: bool = False


def batches_at_once(settings: WorkerSettings) -> int:
    """Pool threads (and database connections) one worker needs: C / B batches, rounded up."""
    return -(-settings.worker_prefetch // settings.worker_batch_size)


class Consumer:
    def __init__(
        self,
        settings: WorkerSettings,
        engine: Engine,
        config: ProcessingConfig,
        *,
        processor: Processor = process_batch,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._config = config
        self._processor = processor
        self._topology = Topology(
            settings.exchange_name, settings.queue_name, settings.delivery_limit
        )
        self._threads = batches_at_once(settings)
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="worker")
        self._running = 0  # batches handed to the pool and not yet settled (connection thread)
        self._stop = threading.Event()
        self._in_flight = 0  # touched only on the connection thread
        self._arrived: list[Delivery] = []  # likewise: received, not yet handed to the pool
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
            self._running = 0  # batches of the old connection settle nowhere
            self._arrived.clear()
            self.health.consuming = True
            metrics.CONNECTED.set(1)
            log.info(
                "consuming",
                extra={"queue": self._topology.queue, "prefetch": self._settings.worker_prefetch},
            )
            while not self._stop.is_set():
                connection.process_data_events(time_limit=0.25)
                self._dispatch(connection)
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
            self._dispatch(connection)  # delivered before the cancel: still ours to finish
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
        self._arrived.append(Delivery(channel, method.delivery_tag, body, method.redelivered))

    def _dispatch(self, connection: pika.BlockingConnection) -> None:
        """Hand what arrived to free pool threads, in batches of at most B.

        Messages wait here, not in the pool's queue, while every thread is busy: the next batch
        then takes all that arrived meanwhile, so batches grow with the load by themselves.
        """
        size = self._settings.worker_batch_size
        while self._arrived and self._running < self._threads:
            batch, self._arrived = self._arrived[:size], self._arrived[size:]
            self._running += 1
            self._pool.submit(self._work, connection, batch)

    def _work(self, connection: pika.BlockingConnection, batch: list[Delivery]) -> None:
        settles = [Settle.REQUEUE] * len(batch)
        try:
            settles = self.handle_batch([d.body for d in batch], [d.redelivered for d in batch])
        except Exception:  # never lose the settle callback: a requeue is always safe
            log.exception("unexpected error handling a batch")
        # If the connection is gone, the broker redelivers the messages; our effect (if any) is
        # committed and the redeliveries will find the events terminal.
        with contextlib.suppress(*CONNECTION_ERRORS):
            connection.add_callback_threadsafe(functools.partial(self._settle, batch, settles))

    def _settle(self, batch: list[Delivery], settles: list[Settle]) -> None:
        self._running -= 1
        self._in_flight -= len(batch)
        metrics.IN_FLIGHT.set(self._in_flight)
        for delivery, settle in zip(batch, settles, strict=True):
            if not delivery.channel.is_open:
                return
            if settle is Settle.ACK:
                delivery.channel.basic_ack(delivery.tag)
            else:
                delivery.channel.basic_nack(delivery.tag, requeue=settle is Settle.REQUEUE)

    def handle_batch(self, bodies: list[bytes], redelivered: list[bool]) -> list[Settle]:
        """Process message bodies and decide how to settle each (runs on a pool thread)."""
        started = time.perf_counter()
        messages: list[EventMessage | None] = []
        again: set[str] = set()
        for body, seen in zip(bodies, redelivered, strict=True):
            try:
                parsed = EventMessage.from_bytes(body)
            except PermanentError as exc:
                log.error("malformed message dead-lettered", extra={"error": str(exc)})
                metrics.DEAD_LETTERED.inc()
                messages.append(None)
                continue
            messages.append(parsed)
            if seen:
                again.add(parsed.event_id)
        ids = [m.event_id for m in messages if m is not None]
        results: Outcomes = {}
        if ids:
            try:
                results = self._processor(self._engine, ids, self._config, redelivered=again)
            except Exception as exc:  # the whole batch: database down, or a bug
                if not isinstance(exc, RetryableError):
                    log.exception("unexpected processing error")
                    exc = RetryableError(f"{type(exc).__name__}: {exc}")
                results = dict.fromkeys(ids, exc)
        settles: list[Settle] = []
        delay = 0.0
        for message in messages:
            if message is None:
                settles.append(Settle.DEAD_LETTER)
                continue
            token = logs.event_id.set(message.event_id)
            try:
                settle, wait = self._decide(
                    message.event_id,
                    results[message.event_id],
                    started,
                    claimed=message.event_id in again,
                )
            finally:
                logs.event_id.reset(token)
            settles.append(settle)
            delay = max(delay, wait)
        if delay:
            self._stop.wait(delay)  # a drain cuts the wait short; the messages are requeued
        return settles

    def _decide(
        self,
        event_id: str,
        result: ProcessResult | ConversationEventsError,
        started: float,
        *,
        claimed: bool,
    ) -> tuple[Settle, float]:
        """How to settle one message, and how long to wait first (retry backoff).

        `claimed`: the processor counted this attempt before it began (a redelivery).
        """
        if isinstance(result, PermanentError):
            log.error("permanent failure", extra={"error": str(result)})
            self._record(event_id, str(result), permanent=True, claimed=claimed)
            metrics.FAILED.labels("permanent").inc()
            metrics.DEAD_LETTERED.inc()
            return Settle.DEAD_LETTER, 0.0
        if isinstance(result, ConversationEventsError):  # transient: within the attempt budget
            error = str(result)
            status = self._record(event_id, error, permanent=False, claimed=claimed)
            if status is EventStatus.FAILED:
                log.error("attempts exhausted; dead-lettered", extra={"error": error})
                metrics.FAILED.labels("attempts").inc()
                metrics.DEAD_LETTERED.inc()
                self._forget(event_id)
                return Settle.DEAD_LETTER, 0.0
            delay = self._backoff(event_id)
            log.warning(
                "transient failure; retrying", extra={"error": error, "retry_in_s": round(delay, 2)}
            )
            metrics.RETRIED.inc()
            return Settle.REQUEUE, delay
        self._forget(event_id)
        metrics.PROCESSING_SECONDS.observe(time.perf_counter() - started)
        if result.outcome is Outcome.EXHAUSTED:
            log.error("attempts exhausted; dead-lettered")
            metrics.FAILED.labels("attempts").inc()
            metrics.DEAD_LETTERED.inc()
            return Settle.DEAD_LETTER, 0.0
        metrics.PROCESSED.labels(result.outcome.value).inc()
        if result.accepted_at is not None and result.outcome is not Outcome.DUPLICATE:
            metrics.LAG_SECONDS.observe(max(0.0, time.time() - result.accepted_at.timestamp()))
        return Settle.ACK, 0.0

    def _record(
        self, event_id: str, error: str, *, permanent: bool, claimed: bool
    ) -> EventStatus | None:
        """Count the failed attempt in PostgreSQL; None when that is impossible right now."""
        try:
            return fail_event(
                self._engine,
                event_id,
                error,
                permanent=permanent,
                max_attempts=self._settings.max_attempts,
                count_attempt=not claimed,
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
