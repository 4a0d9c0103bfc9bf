"""The consumer: prefetch C, batches of at most B, acks on the connection's own thread.

Life of a message: the connection thread receives it; whenever one of the C/B pool threads is
free it hands it what arrived, at most B messages (`CE_WORKER_BATCH_SIZE`); the pool thread
processes the batch in one PostgreSQL transaction (`process_batch`; redeliveries add a
committed claim first) and schedules each message's ack/nack back on the connection thread with
`add_callback_threadsafe`, the only thread-safe pika call. The connection thread never does
slow work, so heartbeats are always answered. Under load batches fill up to B; when idle a
batch is one message, so latency never waits for a batch to fill.

While PostgreSQL is unreachable a message is neither acked nor returned: RabbitMQ 3.10 counts
every return toward the quorum queue's `x-delivery-limit`, so bouncing messages through an
outage would dead-letter them although no attempt of theirs was made. A batch that finds the
database unavailable is *held* instead: its messages stay unacked, dispatching pauses (prefetch
then keeps the broker from sending more), a probe thread asks PostgreSQL with capped backoff,
and once it answers the held messages are processed again. The worker is not ready meanwhile.

A consumer the broker cancels (its queue deleted or re-created) is re-subscribed on the same
channel after re-declaring the topology, so acks of messages already received still work. The
broker does not always say so: when a quorum queue is deleted and declared again at once (a
publisher re-declares it), RabbitMQ 3.10 sends no Basic.Cancel and keeps the consumer
registered; the new queue then delivers to it, but the channel drops those deliveries, so they
sit unacked at the broker and nothing more arrives. Only closing the channel releases them. So
a consumer that has received nothing for `CE_WORKER_IDLE_RESUBSCRIBE_S` and holds nothing moves
to a fresh channel: routine (and cheap) when idle, and the end of such a stall otherwise.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import random
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import pika
from opentelemetry import trace
from pika.adapters.blocking_connection import BlockingChannel
from pika.frame import Method
from pika.spec import Basic, BasicProperties
from sqlalchemy import Engine, text

from conversation_events import logs, telemetry
from conversation_events.errors import (
    ConversationEventsError,
    DatabaseUnavailable,
    PermanentError,
    RetryableError,
)
from conversation_events.messaging.contract import EventMessage
from conversation_events.messaging.topology import Topology
from conversation_events.persistence.db import translate_errors
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


_OnMessage = Callable[[BlockingChannel, Basic.Deliver, BasicProperties, bytes], None]


@dataclass(frozen=True, slots=True)
class Delivery:
    channel: BlockingChannel
    tag: int
    body: bytes
    redelivered: bool  # the broker delivered it before (see `process_batch`)
    headers: Mapping[str, Any] | None = None  # AMQP headers: the event's trace context


class Settle(Enum):
    ACK = "ack"
    REQUEUE = "requeue"
    DEAD_LETTER = "dead_letter"
    HOLD = "hold"  # PostgreSQL unreachable: keep it unacked, process it again once it answers


@dataclass
class Health:
    """What /healthz and /readyz report; written by the connection thread."""

    last_loop: float = 0.0
    consuming: bool = False
    holding: bool = False  # paused: messages held until PostgreSQL answers again

    @property
    def ready(self) -> bool:
        return self.consuming and not self.holding


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
        self._held: list[Delivery] = []  # likewise: waiting for PostgreSQL to answer again
        # The probe has a thread of its own (and the engine one connection more than the
        # batches): it must not wait behind batches stuck on a hung database.
        self._prober = ThreadPoolExecutor(1, thread_name_prefix="worker-probe")
        self._probe: Future[str | None] | None = None
        self._probe_at = 0.0
        self._probe_delay = settings.worker_db_probe_base_s
        self._cancelled = False  # the broker cancelled our consumer (connection thread)
        self._tag = ""
        self._last_delivery = 0.0  # likewise (monotonic): when the consumer last got one
        self._first_waiting = 0.0  # likewise: when the oldest of `_arrived` arrived
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
        self._prober.shutdown(wait=True)
        log.info("worker stopped")
        return 0

    def _consume_once(self) -> None:
        connection = pika.BlockingConnection(
            connection_parameters(
                self._settings.amqp_url.get_secret_value(), self._settings.heartbeat_s
            )
        )
        try:
            on_message = functools.partial(self._on_message, connection)
            channel = self._subscribe(connection, on_message)
            self._in_flight = 0
            self._running = 0  # batches of the old connection settle nowhere
            self._arrived.clear()
            self._held.clear()  # the old channel's messages are back in the queue
            metrics.HELD.set(0)
            self.health.consuming = True
            metrics.CONNECTED.set(1)
            log.info(
                "consuming",
                extra={"queue": self._topology.queue, "prefetch": self._settings.worker_prefetch},
            )
            while not self._stop.is_set():
                connection.process_data_events(time_limit=self._wait_limit())
                if self._cancelled:
                    self._resubscribe(channel, on_message)
                elif self._idle_too_long():
                    channel = self._move_to_fresh_channel(connection, channel, on_message)
                self._step(connection)
                self.health.last_loop = time.monotonic()
            self._drain(connection, channel)
        finally:
            self.health.consuming = False
            metrics.CONNECTED.set(0)
            if connection.is_open:
                with contextlib.suppress(*CONNECTION_ERRORS):
                    connection.close()

    def _subscribe(
        self, connection: pika.BlockingConnection, on_message: _OnMessage
    ) -> BlockingChannel:
        """A new channel consuming the queue, with the topology declared."""
        channel = connection.channel()
        channel.add_on_cancel_callback(self._on_cancel)
        declare_topology(channel, self._topology)
        channel.basic_qos(prefetch_count=self._settings.worker_prefetch)
        self._cancelled = False
        self._tag = channel.basic_consume(self._topology.queue, on_message)
        self._last_delivery = time.monotonic()
        return channel

    def _idle_too_long(self) -> bool:
        interval = self._settings.worker_idle_resubscribe_s
        return bool(interval) and (
            self._in_flight == 0 and time.monotonic() - self._last_delivery >= interval
        )

    def _move_to_fresh_channel(
        self, connection: pika.BlockingConnection, old: BlockingChannel, on_message: _OnMessage
    ) -> BlockingChannel:
        """Consume on a new channel, then close the old one (nothing of ours is unacked on it).

        Closing it returns whatever the broker thinks the old consumer holds (see the module
        docstring); the new consumer then receives it.
        """
        channel = self._subscribe(connection, on_message)
        with contextlib.suppress(*CONNECTION_ERRORS):
            old.close()
        metrics.RESUBSCRIBED.labels("idle").inc()
        log.debug("idle: consuming on a fresh channel", extra={"queue": self._topology.queue})
        return channel

    def _on_cancel(self, frame: Method[Basic.Cancel]) -> None:
        """Basic.Cancel from the broker: the queue was deleted (or re-created, or moved)."""
        self._cancelled = True
        self.health.consuming = False
        metrics.RESUBSCRIBED.labels("cancelled").inc()
        log.warning(
            "consumer cancelled by the broker; re-declaring the queue",
            extra={"queue": self._topology.queue, "in_flight": self._in_flight},
        )

    def _resubscribe(self, channel: BlockingChannel, on_message: _OnMessage) -> None:
        """Re-declare the topology and consume again on the same channel.

        The same channel, not a new connection: messages already received stay ours to ack
        (those of a deleted queue went with it; acking them is harmless). A declare the broker
        refuses closes the channel and raises, and `run` reconnects with backoff.
        """
        declare_topology(channel, self._topology)
        self._tag = channel.basic_consume(self._topology.queue, on_message)
        self._cancelled = False
        self.health.consuming = True
        log.info("consuming again after cancellation", extra={"queue": self._topology.queue})

    def _drain(self, connection: pika.BlockingConnection, channel: BlockingChannel) -> None:
        """Stop taking messages, let in-flight ones finish and be acked, within the timeout."""
        channel.basic_cancel(self._tag)
        deadline = time.monotonic() + self._settings.worker_drain_timeout_s
        log.info("draining", extra={"in_flight": self._in_flight, "held": len(self._held)})
        while self._in_flight > 0 and time.monotonic() < deadline:
            if self.health.holding and self._running == 0:
                break  # nothing can finish without the database; the rest returns to the queue
            self._step(connection, coalesce=False)  # delivered before the cancel: still ours
            connection.process_data_events(time_limit=0.1)
            self.health.last_loop = time.monotonic()
        if self._in_flight:
            log.warning(
                "drain ended with unacked messages; they return to the queue",
                extra={"in_flight": self._in_flight, "held": len(self._held)},
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
        self._last_delivery = time.monotonic()
        if not self._arrived:
            self._first_waiting = self._last_delivery
        metrics.IN_FLIGHT.set(self._in_flight)
        self._arrived.append(
            Delivery(channel, method.delivery_tag, body, method.redelivered, properties.headers)
        )

    def _step(self, connection: pika.BlockingConnection, *, coalesce: bool = True) -> None:
        """One turn of the connection thread: probe while holding, otherwise dispatch."""
        if self.health.holding:
            self._probe_database()
        if not self.health.holding:
            self._dispatch(connection, coalesce=coalesce)

    def _wait_limit(self) -> float:
        """How long the connection thread may wait for I/O: until a coalescing window ends."""
        if not self._arrived or self._running >= self._threads or self.health.holding:
            return 0.25  # a settled batch or a delivery wakes the thread sooner
        left = self._first_waiting + self._settings.worker_batch_window_s - time.monotonic()
        return min(0.25, max(0.0, left))

    def _dispatch(self, connection: pika.BlockingConnection, *, coalesce: bool = True) -> None:
        """Hand what arrived to free pool threads, in batches of at most B.

        Messages wait here, not in the pool's queue, while every thread is busy: the next batch
        then takes all that arrived meanwhile, so batches grow with the load by themselves. At
        light load every thread is free and each message would be a batch of its own (one
        transaction, its commit and round trips per event), so a batch smaller than B waits
        for more until its oldest message has waited `CE_WORKER_BATCH_WINDOW_S`, unless every
        message the prefetch lets the broker send is already here.
        """
        size = self._settings.worker_batch_size
        while self._arrived and self._running < self._threads:
            if (
                coalesce
                and len(self._arrived) < size
                # With the whole prefetch window delivered, nothing more can arrive to wait for.
                and self._in_flight < self._settings.worker_prefetch
                and time.monotonic() - self._first_waiting < self._settings.worker_batch_window_s
            ):
                return
            batch, self._arrived = self._arrived[:size], self._arrived[size:]
            self._running += 1
            self._first_waiting = time.monotonic()  # the rest: they waited for a thread
            self._pool.submit(self._work, connection, batch)

    def _work(self, connection: pika.BlockingConnection, batch: list[Delivery]) -> None:
        sent: set[int] = set()

        def settle_early(decided: dict[int, Settle]) -> None:
            sent.update(decided)
            self._send(connection, [(batch[i], decided[i]) for i in sorted(decided)], last=False)

        settles = [Settle.REQUEUE] * len(batch)
        try:
            settles = self.handle_batch(
                [d.body for d in batch],
                [d.redelivered for d in batch],
                settle_early,
                headers=[d.headers for d in batch],
            )
        except Exception:  # never lose the settle callback: a requeue is always safe
            log.exception("unexpected error handling a batch")
        rest = [
            (d, settle)
            for i, (d, settle) in enumerate(zip(batch, settles, strict=True))
            if i not in sent
        ]
        self._send(connection, rest, last=True)

    def _send(
        self,
        connection: pika.BlockingConnection,
        settles: list[tuple[Delivery, Settle]],
        *,
        last: bool,
    ) -> None:
        """Have the connection thread settle these messages (`last`: the batch is done)."""
        # If the connection is gone, the broker redelivers the messages; our effect (if any) is
        # committed and the redeliveries will find the events terminal.
        with contextlib.suppress(*CONNECTION_ERRORS):
            connection.add_callback_threadsafe(functools.partial(self._settle, settles, last))

    def _settle(self, settles: list[tuple[Delivery, Settle]], last: bool) -> None:
        if last:
            self._running -= 1
        held = [delivery for delivery, settle in settles if settle is Settle.HOLD]
        self._in_flight -= len(settles) - len(held)
        metrics.IN_FLIGHT.set(self._in_flight)
        for delivery, settle in settles:
            if settle is Settle.HOLD or not delivery.channel.is_open:
                continue
            if settle is Settle.ACK:
                delivery.channel.basic_ack(delivery.tag)
            else:
                delivery.channel.basic_nack(delivery.tag, requeue=settle is Settle.REQUEUE)
        if held:
            self._hold(held)

    def _hold(self, held: list[Delivery]) -> None:
        """Keep messages unacked and pause dispatching until PostgreSQL answers a probe."""
        self._held.extend(held)
        metrics.HELD.set(len(self._held))
        if self.health.holding:
            return
        self.health.holding = True
        self._probe_delay = self._settings.worker_db_probe_base_s
        self._probe_at = time.monotonic() + _jittered(self._probe_delay)
        log.warning(
            "PostgreSQL unreachable; holding messages unacked until it answers",
            extra={"held": len(self._held)},
        )

    def _probe_database(self) -> None:
        """Start a probe when one is due; on its answer resume, or schedule the next one."""
        if self._probe is None:
            if time.monotonic() >= self._probe_at:
                self._probe = self._prober.submit(self._database_error)
            return
        if not self._probe.done():
            return
        error, self._probe = self._probe.result(), None
        if error is None:
            self._resume()
            return
        metrics.DB_PROBE_FAILURES.inc()
        self._probe_delay = min(self._probe_delay * 2, self._settings.worker_db_probe_cap_s)
        delay = _jittered(self._probe_delay)
        self._probe_at = time.monotonic() + delay
        log.warning(
            "PostgreSQL still unreachable",
            extra={"error": error, "held": len(self._held), "retry_in_s": round(delay, 2)},
        )

    def _database_error(self) -> str | None:
        """None when PostgreSQL answers a trivial query, else why not (on the probe thread)."""
        try:
            with translate_errors(), self._engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # whatever it is, the answer is "not yet"
            return str(exc) or type(exc).__name__
        return None

    def _resume(self) -> None:
        """PostgreSQL answers: process the held messages first, then what arrived meanwhile."""
        held = [d for d in self._held if d.channel.is_open]
        self._held.clear()
        metrics.HELD.set(0)
        self.health.holding = False
        self._arrived[:0] = held
        self._first_waiting = 0.0  # they have waited long enough
        log.info("PostgreSQL answers again; resuming", extra={"held": len(held)})

    def handle_batch(
        self,
        bodies: list[bytes],
        redelivered: list[bool],
        settle_early: Callable[[dict[int, Settle]], None] = lambda _: None,
        *,
        headers: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[Settle]:
        """Process message bodies and decide how to settle each (runs on a pool thread).

        Failures are recorded one by one after the batch's transaction; `settle_early` gets
        what was decided before that (by index), so successes are acked as soon as they are
        committed, not after their neighbours' failures are stored.

        Traced, the batch is one consumer span linked to each message's trace context (its
        `headers`), with the processing's steps as children and each failure, retry and dead
        letter recorded on it.
        """
        if not telemetry.enabled():
            return self._handle_batch(bodies, redelivered, settle_early)
        with telemetry.messaging_span(
            "process", self._topology.queue, __name__, list(headers or [None] * len(bodies))
        ):
            return self._handle_batch(bodies, redelivered, settle_early)

    def _handle_batch(
        self,
        bodies: list[bytes],
        redelivered: list[bool],
        settle_early: Callable[[dict[int, Settle]], None],
    ) -> list[Settle]:
        started = time.perf_counter()
        messages: list[EventMessage | None] = []
        again: set[str] = set()
        for body, seen in zip(bodies, redelivered, strict=True):
            try:
                parsed = EventMessage.from_bytes(body)
            except PermanentError as exc:
                log.error("malformed message dead-lettered", extra={"error": str(exc)})
                _on_span("dead-lettered", exc)
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
            except DatabaseUnavailable as exc:  # not the events' fault: hold, count nothing
                log.warning("PostgreSQL unreachable", extra={"error": str(exc), "events": len(ids)})
                _on_span("held", exc, error=True)
                results = dict.fromkeys(ids, exc)
            except Exception as exc:  # the whole batch: a bug, or another transient error
                _on_span("batch failed", exc, error=True)
                if not isinstance(exc, RetryableError):
                    log.exception("unexpected processing error")
                    exc = RetryableError(f"{type(exc).__name__}: {exc}")
                results = dict.fromkeys(ids, exc)
        decided: dict[int, Settle] = {}
        failed: list[tuple[int, str, ConversationEventsError]] = []
        for i, message in enumerate(messages):
            if message is None:
                decided[i] = Settle.DEAD_LETTER
                continue
            result = results[message.event_id]
            if isinstance(result, DatabaseUnavailable):
                decided[i] = Settle.HOLD
            elif isinstance(result, ConversationEventsError):
                failed.append((i, message.event_id, result))
            else:
                with _logging_event(message.event_id):
                    decided[i] = self._settle_result(result, started)
        if failed:
            settle_early(dict(decided))
            for i, event_id, error in failed:
                with _logging_event(event_id):
                    decided[i] = self._settle_failure(event_id, error, claimed=event_id in again)
        return [decided[i] for i in range(len(messages))]

    def _settle_result(self, result: ProcessResult, started: float) -> Settle:
        """How to settle a message whose event the batch's transaction finished."""
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

    def _settle_failure(
        self, event_id: str, error: ConversationEventsError, *, claimed: bool
    ) -> Settle:
        """Record a failed attempt, then settle its message.

        A retry is not a requeue: the event goes back to PENDING with a not-before instant
        (capped, jittered backoff) and the relay republishes it when due, so the message is
        acked now and the delay holds neither a message nor a thread. A failure that cannot be
        recorded is held: no attempt counts unless PostgreSQL counted it. `claimed`: the
        processor counted this attempt before it began (a redelivery).
        """
        permanent = isinstance(error, PermanentError)
        delay = 0.0 if permanent else self._backoff(event_id)
        try:
            status = self._record(
                event_id, str(error), permanent=permanent, claimed=claimed, retry_in_s=delay
            )
        except RetryableError:
            return Settle.HOLD
        if permanent or status is EventStatus.FAILED:
            _on_span("dead-lettered", error, event_id=event_id, error=True)
        elif status is not None:
            _on_span("retry scheduled", error, event_id=event_id, retry_in_s=round(delay, 3))
        if permanent:
            log.error("permanent failure", extra={"error": str(error)})
            metrics.FAILED.labels("permanent").inc()
            metrics.DEAD_LETTERED.inc()
            return Settle.DEAD_LETTER
        if status is EventStatus.FAILED:
            log.error("attempts exhausted; dead-lettered", extra={"error": str(error)})
            metrics.FAILED.labels("attempts").inc()
            metrics.DEAD_LETTERED.inc()
            self._forget(event_id)
            return Settle.DEAD_LETTER
        if status is None:  # finished meanwhile (another delivery): nothing left to retry
            self._forget(event_id)
            return Settle.ACK
        log.warning(
            "transient failure; retry due later",
            extra={"error": str(error), "retry_in_s": round(delay, 2)},
        )
        metrics.RETRIED.inc()
        return Settle.ACK

    def _record(
        self,
        event_id: str,
        error: str,
        *,
        permanent: bool,
        claimed: bool,
        retry_in_s: float = 0.0,
    ) -> EventStatus | None:
        """Count the failed attempt in PostgreSQL; raises `RetryableError` when it cannot."""
        return fail_event(
            self._engine,
            event_id,
            error,
            permanent=permanent,
            max_attempts=self._settings.max_attempts,
            count_attempt=not claimed,
            retry_in_s=retry_in_s,
        )

    def _backoff(self, event_id: str) -> float:
        with self._failures_lock:
            n = self._failures.get(event_id, 0)
            if len(self._failures) > 10_000:
                self._failures.clear()
            self._failures[event_id] = n + 1
        ceiling = min(self._settings.worker_retry_cap_s, self._settings.worker_retry_base_s * 2**n)
        return _jittered(ceiling)

    def _forget(self, event_id: str) -> None:
        with self._failures_lock:
            self._failures.pop(event_id, None)


def _on_span(
    what: str, exc: BaseException, *, error: bool = False, **attributes: str | float
) -> None:
    """Record a failure (and what became of it) on the current span, when traced."""
    if not telemetry.enabled():
        return
    span = trace.get_current_span()
    span.record_exception(
        exc,
        attributes={
            "conversation_events.outcome": what,
            **{f"conversation_events.{k}": v for k, v in attributes.items()},
        },
    )
    if error:
        span.set_status(trace.StatusCode.ERROR, what)


def _jittered(delay: float) -> float:
    return random.uniform(delay / 2, delay)  # full jitter would allow ~0: keep half


@contextlib.contextmanager
def _logging_event(event_id: str) -> Iterator[None]:
    """Log records inside name this event."""
    token = logs.event_id.set(event_id)
    try:
        yield
    finally:
        logs.event_id.reset(token)
