"""The worker's unit of work: score stored events and update their users' friendship status.

Exactly-once effect under at-least-once delivery: the event row is locked and re-checked inside
the transaction that also updates the status and marks the event done, so a redelivered or
republished message finds the event terminal and changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from enum import StrEnum

from sqlalchemy import Connection, Engine, RowMapping

from conversation_events import telemetry
from conversation_events.domain.conversation import is_scored_bot_type, normalise_log, topic_for
from conversation_events.domain.friendship import Interaction, apply_interaction
from conversation_events.domain.scoring import (
    DEFAULT_WEIGHTS,
    ScoreResult,
    ScoringWeights,
    score_conversation,
)
from conversation_events.errors import ConversationEventsError, EventNotFound, RetryableError
from conversation_events.persistence import events as event_repo
from conversation_events.persistence import friendship as friendship_repo
from conversation_events.persistence import users as user_repo
from conversation_events.persistence.db import translate_errors
from conversation_events.persistence.tables import TERMINAL_STATUSES, EventStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProcessingConfig:
    zone: tzinfo
    max_attempts: int
    lease_s: float
    weights: ScoringWeights = field(default=DEFAULT_WEIGHTS)
    #: Content retention 0: drop an event's log and metadata as soon as it is finished.
    drop_content: bool = False


class Outcome(StrEnum):
    PROCESSED = "processed"
    SKIPPED = "skipped"
    DUPLICATE = "duplicate"  # already terminal: a redelivery, nothing changed
    EXHAUSTED = "exhausted"  # attempts used up (workers died on it): now FAILED
    ERASED = "erased"  # its user was erased after it ended: deleted, not applied


@dataclass(frozen=True, slots=True)
class ProcessResult:
    outcome: Outcome
    accepted_at: datetime | None = None  # when the API stored the event (for lag metrics)


#: What a batch yields per event: its result, or the error that stopped it alone.
Outcomes = dict[str, "ProcessResult | ConversationEventsError"]


def process_event(engine: Engine, event_id: str, config: ProcessingConfig) -> ProcessResult:
    """Process one event; raise `RetryableError` or `PermanentError` when it cannot be done."""
    result = process_batch(engine, [event_id], config)[event_id]
    if isinstance(result, ConversationEventsError):
        raise result
    return result


def process_batch(
    engine: Engine,
    event_ids: Sequence[str],
    config: ProcessingConfig,
    *,
    redelivered: Collection[str] = (),
) -> Outcomes:
    """Process several events with a fixed number of transactions, whatever their count.

    In one transaction: lock the events (id order) and their users' statuses ((tenant, user id)
    order),
    re-check that each event is still not terminal and has attempts left, apply the scores in
    order of `end_time`, store statuses and results with the attempt counted, commit.

    Events in `redelivered` came back from the broker: the delivery before may have killed its
    worker, which then counted nothing. Their attempt is therefore claimed first (status
    PROCESSING, attempts + 1) and committed on its own, so that an event that kills every worker
    still runs out of attempts. A first delivery skips that claim: its attempt is counted with
    its result, or by `fail_event` when it fails.

    An error that belongs to one event (bad data, a bug) never fails its neighbours: the batch
    is then redone event by event and that event alone gets the error. `RetryableError` (the
    database is unavailable) is raised for the whole batch.
    """
    ids = list(dict.fromkeys(event_ids))
    results: Outcomes = {}
    with translate_errors(), engine.connect() as conn:
        claimed: set[str] = set()
        suspect = [event_id for event_id in ids if event_id in redelivered]
        if suspect:
            with _span("claim redelivered", len(suspect)), conn.begin():
                claims = event_repo.claim_many(conn, suspect, config.lease_s)
            for event_id, claim in claims.items():
                if not claim.found:
                    results[event_id] = EventNotFound(f"event {event_id} is not in the database")
                elif claim.status in TERMINAL_STATUSES:
                    results[event_id] = ProcessResult(Outcome.DUPLICATE)
                else:
                    claimed.add(event_id)
        todo = [event_id for event_id in ids if event_id not in results]
        if todo:
            results.update(_apply_isolating(conn, todo, claimed, config))
    return results


def _apply_isolating(
    conn: Connection, ids: list[str], claimed: set[str], config: ProcessingConfig
) -> Outcomes:
    try:
        with translate_errors(), conn.begin():
            return _apply(conn, ids, claimed, config)
    except RetryableError:
        raise
    except Exception as exc:
        if len(ids) == 1:
            return {ids[0]: _as_project_error(exc)}
        log.warning("batch failed; processing its events one by one", extra={"events": len(ids)})
        results: Outcomes = {}
        for event_id in ids:
            results.update(_apply_isolating(conn, [event_id], claimed, config))
        return results


def _as_project_error(exc: Exception) -> ConversationEventsError:
    """A bug or bad data in one event: kept retryable, so the attempt budget decides."""
    if isinstance(exc, ConversationEventsError):
        return exc
    return RetryableError(f"{type(exc).__name__}: {exc}")


def _apply(
    conn: Connection, ids: list[str], claimed: set[str], config: ProcessingConfig
) -> Outcomes:
    results: Outcomes = {}
    completions: list[event_repo.Completion] = []
    scored: list[tuple[RowMapping, ScoreResult, int]] = []
    with _span("claim", len(ids)):
        rows = event_repo.lock_many(conn, ids)
        for missing in set(ids) - {str(row["id"]) for row in rows}:
            results[missing] = EventNotFound(f"event {missing} is not in the database")
        rows, erased = _without_erased(conn, rows)
    for event_id in erased:
        results[event_id] = ProcessResult(Outcome.ERASED)
    with _span("score", len(rows)):
        for row in rows:
            event_id = str(row["id"])
            # A claimed event's attempt is already in its row; a first delivery counts it now.
            attempt = row["attempts"] + (0 if event_id in claimed else 1)
            if row["status"] in TERMINAL_STATUSES:
                results[event_id] = ProcessResult(Outcome.DUPLICATE)
            elif attempt > config.max_attempts:
                completions.append(
                    event_repo.Completion(
                        event_id,
                        EventStatus.FAILED,
                        attempts=attempt - 1,
                        error=f"gave up after {attempt - 1} attempts",
                    )
                )
                results[event_id] = ProcessResult(Outcome.EXHAUSTED)
            elif not is_scored_bot_type(row["bot_type"]):
                completions.append(
                    event_repo.Completion(
                        event_id,
                        EventStatus.SKIPPED,
                        attempts=attempt,
                        details={"skipped": f"bot_type {row['bot_type']} is not scored"},
                    )
                )
                results[event_id] = ProcessResult(Outcome.SKIPPED, row["created_at"])
            else:
                log_ = normalise_log(row["conversation_log"])
                score = score_conversation(log_, row["metadata"], config.weights)
                scored.append((row, score, attempt))
    with _span("status update", len(completions) + len(scored)):
        _update_statuses(conn, scored, completions, results, config)
    return results


def _update_statuses(
    conn: Connection,
    scored: list[tuple[RowMapping, ScoreResult, int]],
    completions: list[event_repo.Completion],
    results: Outcomes,
    config: ProcessingConfig,
) -> None:
    """Apply the scores to their users' statuses in `end_time` order; store every result."""
    topics: dict[friendship_repo.UserKey, set[str]] = {}
    for row, _, _ in scored:
        user = (row["tenant"], row["user_id"])
        topics.setdefault(user, set()).add(_topic(row))
    statuses = friendship_repo.lock_many(conn, topics)
    for row, score, attempt in sorted(scored, key=lambda item: item[0]["end_time"]):
        user = (row["tenant"], row["user_id"])
        statuses[user] = apply_interaction(
            statuses[user],
            Interaction(
                end_time=row["end_time"], topic=_topic(row), bot_id=row["bot_id"], score=score
            ),
            config.zone,
        )
        completions.append(
            event_repo.Completion(
                str(row["id"]),
                EventStatus.PROCESSED,
                attempts=attempt,
                change=score.change,
                level=statuses[user].friendship_level.value,
                details=score.details,
                scoring_version=config.weights.version,
            )
        )
        results[str(row["id"])] = ProcessResult(Outcome.PROCESSED, row["created_at"])
    friendship_repo.save_many(conn, statuses)
    event_repo.complete_many(conn, completions, drop_content=config.drop_content)


def _topic(row: RowMapping) -> str:
    return topic_for(row["agent_tag"], row["bot_type"], row["bot_id"])


def _span(step: str, events: int) -> AbstractContextManager[object]:
    """A child span of the batch's for one step of the processing (nothing when untraced)."""
    if not telemetry.enabled():
        return contextlib.nullcontext()
    return telemetry.span(step, __name__, attributes={"conversation_events.events": events})


def _without_erased(conn: Connection, rows: list[RowMapping]) -> tuple[list[RowMapping], list[str]]:
    """The rows to apply, and the ids of those deleted because their user was erased later.

    An erasure deletes the user's events, but one stored while it ran (or by a release that
    did not check) can survive it: it is deleted here, never applied, so no status reappears.
    """
    pending = [row for row in rows if row["status"] not in TERMINAL_STATUSES]
    erasures = user_repo.erasures(conn, ((row["tenant"], row["user_id"]) for row in pending))
    if not erasures:
        return rows, []
    late = [
        str(row["id"])
        for row in pending
        if user_repo.was_erased_after(erasures, (row["tenant"], row["user_id"]), row["end_time"])
    ]
    if late:
        event_repo.delete_events(conn, late)
        log.info("events of erased users deleted unapplied", extra={"events": len(late)})
    return [row for row in rows if str(row["id"]) not in late], late


def fail_event(
    engine: Engine,
    event_id: str,
    error: str,
    *,
    permanent: bool,
    max_attempts: int,
    count_attempt: bool,
    retry_in_s: float = 0.0,
) -> EventStatus | None:
    """Record a failed attempt; returns FAILED when the event will not be retried.

    `count_attempt`: the attempt was not claimed before (a first delivery, see `process_batch`).
    `retry_in_s`: when it will be retried, the relay republishes it after this delay.
    """
    with translate_errors(), engine.begin() as conn:
        return event_repo.record_failure(
            conn,
            event_id,
            error,
            permanent=permanent,
            max_attempts=max_attempts,
            count_attempt=count_attempt,
            retry_in_s=retry_in_s,
        )
