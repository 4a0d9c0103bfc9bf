"""`process_batch` against real PostgreSQL: where each attempt is counted, and when it gives up."""

from __future__ import annotations

import uuid
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, text
from tests.support.payloads import conversation
from tests.support.pipeline import event_row, store

from conversation_events import processing
from conversation_events.processing import Outcome, ProcessingConfig, ProcessResult, process_batch

MAX_ATTEMPTS = 3
CONFIG = ProcessingConfig(zone=ZoneInfo("Asia/Ho_Chi_Minh"), max_attempts=MAX_ATTEMPTS, lease_s=60)


class WorkerDied(BaseException):
    """Stands in for SIGKILL: unwinds past every handler, so nothing after it is written."""


@pytest.fixture
def deadly(monkeypatch: pytest.MonkeyPatch) -> None:
    def die(*_: object) -> None:
        raise WorkerDied

    monkeypatch.setattr(processing, "score_conversation", die)


def test_a_first_delivery_counts_its_attempt_with_its_result(engine: Engine) -> None:
    event_id = store(engine, conversation())

    result = process_batch(engine, [event_id], CONFIG)[event_id]

    assert isinstance(result, ProcessResult)
    assert result.outcome is Outcome.PROCESSED
    row = event_row(engine, event_id)
    assert (row["status"], row["attempts"], row["lease_until"]) == ("PROCESSED", 1, None)


def test_a_redelivery_counts_its_attempt_before_it_begins(engine: Engine, deadly: None) -> None:
    event_id = store(engine, conversation())

    with pytest.raises(WorkerDied):
        process_batch(engine, [event_id], CONFIG)
    # A first delivery that dies leaves nothing behind ...
    assert event_row(engine, event_id)["attempts"] == 0
    with pytest.raises(WorkerDied):
        process_batch(engine, [event_id], CONFIG, redelivered={event_id})
    # ... its redelivery has claimed the event first, and that claim survives the crash.
    row = event_row(engine, event_id)
    assert (row["status"], row["attempts"]) == ("PROCESSING", 1)
    assert row["lease_until"] is not None


def test_an_event_that_kills_every_worker_runs_out_of_attempts(
    engine: Engine, deadly: None
) -> None:
    poison = store(engine, conversation())
    healthy = store(engine, conversation(bot_type="NEXT_LESSON"))  # skipped: never scored

    for _ in range(MAX_ATTEMPTS):
        with pytest.raises(WorkerDied):
            process_batch(engine, [poison], CONFIG, redelivered={poison})
    results = process_batch(engine, [poison, healthy], CONFIG, redelivered={poison})

    assert results[poison] == ProcessResult(Outcome.EXHAUSTED)
    row = event_row(engine, poison)
    assert (row["status"], row["attempts"]) == ("FAILED", MAX_ATTEMPTS)
    assert row["last_error"] == f"gave up after {MAX_ATTEMPTS} attempts"
    assert row["processed_at"] is None
    assert event_row(engine, healthy)["status"] == "SKIPPED"


def test_terminal_events_are_duplicates_on_either_path(engine: Engine) -> None:
    event_id = store(engine, conversation())
    process_batch(engine, [event_id], CONFIG)

    assert process_batch(engine, [event_id], CONFIG)[event_id].outcome is Outcome.DUPLICATE  # type: ignore[union-attr]
    again = process_batch(engine, [event_id], CONFIG, redelivered={event_id})[event_id]
    assert again == ProcessResult(Outcome.DUPLICATE)
    assert event_row(engine, event_id)["attempts"] == 1


def test_the_same_user_id_in_two_tenants_has_two_statuses(engine: Engine) -> None:
    body = conversation()  # the same conversation and user ids in both tenants
    other = {**body, "metadata": {**body["metadata"], "session_emotion": "interesting"}}
    tenants = [f"t-{uuid.uuid4().hex[:12]}" for _ in range(2)]
    ids = [store(engine, body, tenants[0]), store(engine, other, tenants[1])]

    results = process_batch(engine, ids, CONFIG)

    assert [r.outcome for r in results.values() if isinstance(r, ProcessResult)] == [
        Outcome.PROCESSED
    ] * 2
    changes = [event_row(engine, event_id)["friendship_score_change"] for event_id in ids]
    assert changes[1] - changes[0] == 5  # interesting (+15) against happy (+10)
    with engine.connect() as conn:
        scores: dict[str, int] = dict(
            conn.execute(
                text("SELECT tenant, friendship_score FROM friendship_status WHERE user_id = :u"),
                {"u": body["user_id"]},
            ).all()
        )
    assert scores == dict(zip(tenants, changes, strict=True))
