"""Retention and erasure in the worker: content dropped, old events purged, erased users stay."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from prometheus_client import REGISTRY
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from tests.integration.worker.conftest import MAX_ATTEMPTS
from tests.integration.worker.test_admin import admin
from tests.support.database import rows_mentioning
from tests.support.payloads import conversation
from tests.support.pipeline import event_row, new_event, publish, store
from tests.support.processes import console_script
from tests.support.services import queue_counts, wait_for

from conversation_events.access import DEFAULT_TENANT
from conversation_events.messaging.topology import Topology
from conversation_events.persistence import events as event_repo
from conversation_events.persistence import retention
from conversation_events.persistence import users as user_repo
from conversation_events.persistence.events import InsertStatus, insert_events
from conversation_events.persistence.tables import events
from conversation_events.processing import Outcome, ProcessResult, process_batch
from conversation_events_worker.consumer import Consumer
from conversation_events_worker.settings import WorkerSettings


def outcome(engine: Engine, event_id: str, *, retention_content_days: int = 30) -> Outcome:
    """Process the event as a worker with this content retention would."""
    config = WorkerSettings(
        max_attempts=MAX_ATTEMPTS, retention_content_days=retention_content_days
    ).processing_config()
    result = process_batch(engine, [event_id], config)[event_id]
    assert isinstance(result, ProcessResult), result
    return result.outcome


def test_with_content_retention_0_only_the_hash_and_the_breakdown_remain(engine: Engine) -> None:
    body = conversation()
    event_id = store(engine, body)
    stored_hash = event_row(engine, event_id)["content_hash"]

    assert outcome(engine, event_id, retention_content_days=0) is Outcome.PROCESSED

    row = event_row(engine, event_id)
    assert (row["conversation_log"], row["metadata"]) == (None, None)
    assert row["content_purged_at"] is not None and row["content_hash"] == stored_hash
    assert row["score_calculation_details"]["inputs"]["turns"]["value"] == 3
    assert row["friendship_score_change"] is not None
    # The identical re-send is still recognised, by its hash.
    with engine.begin() as conn:
        [again] = insert_events(conn, [new_event(body)])
    assert (again.status, again.event_id) == (InsertStatus.DUPLICATE, event_id)


def test_with_content_retention_0_failed_and_skipped_events(engine: Engine) -> None:
    skipped = store(engine, conversation(bot_type="NEXT_LESSON"))
    exhausted = store(engine, conversation())
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE conversation_events SET attempts = :n WHERE id = :id"),
            {"n": MAX_ATTEMPTS, "id": exhausted},
        )

    assert outcome(engine, skipped, retention_content_days=0) is Outcome.SKIPPED
    assert outcome(engine, exhausted, retention_content_days=0) is Outcome.EXHAUSTED

    assert event_row(engine, skipped)["conversation_log"] is None  # finished: dropped
    failed = event_row(engine, exhausted)
    assert failed["status"] == "FAILED" and failed["conversation_log"]  # kept until resolved


def _age(
    engine: Engine,
    event_id: str,
    *,
    processed_days: float | None = None,
    created_days: float | None = None,
) -> None:
    with engine.begin() as conn:
        for column, days in (("processed_at", processed_days), ("created_at", created_days)):
            if days is not None:
                conn.execute(
                    text(
                        f"UPDATE conversation_events SET {column} = now() - make_interval("
                        "secs => :s) WHERE id = :id"
                    ),
                    {"s": days * 86400, "id": event_id},
                )


def test_the_purge_drops_content_then_deletes_old_events_and_leaves_none_behind(
    engine: Engine, database_url: str, topology: Topology
) -> None:
    def processed(days: float, **fields: Any) -> str:
        event_id = store(engine, conversation(**fields))
        outcome(engine, event_id)
        _age(engine, event_id, processed_days=days)
        return event_id

    content_old = [processed(31), processed(31, bot_type="NEXT_LESSON")]
    recent = processed(29)
    expired = [processed(401) for _ in range(5)]
    failed = store(engine, conversation())
    with engine.begin() as conn:
        event_repo.record_failure(conn, failed, "boom", permanent=True, max_attempts=5)
    pending = store(engine, conversation())
    for event_id in (failed, pending):
        _age(engine, event_id, created_days=900)

    summary = admin(database_url, topology, "purge", "--batch-size", "2")

    assert summary["content_dropped"] >= 2 and summary["events_deleted"] >= 5
    assert summary["batches"] >= 5 and (summary["content_days"], summary["event_days"]) == (30, 400)
    for event_id in content_old:
        row = event_row(engine, event_id)
        assert row["conversation_log"] is None and row["metadata"] is None
        assert row["score_calculation_details"] is not None and row["content_hash"]
    assert event_row(engine, recent)["conversation_log"]
    assert all(rows_mentioning(engine, event_id) == {} for event_id in expired)
    for event_id in (failed, pending):
        assert event_row(engine, event_id)["conversation_log"]
    with engine.connect() as conn:
        left = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE processed_at < now() - interval '400 days'),"
                " count(*) FILTER (WHERE processed_at < now() - interval '30 days'"
                "   AND conversation_log IS NOT NULL)"
                " FROM conversation_events WHERE status IN ('PROCESSED', 'SKIPPED')"
            )
        ).one()
    assert tuple(left) == (0, 0)
    # Counted where the API processes' metrics read it: the run's record.
    with engine.connect() as conn:
        run = retention.last_run(conn)
    assert run is not None
    assert (run["content_dropped"], run["events_deleted"], run["batches"]) == (
        summary["content_dropped"],
        summary["events_deleted"],
        summary["batches"],
    )
    # Idempotent: nothing is due any more.
    again = admin(database_url, topology, "purge")
    assert (again["content_dropped"], again["events_deleted"]) == (0, 0)


def test_the_purge_skips_rows_others_hold_instead_of_waiting_for_them(
    engine: Engine, database_url: str, topology: Topology
) -> None:
    held, free = (store(engine, conversation()) for _ in range(2))
    for event_id in (held, free):
        outcome(engine, event_id)
        _age(engine, event_id, processed_days=401)
    # A transaction holding one due row, as a worker or the relay holds the rows it works on.
    with engine.connect() as other:
        other.execute(
            text("SELECT id FROM conversation_events WHERE id = :id FOR UPDATE"), {"id": held}
        )
        # The purge does not wait for it (admin() gives up after 60 s; a wait never ends here).
        summary = admin(database_url, topology, "purge", "--batch-size", "1")
        assert rows_mentioning(engine, free) == {}
        assert event_row(engine, held)["status"] == "PROCESSED"
        assert summary["events_deleted"] >= 1
        other.rollback()
    # Once released, the next run takes it.
    admin(database_url, topology, "purge")
    assert rows_mentioning(engine, held) == {}


def test_the_purge_needs_only_the_database(engine: Engine, database_url: str) -> None:
    # The chart's CronJob gives it CE_DATABASE_URL alone, in production: no AMQP URL, so the
    # default one (a placeholder password) must not be refused.
    url = make_url(database_url).set(password="a-real-password")  # trust auth ignores it
    env = {
        "PATH": "/usr/bin:/bin",
        "CE_ENVIRONMENT": "production",
        "CE_DATABASE_URL": url.render_as_string(hide_password=False),
    }

    def run(command: str) -> subprocess.CompletedProcess[bytes]:
        argv = [console_script("conversation-events-admin"), command]
        return subprocess.run(argv, env=env, capture_output=True, timeout=60, check=False)

    done = run("purge")
    assert done.returncode == 0, done.stderr.decode()
    assert set(orjson.loads(done.stdout.splitlines()[-1])) >= {"content_dropped", "events_deleted"}
    # Every other command still needs a real AMQP password in production.
    requeue = run("requeue-failed")
    assert requeue.returncode != 0 and b"AMQP password" in requeue.stderr


def test_a_redelivered_message_of_an_erased_users_old_event_does_not_recreate_the_user(
    engine: Engine, database_url: str, topology: Topology, run_consumer: Callable[..., Consumer]
) -> None:
    body = conversation()
    event_id = store(engine, body)
    assert outcome(engine, event_id) is Outcome.PROCESSED
    with engine.begin() as conn:
        erased = user_repo.erase_user(conn, DEFAULT_TENANT, body["user_id"])
    assert (erased.events_deleted, erased.status_deleted) == (1, True)
    run_consumer()

    publish(topology, event_id, body)  # the old event's message, delivered again

    wait_for(
        lambda: queue_counts(topology.dead_letter_queue)[0] == 1,
        timeout=10,
        what="the message of the erased event dead-lettered",
    )
    assert queue_counts(topology.queue)[0] == 0
    assert rows_mentioning(engine, body["user_id"]) == {}
    # Replaying dead letters drops it: nothing of the erased user stays in the broker either.
    summary = admin(database_url, topology, "replay-dead-letters")
    assert (summary["erased_dropped"], summary["unknown_kept"]) == (1, 0)
    assert queue_counts(topology.dead_letter_queue)[0] == 0


def test_an_old_event_that_outlived_its_users_erasure_is_deleted_unapplied(
    engine: Engine, topology: Topology, run_consumer: Callable[..., Consumer]
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    body = conversation(end_time=datetime.now(UTC) - timedelta(hours=1))
    with engine.begin() as conn:
        user_repo.erase_user(conn, tenant, body["user_id"])
    # Stored while the erasure ran (or by a release that does not check): it must not apply.
    with engine.begin() as conn:
        [stored] = event_repo.insert_events(conn, [new_event(body, tenant)])
    assert stored.status is InsertStatus.ERASED  # the API path refuses it ...
    event_id = _insert_unchecked(engine, body, tenant)  # ... a raw insert slips through
    run_consumer()
    erased_before = erased_settled()

    publish(topology, event_id, body, tenant=tenant)

    wait_for(lambda: erased_settled() == erased_before + 1, timeout=10, what="message settled")
    assert rows_mentioning(engine, event_id) == {}
    assert queue_counts(topology.dead_letter_queue)[0] == 0
    assert rows_mentioning(engine, body["user_id"]) == {}
    # A conversation that ends after the erasure starts the user afresh.
    fresh = conversation(user_id=body["user_id"], end_time=datetime.now(UTC))
    with engine.begin() as conn:
        [new] = event_repo.insert_events(conn, [new_event(fresh, tenant)])
    assert new.status is InsertStatus.CREATED
    assert outcome(engine, new.event_id) is Outcome.PROCESSED


def erased_settled() -> float:
    """Messages the worker acked as belonging to an erased user."""
    value = REGISTRY.get_sample_value("conversation_events_processed_total", {"outcome": "erased"})
    return value or 0.0


def _insert_unchecked(engine: Engine, body: dict, tenant: str) -> str:
    event = new_event(body, tenant)
    with engine.begin() as conn:
        conn.execute(events.insert().values(**event.row()))
    return event.id
