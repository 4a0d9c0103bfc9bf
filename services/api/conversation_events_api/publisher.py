"""Long-lived, confirmed publishing to RabbitMQ that never blocks a request.

Requests hand messages over with `submit()` and return; a background loop publishes whatever
is waiting concurrently on one channel in confirm mode (the confirms pipeline), then records the
confirmed event ids in PostgreSQL in one statement. What is not confirmed stays unpublished in
the database, where the relay finds it: a broker outage costs latency, never an event.

Only a broker `Basic.Ack` of a routed message counts as confirmed. Messages are published
`mandatory`, and the channel raises on a return (`on_return_raises`): a message no queue took
(the queue unbound, deleted or not yet declared) is acked by the broker all the same, and
would otherwise be recorded as published and stranded.

`CE_AMQP_URL` may name several nodes of a cluster. aio-pika's robust connection reconnects to
one URL only, so the connection here is a plain one: when it (or its channel) closes, the
publisher connects again to whichever node answers, the one just lost last.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import cast

import aio_pika
import aiormq
import pamqp.frame
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from aiormq.abc import ChannelFrame
from opentelemetry import trace
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from sqlalchemy import Engine

from conversation_events import telemetry
from conversation_events.errors import BrokerUnavailable
from conversation_events.messaging.brokers import connection_order
from conversation_events.messaging.contract import CONTENT_TYPE, MESSAGE_TYPE, EventMessage
from conversation_events.messaging.topology import Topology
from conversation_events.persistence.db import translate_errors
from conversation_events.persistence.events import mark_published
from conversation_events_api import metrics
from conversation_events_api.batching import BatchQueue
from conversation_events_api.throttle import ThrottledLog

log = logging.getLogger(__name__)

_BROKER_ERRORS = (
    aio_pika.exceptions.AMQPError,
    aiormq.exceptions.AMQPError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)


class _Returned(Exception):
    """A publish answered with the returned message instead of an ack (no raise on return)."""


def failure_reason(error: BaseException) -> str:
    """The `reason` label of a failed publish: returned, nacked, timeout or unavailable."""
    if isinstance(error, aiormq.exceptions.PublishError | _Returned):  # routed to no queue
        return "returned"
    if isinstance(error, aiormq.exceptions.DeliveryError):  # Basic.Nack or Basic.Reject
        return "nacked"
    if isinstance(error, asyncio.TimeoutError):
        return "timeout"
    return "unavailable"


async def declare_topology(
    channel: aio_pika.abc.AbstractChannel, topology: Topology
) -> AbstractExchange:
    """Declare exchanges, queues and bindings with the shared arguments; returns the exchange."""
    exchange = await channel.declare_exchange(
        topology.exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )
    dlx = await channel.declare_exchange(
        topology.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )
    queue = await channel.declare_queue(
        topology.queue, durable=True, arguments=topology.queue_arguments
    )
    await queue.bind(exchange, routing_key=topology.routing_key)
    dead = await channel.declare_queue(
        topology.dead_letter_queue, durable=True, arguments=topology.dead_letter_queue_arguments
    )
    await dead.bind(dlx, routing_key=topology.dead_letter_queue)
    return exchange


class Publisher:
    def __init__(
        self,
        amqp_url: str,
        topology: Topology,
        engine: Engine,
        *,
        publish_timeout_s: float,
        max_pending: int = 10_000,
        max_batch: int = 500,
        window_s: float = 0.0,
        mark_window_s: float = 0.5,
        connection_name: str = "conversation-events-api",
    ) -> None:
        self._url = amqp_url
        self._topology = topology
        self._engine = engine
        self._timeout = publish_timeout_s
        self._max_batch = max_batch
        self._window = window_s
        self._mark_window = mark_window_s
        self._connection_name = connection_name
        self._pending: BatchQueue[EventMessage] = BatchQueue(max_pending)
        self._failures = ThrottledLog(log, "publishes failed; the relay republishes them")
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._node: str | None = None  # the URL of the node connected to (or last lost)
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def connected(self) -> bool:
        return (
            self._connection is not None
            and not self._connection.is_closed
            and self._channel is not None
            and not self._channel.is_closed
        )

    async def start(self) -> None:
        """Connect in the background: the API keeps storing events while the broker is down."""
        self._tasks = [
            asyncio.create_task(self._connect_forever(), name="publisher-connect"),
            asyncio.create_task(self._run(), name="publisher"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()
        metrics.BROKER_CONNECTED.set(0)

    @property
    def behind(self) -> bool:
        """Whether a message has waited over a second for its first publish (a busy process)."""
        oldest = self._pending.oldest()
        return oldest is not None and (datetime.now(UTC) - oldest.enqueued_at).total_seconds() > 1

    def submit(self, message: EventMessage) -> None:
        """Queue a message for publishing; never blocks, never raises.

        The event is already committed: past the queue's bound the message is dropped here
        (counted as `queue_full`) and the relay publishes the event later, so a backlog costs
        delay, not memory and not the request.
        """
        if not self._pending.put(message):
            self._failed("queue_full", 1, "publisher queue full")

    async def publish_now(
        self, messages: Sequence[EventMessage], *, source: str = "api"
    ) -> list[str]:
        """Publish and await the confirms; returns the ids the broker confirmed.

        Traced, the batch is one producer span linked to each message's trace context
        (`source`: `api` for first publishes, `relay` for republishes).
        """
        if not telemetry.enabled():
            return await self._publish_batch(messages)
        with telemetry.messaging_span(
            "publish",
            self._topology.exchange,
            __name__,
            [m.trace_context for m in messages],
            **{"conversation_events.publish.source": source},
        ) as span:
            confirmed = await self._publish_batch(messages)
            if span is not None and len(confirmed) < len(messages):
                span.set_status(
                    trace.StatusCode.ERROR, f"{len(messages) - len(confirmed)} not confirmed"
                )
            return confirmed

    async def _publish_batch(self, messages: Sequence[EventMessage]) -> list[str]:
        if self._channel is None or self._exchange is None or not self.connected:
            raise BrokerUnavailable("no broker connection")
        # The AMQP channel itself: its `basic_publish` can skip waiting for the write.
        channel = cast(aiormq.Channel, await self._channel.get_underlay_channel())
        results = await self._publish_all(channel, messages)
        confirmed = []
        failed: dict[str, list[BaseException]] = {}
        for message, result in zip(messages, results, strict=True):
            if result is None:
                confirmed.append(message.event_id)
            else:
                failed.setdefault(failure_reason(result), []).append(result)
        for reason, errors in failed.items():
            self._failed(reason, len(errors), repr(errors[0]))
        if "nacked" in failed and self._connection is not None:
            # A quorum queue's nacks can outlive their cause on this channel: one opened while
            # the queue elected a new leader nacked every later publish (RabbitMQ 3.10).
            self._lost(self._connection, pause_s=1.0)
        return confirmed

    async def _publish_all(
        self, channel: aiormq.Channel, messages: Sequence[EventMessage]
    ) -> list[BaseException | None]:
        """Publish every message, then wait for all their confirms under one deadline: each
        message's outcome (None: confirmed), a `TimeoutError` for those unconfirmed by then.
        The write itself has a deadline of the same length (a hung connection's writer).

        The messages of a batch go to the broker in one write (`write_publishes`); aiormq's
        `basic_publish` costs a task switch, a lock and a socket write per message, about
        half the process's CPU per publish.
        """
        if not messages:
            return []
        try:
            confirmations = await write_publishes(
                channel,
                self._topology.exchange,
                self._topology.routing_key,
                messages,
                timeout_s=self._timeout,
            )
        except Exception as exc:  # nothing sent (the channel closed, or its writer hung)
            return [exc for _ in messages]
        try:
            _, pending = await asyncio.wait(confirmations, timeout=self._timeout)
        finally:  # past the deadline, or this caller cancelled: the broker's late answer is ignored
            for confirmation in confirmations:
                confirmation.cancel()
        return [
            TimeoutError(f"no confirm within {self._timeout:g} s")
            if confirmation in pending or confirmation.cancelled()
            else _outcome(confirmation)
            for confirmation in confirmations
        ]

    def _failed(self, reason: str, count: int, error: str) -> None:
        metrics.PUBLISH_FAILURES.labels(reason).inc(count)
        self._failures.record(reason, count, error)

    async def mark_confirmed(self, event_ids: list[str]) -> None:
        """Record the confirms so the relay leaves these events alone (best effort)."""
        if not event_ids:
            return
        try:
            await asyncio.to_thread(self._mark, event_ids)
        except Exception as exc:
            # Not fatal: the relay will republish them and the workers ignore the duplicates.
            log.warning("could not record publish confirms", extra={"error": str(exc)})

    def _mark(self, event_ids: list[str]) -> None:
        with translate_errors(), self._engine.begin() as conn:
            mark_published(conn, event_ids)

    async def _run(self) -> None:
        # Confirms are recorded (one UPDATE, on a thread) while later batches are published:
        # publishing never waits for PostgreSQL and one UPDATE runs at a time. They are
        # gathered for up to `mark_window_s` (or `max_batch` ids) first: at light load every
        # batch is one message, and an UPDATE transaction each cost more than its publish.
        # The relay republishes only events unconfirmed for `relay_delay_s` (10 s), far longer.
        loop = asyncio.get_running_loop()
        recording: asyncio.Task[None] | None = None
        unmarked: list[str] = []
        since = 0.0
        try:
            while True:
                batch = await self._next_batch(since + self._mark_window if unmarked else None)
                confirmed = await self._publish_taken(batch) if batch else []
                if confirmed and not unmarked:
                    since = loop.time()
                unmarked.extend(confirmed)
                if unmarked and (
                    len(unmarked) >= self._max_batch or loop.time() - since >= self._mark_window
                ):
                    if recording is not None:
                        await recording
                    recording = asyncio.create_task(self.mark_confirmed(unmarked))
                    unmarked = []
        finally:  # on stop: the last confirms are recorded too
            if recording is not None:
                await recording
            await self.mark_confirmed(unmarked)

    async def _next_batch(self, flush_at: float | None) -> list[EventMessage]:
        """What waits to be published, once something does; empty at `flush_at` (loop time).

        Fewer than a batch are held until the first has waited `window_s`: at light load the
        messages of several insert batches share one publish and its confirms.
        """
        taking = self._pending.take(self._max_batch, self._window)
        if flush_at is None:
            return await taking
        timeout = max(0.0, flush_at - asyncio.get_running_loop().time())
        try:  # `take` removes nothing until it returns, so a timeout loses no message
            return await asyncio.wait_for(taking, timeout)
        except TimeoutError:
            return []

    async def _publish_taken(self, batch: list[EventMessage]) -> list[str]:
        try:
            confirmed = await self.publish_now(batch)
        except BrokerUnavailable as exc:
            # Left unpublished in PostgreSQL; the relay republishes them on reconnect.
            self._failed("unavailable", len(batch), str(exc))
            return []
        metrics.PUBLISHED.labels("api").inc(len(confirmed))
        return confirmed

    async def _connect_forever(self) -> None:
        delay = 0.5
        while self._connection is None:
            try:
                connection, channel, self._exchange = await self._open()
            except _BROKER_ERRORS as exc:
                if isinstance(exc, aiormq.exceptions.ChannelPreconditionFailed):
                    # The broker holds a queue or exchange with other arguments than ours (e.g.
                    # `inequivalent arg 'x-delivery-limit'`): no retry fixes that by itself.
                    log.error(
                        "broker refused the topology declaration; retrying",
                        extra={"error": str(exc), "retry_in_s": delay},
                    )
                else:
                    log.warning(
                        "broker unreachable; retrying",
                        extra={"error": str(exc), "retry_in_s": delay},
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self._connection, self._channel = connection, channel
            lost = functools.partial(self._lost, connection)
            connection.close_callbacks.add(lost)
            channel.close_callbacks.add(lost)
            metrics.BROKER_CONNECTED.set(1)
            log.info("publisher connected to the broker", extra={"node": _node_name(self._node)})

    def _lost(self, connection: AbstractConnection, *_: object, pause_s: float = 0.0) -> None:
        """The connection or its channel closed (or is not to be trusted): connect again, to
        another node if one answers, after `pause_s`."""
        if self._stopping or self._connection is not connection:
            return  # closed by `stop()`, or the second callback of the same loss
        metrics.BROKER_CONNECTED.set(0)
        log.warning("broker connection lost; reconnecting", extra={"node": _node_name(self._node)})
        self._connection = self._channel = self._exchange = None
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(
            asyncio.create_task(self._reconnect(connection, pause_s), name="publisher-connect")
        )

    async def _reconnect(self, connection: AbstractConnection, pause_s: float) -> None:
        if not connection.is_closed:  # only the channel closed, or we gave up on it
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), timeout=5)
        await asyncio.sleep(pause_s)
        await self._connect_forever()

    async def _open(self) -> tuple[AbstractConnection, AbstractChannel, AbstractExchange]:
        """Connect to the first node that answers, open a confirming channel and declare the
        topology, or close and raise.

        A failed declaration closes only its channel: without the close here every retry would
        leave one more open connection on the broker.
        """
        failure: Exception | None = None
        for url in connection_order(self._url, after=self._node):
            connection = aio_pika.Connection(
                aio_pika.connection.make_url(url),
                client_properties={"connection_name": self._connection_name},
            )
            try:
                await connection.connect(timeout=5)
            except Exception as exc:  # any way a handshake can fail (e.g. StopAsyncIteration)
                # Closed here, in the event loop: a connection object left open is closed by
                # its finalizer, which fails when garbage collection runs in another thread.
                with contextlib.suppress(Exception):
                    await connection.close()
                failure = exc
                continue
            self._node = url
            break
        else:  # no node answered: the caller backs off and tries them all again
            raise ConnectionError(f"no broker node answered: {failure!r}") from failure
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await declare_topology(channel, self._topology)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), timeout=5)
            raise
        return connection, channel, exchange


async def write_publishes(
    channel: aiormq.Channel,
    exchange: str,
    routing_key: str,
    messages: Sequence[EventMessage],
    *,
    timeout_s: float,
) -> list[asyncio.Future[object]]:
    """Queue `messages` as one write on `channel` (in confirm mode): persistent, `mandatory`,
    each with its event id as `message_id`. Returns each message's confirmation, which the
    channel resolves as `basic_publish` would: the broker's `Basic.Ack`, a `DeliveryError` on
    a nack, a `PublishError` on a return, the close reason if the channel closes first.

    The frames are pamqp's and the confirmations aiormq's; only their grouping is ours. The
    delivery tags are taken and the confirmations registered in the step that queues the
    frames, under the channel's lock as `basic_publish` takes it, so tags and frames stay in
    the broker's order. Raises, having sent nothing, when the channel is closed or the lock
    and the connection's writer are not free within `timeout_s`. Written against aiormq 7.2
    (pinned), whose channel keeps them in `delivery_tag`, `confirmations`,
    `message_id_delivery_tag` and `write_queue`.
    """
    publish = pamqp.frame.marshal(
        aiormq.spec.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=True),
        channel.number,
    )
    parts: list[bytes] = []
    for message in messages:
        body = message.to_bytes()
        header = ContentHeader(
            properties=aiormq.spec.Basic.Properties(
                content_type=CONTENT_TYPE,
                message_type=MESSAGE_TYPE,
                delivery_mode=int(aio_pika.DeliveryMode.PERSISTENT),
                message_id=message.event_id,
                headers=message.headers(),
            ),
            body_size=len(body),
        )
        parts.append(publish)
        parts.append(pamqp.frame.marshal(header, channel.number))
        for chunk in body_chunks(body, channel.max_content_size):
            parts.append(pamqp.frame.marshal(ContentBody(chunk), channel.number))
    confirmations: list[asyncio.Future[object]] = []
    async with asyncio.timeout(timeout_s), channel.lock:  # the lock raises if the channel closed
        before = channel.delivery_tag
        try:
            for message in messages:
                channel.delivery_tag += 1
                tag = channel.delivery_tag
                confirmation = channel.create_future()
                channel.confirmations[tag] = confirmation
                channel.message_id_delivery_tag[message.event_id] = tag
                confirmation.add_done_callback(
                    functools.partial(_forget, channel, message.event_id, tag)
                )
                confirmations.append(confirmation)
            # Waits only while the connection's writer is behind (or gone).
            await channel.write_queue.put(ChannelFrame(payload=b"".join(parts), should_close=False))
        except BaseException:  # not sent: the tags are free again, as basic_publish does
            for tag, message in zip(
                range(before + 1, channel.delivery_tag + 1), messages, strict=False
            ):
                channel.confirmations.pop(tag, None)
                _forget(channel, message.event_id, tag, None)
            channel.delivery_tag = before
            for confirmation in confirmations:
                confirmation.cancel()
            raise
    return confirmations


def body_chunks(body: bytes, max_size: int) -> list[bytes]:
    """The content frames' payloads of `body`: none when empty, else pieces of at most
    `max_size` bytes (the whole body when the broker left the frame size unbounded, which
    makes `max_size` zero or less)."""
    if not body:
        return []
    if max_size <= 0:
        return [body]
    return [body[start : start + max_size] for start in range(0, len(body), max_size)]


def _forget(channel: aiormq.Channel, message_id: str, tag: int, _: object) -> None:
    """Once confirmed (or given up), a message id no longer maps to its delivery tag."""
    if channel.message_id_delivery_tag.get(message_id) == tag:
        del channel.message_id_delivery_tag[message_id]


def _outcome(confirmation: asyncio.Future[object]) -> BaseException | None:
    """None for a broker ack; the error otherwise (a returned message handed back as the
    result, when the channel does not raise on returns, is `_Returned`)."""
    error = confirmation.exception()
    if error is not None:
        return error
    result = confirmation.result()
    if isinstance(result, aiormq.spec.Basic.Ack):
        return None
    return _Returned(repr(result)[:200])


def _node_name(url: str | None) -> str | None:
    """host:port of a node's URL, for logs (never the credentials)."""
    if url is None:
        return None
    return url.rsplit("@", 1)[-1].split("/", 1)[0]
