"""Helpers shared by the scaler's integration tests (real RabbitMQ, polling with deadlines)."""

from __future__ import annotations

from typing import Any

import pika

AMQP_HOST, AMQP_PORT = "127.0.0.1", 5672
AUTH = ("guest", "guest")


def amqp_connection(vhost: str = "/") -> pika.BlockingConnection:
    params = pika.ConnectionParameters(
        host=AMQP_HOST,
        port=AMQP_PORT,
        virtual_host=vhost,
        credentials=pika.PlainCredentials(*AUTH),
        connection_attempts=3,
        retry_delay=1,
    )
    return pika.BlockingConnection(params)


def declare_quorum_queue(channel: Any, name: str) -> None:
    channel.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})


def publish(channel: Any, queue: str, count: int) -> None:
    """Publish ``count`` persistent messages with publisher confirms."""
    channel.confirm_delivery()
    for i in range(count):
        channel.basic_publish("", queue, f"m{i}".encode(), pika.BasicProperties(delivery_mode=2))
