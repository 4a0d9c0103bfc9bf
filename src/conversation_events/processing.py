"""The worker's unit of work: score one stored event and update its user's friendship status.

Exactly-once effect under at-least-once delivery: the event row is locked and re-checked inside
the transaction that also updates the status and marks the event done, so a redelivered or
republished message finds the event terminal and changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from enum import StrEnum

from sqlalchemy import Connection, Engine

from conversation_events.domain.conversation import is_scored_bot_type, normalise_log, topic_for
from conversation_events.domain.friendship import Interaction, apply_interaction
from conversation_events.domain.scoring import DEFAULT_WEIGHTS, ScoringWeights, score_conversation
from conversation_events.errors import EventNotFound
from conversation_events.persistence import events as event_repo
from conversation_events.persistence import friendship as friendship_repo
from conversation_events.persistence.db import translate_errors
from conversation_events.persistence.tables import TERMINAL_STATUSES, EventStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProcessingConfig:
    zone: tzinfo
    max_attempts: int
    lease_s: float
    weights: ScoringWeights = field(default=DEFAULT_WEIGHTS)


class Outcome(StrEnum):
    PROCESSED = "processed"
    SKIPPED = "skipped"
    DUPLICATE = "duplicate"  # already terminal: a redelivery, nothing changed
    EXHAUSTED = "exhausted"  # attempts used up (workers died on it): now FAILED


@dataclass(frozen=True, slots=True)
class ProcessResult:
    outcome: Outcome
    accepted_at: datetime | None = None  # when the API stored the event (for lag metrics)


def process_event(engine: Engine, event_id: str, config: ProcessingConfig) -> ProcessResult:
    """Process one event; raise `RetryableError` or `PermanentError` when it cannot be done."""
    with translate_errors():
        with engine.begin() as conn:
            claimed = event_repo.claim(conn, event_id, config.lease_s)
        if not claimed.found:
            raise EventNotFound(f"event {event_id} is not in the database")
        if claimed.status in TERMINAL_STATUSES:
            return ProcessResult(Outcome.DUPLICATE)
        if claimed.attempts > config.max_attempts:
            with engine.begin() as conn:
                event_repo.record_failure(
                    conn,
                    event_id,
                    f"gave up after {claimed.attempts - 1} attempts",
                    permanent=True,
                    max_attempts=config.max_attempts,
                )
            return ProcessResult(Outcome.EXHAUSTED)
        with engine.begin() as conn:
            return _apply(conn, event_id, config)


def _apply(conn: Connection, event_id: str, config: ProcessingConfig) -> ProcessResult:
    row = event_repo.get_event(conn, event_id, lock=True)
    if row is None:
        raise EventNotFound(f"event {event_id} is not in the database")
    if row["status"] in TERMINAL_STATUSES:
        return ProcessResult(Outcome.DUPLICATE)
    if not is_scored_bot_type(row["bot_type"]):
        event_repo.complete(
            conn,
            event_id,
            status=EventStatus.SKIPPED,
            change=None,
            level=None,
            details={"skipped": f"bot_type {row['bot_type']} is not scored"},
            scoring_version=None,
        )
        return ProcessResult(Outcome.SKIPPED, row["created_at"])
    score = score_conversation(
        normalise_log(row["conversation_log"]), row["metadata"], config.weights
    )
    status = friendship_repo.lock_status(conn, row["user_id"])
    updated = apply_interaction(
        status,
        Interaction(
            end_time=row["end_time"],
            topic=topic_for(row["agent_tag"], row["bot_type"], row["bot_id"]),
            bot_id=row["bot_id"],
            score=score,
        ),
        config.zone,
    )
    friendship_repo.save_status(conn, updated)
    event_repo.complete(
        conn,
        event_id,
        status=EventStatus.PROCESSED,
        change=score.change,
        level=updated.friendship_level.value,
        details=score.details,
        scoring_version=config.weights.version,
    )
    return ProcessResult(Outcome.PROCESSED, row["created_at"])


def fail_event(
    engine: Engine, event_id: str, error: str, *, permanent: bool, max_attempts: int
) -> EventStatus | None:
    """Record a failed attempt; returns FAILED when the event will not be retried."""
    with translate_errors(), engine.begin() as conn:
        return event_repo.record_failure(
            conn, event_id, error, permanent=permanent, max_attempts=max_attempts
        )
