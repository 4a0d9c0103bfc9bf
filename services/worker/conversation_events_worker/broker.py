"""pika plumbing shared by the consumer and the operator CLI."""

from __future__ import annotations

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from conversation_events.messaging.brokers import connection_order
from conversation_events.messaging.contract import CONTENT_TYPE, MESSAGE_TYPE, EventMessage
from conversation_events.messaging.topology import Topology

#: pika errors that mean "the broker or the connection is gone; reconnect and retry".
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    pika.exceptions.ConnectionWrongStateError,
    pika.exceptions.ChannelWrongStateError,
    pika.exceptions.StreamLostError,
    ConnectionError,
    OSError,
)


def connection_parameters(amqp_url: str, heartbeat_s: int) -> list[pika.URLParameters]:
    """Parameters for each node in `amqp_url` (comma-separated), in the order to try them.

    `pika.BlockingConnection` takes the list and connects to the first node that answers; each
    reconnection draws a new order (see `connection_order`), so a dead node is skipped and the
    workers spread over the cluster.
    """
    result = []
    for url in connection_order(amqp_url):
        params = pika.URLParameters(url)
        params.heartbeat = heartbeat_s
        params.blocked_connection_timeout = 60
        params.connection_attempts = 1
        params.retry_delay = 0  # between nodes: the caller backs off after a full round
        params.socket_timeout = 5
        params.client_properties = {"connection_name": "conversation-events-worker"}
        result.append(params)
    return result


def declare_topology(channel: BlockingChannel, topology: Topology) -> None:
    """Declare exchanges, queues and bindings with the shared arguments (idempotent)."""
    channel.exchange_declare(topology.exchange, "direct", durable=True)
    channel.exchange_declare(topology.dead_letter_exchange, "direct", durable=True)
    channel.queue_declare(topology.queue, durable=True, arguments=topology.queue_arguments)
    channel.queue_bind(topology.queue, topology.exchange, routing_key=topology.routing_key)
    channel.queue_declare(
        topology.dead_letter_queue, durable=True, arguments=topology.dead_letter_queue_arguments
    )
    channel.queue_bind(
        topology.dead_letter_queue,
        topology.dead_letter_exchange,
        routing_key=topology.dead_letter_queue,
    )


def publish_confirmed(channel: BlockingChannel, topology: Topology, message: EventMessage) -> None:
    """Publish persistently on a channel in confirm mode; raises if the broker refuses it."""
    channel.basic_publish(
        topology.exchange,
        topology.routing_key,
        message.to_bytes(),
        pika.BasicProperties(
            content_type=CONTENT_TYPE,
            type=MESSAGE_TYPE,
            delivery_mode=2,
            message_id=message.event_id,
            headers=message.headers(),
        ),
        mandatory=True,
    )
