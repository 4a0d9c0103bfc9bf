"""Operator commands: re-queue FAILED events, replay dead letters."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
from sqlalchemy import Engine, text
from tests.integration.worker.conftest import per_event
from tests.integration.worker.test_consumer import queue_empty
from tests.support.payloads import conversation, expected_change
from tests.support.pipeline import event_row, publish, score_sums, store
from tests.support.services import AMQP_URL, queue_counts, wait_for

from conversation_events.errors import PermanentError
from conversation_events.messaging.topology import Topology
from conversation_events.processing import ProcessingConfig, ProcessResult
from conversation_events_worker.consumer import Consumer

ROOT = Path(__file__).resolve().parents[3]


def admin(database_url: str, topology: Topology, *args: str) -> dict[str, int]:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'services' / 'worker'}",
        "CE_DATABASE_URL": database_url,
        "CE_AMQP_URL": AMQP_URL,
        "CE_EXCHANGE_NAME": topology.exchange,
        "CE_QUEUE_NAME": topology.queue,
        "CE_LOG_LEVEL": "WARNING",
    }
    done = subprocess.run(
        [sys.executable, "-m", "conversation_events_worker.admin", *args],
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
    wait_for(lambda: event_row(engine, event_id)["status"] == "FAILED", timeout=15, what="FAILED")
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
    row = wait_for(
        lambda: (r := event_row(engine, event_id))["status"] == "PROCESSED" and r,
        timeout=15,
        what="PROCESSED",
    )
    assert row["attempts"] == 1
    assert score_sums(engine, [body["user_id"]])[1] == {body["user_id"]: expected_change(body)}


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

    assert summary == {"replayed": 1, "dropped": 0, "malformed_kept": 1}
    wait_for(
        lambda: event_row(engine, event_id)["status"] == "PROCESSED", timeout=15, what="PROCESSED"
    )
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
