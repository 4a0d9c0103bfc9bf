"""The API's publisher against a real RabbitMQ: a batch goes out as one write, and each message
still gets its own outcome (the ack of a routed message, or the nack that refuses it)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import cast

import aiormq
import orjson
import pytest
import pytest_asyncio
from aiormq.abc import ChannelFrame
from pamqp.heartbeat import Heartbeat
from sqlalchemy import Engine
from tests.support import services
from tests.support.services import AMQP_URL, get_messages, wait_for

from conversation_events.messaging.contract import CONTENT_TYPE, MESSAGE_TYPE, EventMessage
from conversation_events.messaging.topology import Topology
from conversation_events_api import metrics
from conversation_events_api.publisher import Publisher, write_publishes

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def messages(count: int) -> list[EventMessage]:
    return [
        EventMessage(
            event_id=str(uuid.uuid4()),
            conversation_id=f"conversation-{i}",
            user_id=f"user-{i % 7}",
            bot_id="bot-1",
            enqueued_at=datetime.now(UTC),
            tenant="tenant-a",
            trace_context={"traceparent": TRACEPARENT} if i % 2 else None,
        )
        for i in range(count)
    ]


@pytest_asyncio.fixture
async def publisher(engine: Engine, names: tuple[str, str]) -> AsyncIterator[Publisher]:
    publisher = Publisher(AMQP_URL, Topology(*names, 50), engine, publish_timeout_s=10)
    await publisher.start()
    await asyncio.to_thread(
        wait_for, lambda: publisher.connected, timeout=10, what="publisher connected"
    )
    yield publisher
    await publisher.stop()


@pytest.mark.asyncio
async def test_a_batch_is_confirmed_and_queued_message_by_message_in_order(
    publisher: Publisher, names: tuple[str, str]
) -> None:
    sent = messages(700)  # more than the publisher's own batches (500), in one call
    confirmed = await publisher.publish_now(sent)
    assert confirmed == [m.event_id for m in sent]

    queued = await asyncio.to_thread(get_messages, names[1])
    assert [body["event_id"] for _, body in queued] == confirmed
    for message, (properties, body) in zip(sent, queued, strict=True):
        assert body == orjson.loads(message.to_bytes())
        assert properties.message_id == message.event_id
        assert properties.delivery_mode == 2  # persistent
        assert properties.content_type == CONTENT_TYPE
        assert properties.type == MESSAGE_TYPE
        # The broker adds headers of its own (a quorum queue's `x-delivery-count`).
        assert (properties.headers or {}).get("traceparent") == (message.headers() or {}).get(
            "traceparent"
        )


@pytest.mark.asyncio
async def test_messages_the_broker_refuses_are_not_confirmed_and_publishing_recovers(
    publisher: Publisher, names: tuple[str, str]
) -> None:
    # A queue of at most two messages that refuses publishes once over it (`reject-publish`):
    # a quorum queue learns it is over after the enqueue that makes it so, then nacks.
    topology = Topology(*names, 50)
    api = services.management_api()
    limited = {**topology.policy, "definition": {"max-length": 2, "overflow": "reject-publish"}}
    api.request("PUT", "policies", api.vhost, topology.policy_name, json=limited)
    await asyncio.to_thread(
        wait_for,
        lambda: (
            (services.queue_details(names[1]).get("effective_policy_definition") or {}).get(
                "max-length"
            )
            == 2
        ),
        timeout=10,
        what="the length limit in force",
    )
    first = messages(3)
    assert await publisher.publish_now(first) == [m.event_id for m in first]
    nacked = metrics.PUBLISH_FAILURES.labels("nacked")
    before = nacked._value.get()

    assert await publisher.publish_now(messages(5)) == []
    assert nacked._value.get() == before + 5

    # The limit lifted, the publisher (which reconnects after nacks) confirms again.
    api.request("DELETE", "policies", api.vhost, topology.policy_name)
    later = messages(3)

    async def confirmed_once_connected() -> list[str]:
        while True:
            if publisher.connected:
                confirmed = await publisher.publish_now(later)
                if confirmed:
                    return confirmed
            await asyncio.sleep(0.1)

    assert await asyncio.wait_for(confirmed_once_connected(), 20) == [m.event_id for m in later]
    queued = await asyncio.to_thread(get_messages, names[1])
    assert [body["event_id"] for _, body in queued] == [m.event_id for m in first + later]


@pytest.mark.asyncio
async def test_a_closed_channel_refuses_the_batch_and_keeps_no_delivery_tag(
    names: tuple[str, str],
) -> None:
    connection = await aiormq.connect(AMQP_URL)
    try:
        channel = cast(aiormq.Channel, await connection.channel(publisher_confirms=True))
        await channel.close()
        before = channel.delivery_tag
        with pytest.raises(aiormq.exceptions.ChannelInvalidStateError):
            await write_publishes(channel, names[0], names[1], messages(3), timeout_s=5)
        assert channel.delivery_tag == before
        assert not channel.confirmations
    finally:
        await connection.close()


@pytest.mark.asyncio
async def test_a_write_that_cannot_be_queued_in_time_frees_its_tags_and_later_ones_confirm(
    names: tuple[str, str],
) -> None:
    """The connection's writer behind (its queue of frames full): the batch gives up at its
    deadline having sent nothing, and the channel's numbering stays the broker's."""
    topology = Topology(*names, 50)
    connection = await aiormq.connect(AMQP_URL)
    try:
        channel = cast(aiormq.Channel, await connection.channel(publisher_confirms=True))
        await channel.queue_declare(
            topology.queue, durable=True, arguments=topology.queue_arguments
        )
        before = channel.delivery_tag
        heartbeat = ChannelFrame.marshall(0, [Heartbeat()])
        while not channel.write_queue.full():  # the writer runs only once this task yields
            channel.write_queue.put_nowait(heartbeat)
        with pytest.raises(TimeoutError):
            await write_publishes(channel, "", topology.queue, messages(3), timeout_s=0)
        assert channel.delivery_tag == before
        assert not channel.confirmations and not channel.message_id_delivery_tag

        later = await write_publishes(channel, "", topology.queue, messages(4), timeout_s=5)
        done, _ = await asyncio.wait(later, timeout=10)
        assert len(done) == 4
        assert all(isinstance(c.result(), aiormq.spec.Basic.Ack) for c in later)
    finally:
        await connection.close()
