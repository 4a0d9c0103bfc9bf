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
    sent = messages(700)  # more than one batch of the writer, in one publish
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
