"""Operator commands: re-queue FAILED events, replay dead letters, migrate an old queue."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import orjson
import pika
import pika.exceptions
import pytest
from sqlalchemy import Engine, text
from tests.integration.worker.conftest import per_event
from tests.integration.worker.test_consumer import queue_empty
from tests.support.payloads import conversation, expected_change
from tests.support.pipeline import event_row_when, publish, score_sums, store
from tests.support.processes import console_script
from tests.support.services import (
    AMQP_URL,
    apply_policy,
    free_port,
    management_api,
    queue_counts,
    wait_for,
)

from conversation_events.errors import PermanentError
from conversation_events.messaging.policy import declared_arguments
from conversation_events.messaging.topology import Topology
from conversation_events.processing import ProcessingConfig, ProcessResult
from conversation_events_worker.broker import declare_topology
from conversation_events_worker.consumer import Consumer

#: The summary of `replay-dead-letters` with every count at zero (each test sets its own).
NOTHING_REPLAYED = dict.fromkeys(
    ("replayed", "dropped", "malformed_kept", "unknown_kept", "erased_dropped"), 0
)


def admin(
    database_url: str, topology: Topology, *args: str, amqp_url: str = AMQP_URL
) -> dict[str, int]:
    env = {
        "PATH": "/usr/bin:/bin",
        "CE_DATABASE_URL": database_url,
        "CE_AMQP_URL": amqp_url,
        "CE_EXCHANGE_NAME": topology.exchange,
        "CE_QUEUE_NAME": topology.queue,
        "CE_LOG_LEVEL": "WARNING",
    }
    done = subprocess.run(
        [console_script("conversation-events-admin"), *args],
        env=env,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return orjson.loads(done.stdout.splitlines()[-1])


def fail_then_recover(
    engine: Engine, topology: Topology, run_consumer: Callable[..., Consumer]
) -> tuple[dict, str, Consumer]:
    """An event that FAILED on a (since fixed) permanent error, its message dead-lettered."""

    def broken(engine: Engine, event_id: str, config: ProcessingConfig) -> ProcessResult:
        raise PermanentError("scoring rules rejected the log")

    body = conversation()
    event_id = store(engine, body)
    consumer = run_consumer(processor=per_event(broken))
    publish(topology, event_id, body)
    event_row_when(engine, event_id, "FAILED")
    wait_for(
        lambda: queue_counts(topology.dead_letter_queue)[0] == 1, timeout=10, what="dead letter"
    )
    consumer.request_stop()
    return body, event_id, consumer


def test_requeue_failed_reprocesses_with_a_fresh_budget(
    engine: Engine, database_url: str, topology: Topology, run_consumer: Callable[..., Consumer]
) -> None:
    body, event_id, _ = fail_then_recover(engine, topology, run_consumer)
    run_consumer()  # the fixed worker

    summary = admin(
        database_url, topology, "requeue-failed", "--conversation-id", body["conversation_id"]
    )

    assert summary == {"requeued": 1, "published": 1}
    row = event_row_when(engine, event_id, "PROCESSED")
    assert row["attempts"] == 1
    assert score_sums(engine, [body["user_id"]])[1] == {body["user_id"]: expected_change(body)}


def test_the_commands_reach_a_live_broker_node_past_dead_ones(
    engine: Engine, database_url: str, topology: Topology, run_consumer: Callable[..., Consumer]
) -> None:
    body, event_id, _ = fail_then_recover(engine, topology, run_consumer)
    run_consumer()
    # A cluster with one node of five answering: the others' ports are closed.
    dead = [f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F" for _ in range(4)]
    nodes = ",".join([*dead[:2], AMQP_URL, *dead[2:]])

    summary = admin(
        database_url,
        topology,
        "requeue-failed",
        "--conversation-id",
        body["conversation_id"],
        amqp_url=nodes,
    )

    assert summary == {"requeued": 1, "published": 1}
    event_row_when(engine, event_id, "PROCESSED")


@pytest.mark.parametrize("command", ["requeue-failed", "replay-dead-letters"])
def test_a_message_sent_again_carries_the_events_trace_context(
    engine: Engine,
    database_url: str,
    topology: Topology,
    run_consumer: Callable[..., Consumer],
    command: str,
) -> None:
    """The event's stored trace context, not the operator's, travels with the new message, so
    its trace still leads back to the request that accepted it."""
    body, event_id, _ = fail_then_recover(engine, topology, run_consumer)
    wait_for(lambda: queue_counts(topology.queue)[1] == 0, timeout=30, what="worker stopped")
    context = {"traceparent": f"00-{'1f' * 16}-{'2e' * 8}-01", "tracestate": "ce=1"}
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE conversation_events SET trace_context = :context WHERE id = :id"),
            {"context": orjson.dumps(context).decode(), "id": event_id},
        )

    # The database is shared with other tests: re-queue this test's FAILED event only.
    only = ["--conversation-id", body["conversation_id"]] if command == "requeue-failed" else []
    admin(database_url, topology, command, *only)

    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        method, properties, body = connection.channel().basic_get(topology.queue, auto_ack=True)
    finally:
        connection.close()
    assert method is not None, "nothing was sent again"
    assert orjson.loads(body)["event_id"] == event_id
    assert {k: properties.headers[k] for k in context} == context


def test_replay_dead_letters_moves_them_back_and_drops_finished_ones(
    engine: Engine, database_url: str, topology: Topology, run_consumer: Callable[..., Consumer]
) -> None:
    _, event_id, _ = fail_then_recover(engine, topology, run_consumer)
    publish(topology, "", raw=b"garbage")  # will be dead-lettered as malformed by the next worker
    run_consumer()
    wait_for(
        lambda: queue_counts(topology.dead_letter_queue)[0] == 2,
        timeout=15,
        what="two dead letters",
    )

    summary = admin(database_url, topology, "replay-dead-letters")

    assert summary == NOTHING_REPLAYED | {"replayed": 1, "malformed_kept": 1}
    event_row_when(engine, event_id, "PROCESSED")
    assert queue_counts(topology.dead_letter_queue)[0] == 1
    assert queue_empty(topology.queue)
    with engine.connect() as conn:
        processed = conn.execute(
            text(
                "SELECT count(*) FROM conversation_events WHERE id = :id AND status = 'PROCESSED'"
            ),
            {"id": event_id},
        ).scalar()
    assert processed == 1


def test_replay_dead_letters_keeps_messages_of_unknown_events(
    engine: Engine, database_url: str, topology: Topology, run_consumer: Callable[..., Consumer]
) -> None:
    body = conversation()
    publish(topology, "00000000-0000-4000-8000-000000000000", body)  # no such event here
    run_consumer()
    wait_for(lambda: queue_counts(topology.dead_letter_queue)[0] == 1, timeout=15, what="DLQ")

    summary = admin(database_url, topology, "replay-dead-letters")

    assert summary == NOTHING_REPLAYED | {"unknown_kept": 1}
    assert queue_counts(topology.dead_letter_queue)[0] == 1  # parked, not dropped
    assert queue_empty(topology.queue)


def legacy_queue(topology: Topology, messages: int) -> list[bytes]:
    """The main queue as an earlier version declared it (arguments instead of a policy)."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.exchange_declare(topology.exchange, "direct", durable=True)
        channel.queue_declare(
            topology.queue,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-dead-letter-exchange": topology.dead_letter_exchange,
                "x-dead-letter-routing-key": topology.dead_letter_queue,
                "x-delivery-limit": 50,
            },
        )
        channel.queue_bind(topology.queue, topology.exchange, routing_key=topology.routing_key)
        bodies = [f"message {i}".encode() for i in range(messages)]
        for body in bodies:
            channel.basic_publish(topology.exchange, topology.routing_key, body, mandatory=True)
        return bodies
    finally:
        connection.close()


def drain(queue: str) -> list[bytes]:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        bodies = []
        while (got := channel.basic_get(queue, auto_ack=True))[0] is not None:
            bodies.append(got[2])
        return bodies
    finally:
        connection.close()


def test_a_queue_declared_with_arguments_is_refused_with_a_clear_error(
    topology: Topology,
) -> None:
    legacy_queue(topology, 0)
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            declare_topology(connection.channel(), topology)
    finally:
        if connection.is_open:
            connection.close()
    assert refused.value.reply_code == 406
    assert "x-dead-letter-exchange" in refused.value.reply_text


def test_migrate_queue_recreates_an_old_queue_under_the_policy_keeping_its_messages(
    database_url: str, topology: Topology
) -> None:
    bodies = legacy_queue(topology, 7)

    summary = admin(database_url, topology, "migrate-queue")

    assert summary == {
        "migrated": True,
        "removed_arguments": [
            "x-dead-letter-exchange",
            "x-dead-letter-routing-key",
            "x-delivery-limit",
        ],
        "messages": 7,
    }
    assert declared_arguments(management_api(), topology.queue) == {"x-queue-type": "quorum"}
    assert declared_arguments(management_api(), f"{topology.queue}.migrating") is None
    publish(topology, "", raw=b"after")  # declares as every process does: no mismatch now
    assert sorted(drain(topology.queue)) == sorted([*bodies, b"after"])
    # Run again: nothing left to migrate, nothing lost.
    assert admin(database_url, topology, "migrate-queue") == {
        "migrated": False,
        "removed_arguments": [],
        "messages": 0,
    }


def redeliveries_until_dead_lettered(topology: Topology, most: int) -> int:
    """Publish one message and return it (nack, requeue) until the broker dead-letters it."""
    publish(topology, "", raw=b"bounced")
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        for returns in range(most + 1):
            method = wait_for(
                lambda: (
                    channel.basic_get(topology.queue)[0]
                    or (queue_counts(topology.dead_letter_queue)[0] == 1 and "dead")
                ),
                timeout=10,
                what="the message back, or dead-lettered",
            )
            if isinstance(method, str):  # dead-lettered
                drain(topology.dead_letter_queue)
                return returns
            channel.basic_nack(method.delivery_tag, requeue=True)
        return most + 1
    finally:
        connection.close()


def test_the_delivery_limit_follows_the_setting_across_restarts(topology: Topology) -> None:
    for limit in (2, 5, 2):  # as a restart with another CE_DELIVERY_LIMIT applies it
        apply_policy(topology.exchange, topology.queue, limit)
        assert redeliveries_until_dead_lettered(topology, most=8) == limit + 1
