"""Repository functions for the `conversation_events` table (the outbox and the results).

Every function takes a SQLAlchemy `Connection` and leaves transaction control to the caller,
except where the name says otherwise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Double,
    Interval,
    RowMapping,
    ScalarSelect,
    TextClause,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    tuple_,
    update,
)

from conversation_events.access import DEFAULT_TENANT, subject_hash
from conversation_events.persistence.tables import TERMINAL_STATUSES, EventStatus, events


def content_hash(canonical: Mapping[str, Any]) -> str:
    """sha256 of a request's canonical JSON (sorted keys): equal content, equal hash."""
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class NewEvent:
    """A validated request, ready to store."""

    id: str
    conversation_id: str
    user_id: str
    bot_id: str
    bot_name: str | None
    bot_type: str | None
    agent_tag: str | None
    start_time: datetime
    end_time: datetime
    #: JSON-ready messages, or their serialised form (`orjson.Fragment`), stored as JSONB.
    conversation_log: list[dict[str, Any]] | orjson.Fragment
    metadata: dict[str, Any] | None
    content_hash: str
    tenant: str = DEFAULT_TENANT
    #: The W3C trace context the event was accepted under (None: tracing off).
    trace_context: dict[str, str] | None = None

    def row(self) -> dict[str, Any]:
        """The values to insert: each field is the `conversation_events` column of its name."""
        return {name: getattr(self, name) for name in _NEW_EVENT_COLUMNS}


_NEW_EVENT_COLUMNS = tuple(f.name for f in fields(NewEvent))


class InsertStatus(StrEnum):
    CREATED = "created"
    DUPLICATE = "duplicate"  # same conversation id, same content: idempotent re-send
    CONFLICT = "conflict"  # same conversation id, other content
    ERASED = "erased"  # ended before its user's erasure: not stored


@dataclass(frozen=True, slots=True)
class InsertOutcome:
    status: InsertStatus
    event_id: str


#: The SQL element type each `NewEvent` field travels as: one array per column.
_ARRAY_TYPES = {"id": "uuid", "start_time": "timestamptz", "end_time": "timestamptz"} | {
    name: "jsonb" for name in ("conversation_log", "metadata", "trace_context")
}  # the rest text (a text value longer than its varchar column fails, never truncates)
_JSON_FIELDS = tuple(name for name, kind in _ARRAY_TYPES.items() if kind == "jsonb")


def _insert_statement() -> TextClause:
    columns = ", ".join(_NEW_EVENT_COLUMNS)
    arrays = ", ".join(
        f"CAST(:{name} AS {_ARRAY_TYPES.get(name, 'text')}[])" for name in _NEW_EVENT_COLUMNS
    )
    # Rows go in in batch order (ORDER BY the ordinality), so of two items with one
    # conversation id the first is created; a row whose user was erased after its
    # conversation ended is left out by the same statement. (Only field names are formatted in.)
    return text(
        f"""
        INSERT INTO conversation_events AS e ({columns})
        SELECT {", ".join(f"v.{name}" for name in _NEW_EVENT_COLUMNS)}
        FROM unnest({arrays}, CAST(:subject AS text[]))
            WITH ORDINALITY AS v({columns}, subject, position)
        WHERE NOT EXISTS (
            SELECT FROM user_erasures AS x
            WHERE x.subject = v.subject AND v.end_time <= x.erased_at
        )
        ORDER BY v.position
        ON CONFLICT (tenant, conversation_id) DO NOTHING
        RETURNING e.tenant, e.conversation_id, e.id
        """  # noqa: S608
    )


_INSERT = _insert_statement()


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _columns(batch: Sequence[NewEvent]) -> dict[str, list[Any]]:
    """The batch as one list per column (JSON columns serialised), and each user's erasure
    subject."""
    columns: dict[str, list[Any]] = {
        name: [getattr(item, name) for item in batch] for name in _NEW_EVENT_COLUMNS
    }
    for name in _JSON_FIELDS:
        columns[name] = [_json_text(value) for value in columns[name]]
    columns["subject"] = [subject_hash(item.tenant, item.user_id) for item in batch]
    return columns


def insert_events(conn: Connection, batch: Sequence[NewEvent]) -> list[InsertOutcome]:
    """Insert a batch in one statement; classify each item as created, duplicate, conflict or
    erased.

    Duplicates inside the batch resolve like re-sends: the first one is created. A
    conversation that ended before its user was erased is not stored (ERASED): a re-sent old
    conversation must not bring the user back.
    """
    # One statement whatever the batch size: its rows arrive as one array per column, so
    # neither SQLAlchemy nor PostgreSQL handles a parameter per value.
    inserted = {
        (row.tenant, row.conversation_id): str(row.id)
        for row in conn.execute(_INSERT, _columns(batch))
    }
    missing = {(item.tenant, item.conversation_id) for item in batch} - inserted.keys()
    existing: dict[tuple[str, str], tuple[str, str]] = {}
    if missing:
        pairs = list(missing)
        existing = {
            (row.tenant, row.conversation_id): (row.id, row.content_hash)
            for row in conn.execute(
                select(
                    events.c.tenant, events.c.conversation_id, events.c.id, events.c.content_hash
                ).where(
                    tuple_(events.c.tenant, events.c.conversation_id).in_(pairs),
                )
            )
        }
    outcomes: list[InsertOutcome] = []
    for item in batch:
        key = (item.tenant, item.conversation_id)
        event_id = inserted.get(key)
        if event_id == item.id:
            outcomes.append(InsertOutcome(InsertStatus.CREATED, event_id))
            continue
        if event_id is not None:  # an earlier item of this batch created the row
            stored_id, stored_hash = event_id, _hash_of(batch, event_id)
        elif key in existing:
            stored_id, stored_hash = existing[key]
            if stored_id == item.id:  # this very item, committed by an earlier try
                outcomes.append(InsertOutcome(InsertStatus.CREATED, stored_id))
                continue
        else:  # left out, and no row has its conversation id: its user was erased since
            outcomes.append(InsertOutcome(InsertStatus.ERASED, item.id))
            continue
        status = (
            InsertStatus.DUPLICATE if stored_hash == item.content_hash else InsertStatus.CONFLICT
        )
        outcomes.append(InsertOutcome(status, stored_id))
    return outcomes


def _hash_of(batch: Sequence[NewEvent], event_id: str) -> str:
    return next(item.content_hash for item in batch if item.id == event_id)


def _locked_in_id_order(
    condition: ColumnElement[bool], *, skip_locked: bool = False
) -> ScalarSelect[str]:
    """The ids of `:event_ids` rows meeting `condition`, row-locked in id order.

    Every multi-row lock on events comes in id order, so two transactions never wait on each
    other in a cycle (an UPDATE alone locks rows in whatever order it finds them).
    """
    return (
        select(events.c.id)
        .where(events.c.id.in_(bindparam("event_ids", expanding=True)), condition)
        .order_by(events.c.id)
        .with_for_update(skip_locked=skip_locked)
        .scalar_subquery()
    )


#: Rows a confirm still has to be recorded for: not yet published as far as the table knows
#: (a worker's claim records its delivery), and not a retry waiting for its republish.
_UNCONFIRMED = and_(events.c.published_at.is_(None), events.c.not_before.is_(None))
_MARK_PUBLISHED = (
    update(events)
    .where(events.c.id.in_(_locked_in_id_order(_UNCONFIRMED, skip_locked=True)))
    .values(published_at=func.now())
)


def mark_published(conn: Connection, event_ids: Sequence[str]) -> None:
    """Record the broker's first confirm, so the relay leaves these events alone.

    Only rows still without `published_at` change. An event a worker claimed meanwhile has it
    already (the claim records the delivery), so when the workers keep up a confirm rewrites
    no row. A retry sent back to PENDING (its `not_before` set) is left unpublished for the
    relay: its first publish's confirm, recorded late, must not hide it for a re-drive horizon.

    Rows a worker holds are skipped, not waited for: locking many rows in another order than
    the workers (id order) could deadlock with them, and a skipped row only means the relay may
    publish that event once more, which the workers ignore.
    """
    if event_ids:
        conn.execute(_MARK_PUBLISHED, {"event_ids": list(event_ids)})


def get_by_conversation_id(
    conn: Connection, tenant: str, conversation_id: str
) -> RowMapping | None:
    """The tenant's event for `conversation_id`; another tenant's is None, as if unknown."""
    return (
        conn.execute(
            select(events).where(
                events.c.tenant == tenant, events.c.conversation_id == conversation_id
            )
        )
        .mappings()
        .first()
    )


# The worker's per-event statements are built once: SQLAlchemy then memoizes their cache keys
# and compiled forms, which cuts most of its per-execution CPU on the processing path.
_GET = select(events).where(events.c.id == bindparam("event_id"))
_GET_LOCKED = _GET.with_for_update()


def get_event(conn: Connection, event_id: str, *, lock: bool = False) -> RowMapping | None:
    return conn.execute(_GET_LOCKED if lock else _GET, {"event_id": event_id}).mappings().first()


@dataclass(frozen=True, slots=True)
class Claim:
    """What a worker learned when it tried to take an event."""

    found: bool
    status: EventStatus | None
    attempts: int


_SECONDS = literal_column("interval '1 second'", Interval)
_CLAIMABLE = events.c.status.in_([EventStatus.PENDING.value, EventStatus.PROCESSING.value])
_CLAIM = (
    update(events)
    .where(events.c.id.in_(_locked_in_id_order(_CLAIMABLE)), _CLAIMABLE)
    .values(
        status=EventStatus.PROCESSING.value,
        attempts=events.c.attempts + 1,
        lease_until=func.now() + bindparam("lease_s", type_=Double) * _SECONDS,
        # Delivered, so published: the publisher's confirm, recorded later, has nothing to do.
        published_at=func.coalesce(events.c.published_at, func.now()),
    )
    .returning(events.c.id, events.c.status, events.c.attempts)
)
_STATUSES = select(events.c.id, events.c.status, events.c.attempts).where(
    events.c.id.in_(bindparam("event_ids", expanding=True))
)


def claim_many(conn: Connection, event_ids: Sequence[str], lease_s: float) -> dict[str, Claim]:
    """Mark PENDING (or lease-holding PROCESSING) events PROCESSING, one attempt each, and
    published if no confirm was recorded yet (their message reached a worker).

    Terminal events are reported unchanged so the caller can ack duplicate deliveries.
    """
    claims = {
        str(row.id): Claim(True, EventStatus(row.status), row.attempts)
        for row in conn.execute(_CLAIM, {"event_ids": list(event_ids), "lease_s": float(lease_s)})
    }
    rest = [event_id for event_id in event_ids if event_id not in claims]
    if rest:
        for row in conn.execute(_STATUSES, {"event_ids": rest}):
            claims[str(row.id)] = Claim(True, EventStatus(row.status), row.attempts)
    return {event_id: claims.get(event_id, Claim(False, None, 0)) for event_id in event_ids}


def claim(conn: Connection, event_id: str, lease_s: float) -> Claim:
    """`claim_many` for one event."""
    return claim_many(conn, [event_id], lease_s)[event_id]


_LOCK_MANY = (
    select(events)
    .where(events.c.id.in_(bindparam("event_ids", expanding=True)))
    .order_by(events.c.id)
    .with_for_update()
)


def lock_many(conn: Connection, event_ids: Sequence[str]) -> list[RowMapping]:
    """The events, locked until the transaction ends, always in id order (no lock cycles)."""
    return list(conn.execute(_LOCK_MANY, {"event_ids": list(event_ids)}).mappings())


# One statement for the whole batch: the rows arrive as parallel arrays and are joined by id.
# (An executemany would send, and PostgreSQL parse and plan, one UPDATE per event.)
_COMPLETE = text(
    """
    UPDATE conversation_events AS e
    SET status = v.status,
        attempts = v.attempts,
        processed_at = CASE WHEN v.status = 'FAILED' THEN e.processed_at ELSE now() END,
        lease_until = NULL,
        last_error = v.error,
        friendship_score_change = v.change,
        new_friendship_level = v.level,
        score_calculation_details = v.details::jsonb,
        scoring_version = v.version,
        conversation_log = CASE WHEN v.drop_content THEN NULL ELSE e.conversation_log END,
        metadata = CASE WHEN v.drop_content THEN NULL ELSE e.metadata END,
        content_purged_at = CASE WHEN v.drop_content THEN now() ELSE e.content_purged_at END
    FROM unnest(
        CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:attempts AS integer[]),
        CAST(:errors AS text[]), CAST(:changes AS double precision[]),
        CAST(:levels AS text[]), CAST(:details AS text[]), CAST(:versions AS integer[]),
        CAST(:drops AS boolean[])
    ) AS v(id, status, attempts, error, change, level, details, version, drop_content)
    WHERE e.id = v.id
    """
)


@dataclass(frozen=True, slots=True)
class Completion:
    """The end of one event's attempt, stored by `complete_many`.

    `attempts` is the event's attempt count including this one. A FAILED completion (attempts
    used up) carries its `error` and no result.
    """

    event_id: str
    status: EventStatus
    attempts: int
    change: float | None = None
    level: str | None = None
    details: Mapping[str, Any] | None = None
    scoring_version: int | None = None
    error: str | None = None


def complete_many(
    conn: Connection, completions: Sequence[Completion], *, drop_content: bool = False
) -> None:
    """Store the results and move the events to a terminal status (one statement).

    `drop_content` (content retention 0): the log and metadata of events that end PROCESSED
    or SKIPPED go at once; the content hash and the results stay. FAILED ones keep theirs.
    """
    if completions:
        conn.execute(
            _COMPLETE,
            {
                "ids": [c.event_id for c in completions],
                "statuses": [c.status.value for c in completions],
                "attempts": [c.attempts for c in completions],
                "errors": [None if c.error is None else c.error[:2000] for c in completions],
                "changes": [c.change for c in completions],
                "levels": [c.level for c in completions],
                "details": [
                    None if c.details is None else orjson.dumps(c.details).decode()
                    for c in completions
                ],
                "versions": [c.scoring_version for c in completions],
                "drops": [drop_content and c.status is not EventStatus.FAILED for c in completions],
            },
        )


def record_failure(
    conn: Connection,
    event_id: str,
    error: str,
    *,
    permanent: bool,
    max_attempts: int,
    count_attempt: bool = False,
    retry_in_s: float = 0.0,
) -> EventStatus | None:
    """Record a failed attempt.

    `count_attempt` adds the attempt to the event's count (when no claim counted it before).
    The event becomes FAILED when the error is permanent or its attempts reached
    `max_attempts`; otherwise it goes back to PENDING and unpublished, due again in
    `retry_in_s` seconds: the relay republishes it then, so the retry's delay holds no
    message and no thread. Returns the new status, or None when the event is unknown or
    already terminal.
    """
    attempts = events.c.attempts + int(count_attempt)
    final = or_(literal(permanent), attempts >= max_attempts)
    row = conn.execute(
        update(events)
        .where(events.c.id == event_id, events.c.status.not_in(TERMINAL_STATUSES))
        .values(
            status=case((final, EventStatus.FAILED.value), else_=EventStatus.PENDING.value),
            attempts=attempts,
            last_error=error[:2000],
            lease_until=None,
            published_at=None,
            not_before=_seconds_from_now(max(0.0, retry_in_s)),
        )
        .returning(events.c.status)
    ).first()
    return None if row is None else EventStatus(row.status)


#: A PENDING event is due unless it is a retry whose `not_before` is still ahead.
_RETRY_DUE = or_(events.c.not_before.is_(None), events.c.not_before <= func.now())


def _seconds_from_now(seconds: float) -> ColumnElement[Any]:
    return func.now() + literal(float(seconds), type_=Double) * _SECONDS


def take_due(
    conn: Connection, *, unconfirmed_after_s: float, redrive_after_s: float, limit: int
) -> list[RowMapping]:
    """Lock PENDING events whose message may be missing; other relays skip the locked rows.

    Due are events the broker has not confirmed for `unconfirmed_after_s`, and, whatever
    `published_at` says, events last published `redrive_after_s` ago and still not started:
    their message may have been returned, dead-lettered, purged or lost with a node. A retry
    waits for its `not_before`. Republishing an event whose message still exists is harmless:
    the worker finds it terminal, or claims it once.
    """
    return list(
        conn.execute(
            select(
                events.c.id,
                events.c.tenant,
                events.c.conversation_id,
                events.c.user_id,
                events.c.bot_id,
                events.c.trace_context,
            )
            .where(
                events.c.status == EventStatus.PENDING,
                # published_at >= created_at, so this bounds both cases: an index range.
                events.c.created_at < _seconds_from_now(-min(unconfirmed_after_s, redrive_after_s)),
                _RETRY_DUE,
                or_(
                    and_(
                        events.c.published_at.is_(None),
                        events.c.created_at < _seconds_from_now(-unconfirmed_after_s),
                    ),
                    events.c.published_at < _seconds_from_now(-redrive_after_s),
                ),
            )
            .order_by(events.c.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).mappings()
    )


def mark_republished(conn: Connection, event_ids: Sequence[str]) -> None:
    """Record the relay's confirmed republish: the re-drive horizon starts again from now.

    Unlike `mark_published` it also restamps rows published before (a re-drive), and it waits
    for no lock: the relay holds these rows' locks itself.
    """
    if event_ids:
        conn.execute(
            update(events)
            .where(events.c.id.in_(bindparam("event_ids", expanding=True)))
            .values(published_at=func.now(), not_before=None),
            {"event_ids": list(event_ids)},
        )


def count_unpublished(conn: Connection, limit: int) -> int:
    """Events waiting in PostgreSQL instead of the queue, counted up to `limit`.

    That is PENDING events the broker has not confirmed (just accepted, their publish failed
    or is still unrecorded, or sent back to PENDING by a retry or an expired lease) and that
    are due: a retry waiting for its `not_before` is not work yet. `limit` bounds the cost of
    the count (an index range over unfinished events) when the backlog is large.
    """
    waiting = (
        select(events.c.id)
        .where(
            events.c.status == EventStatus.PENDING,
            events.c.published_at.is_(None),
            _RETRY_DUE,
        )
        .limit(limit)
        .subquery()
    )
    return int(conn.execute(select(func.count()).select_from(waiting)).scalar_one())


def oldest_unfinished_age_s(conn: Connection) -> float:
    """Seconds since the oldest PENDING or PROCESSING event was accepted (0 when none)."""
    age = conn.execute(
        select(
            func.coalesce(func.extract("epoch", func.now() - func.min(events.c.created_at)), 0)
        ).where(events.c.status.in_([EventStatus.PENDING.value, EventStatus.PROCESSING.value]))
    ).scalar_one()
    return max(0.0, float(age))


def release_expired_leases(conn: Connection, limit: int) -> list[str]:
    """Send PROCESSING events whose lease ran out back to PENDING and unpublished.

    The relay then republishes them: the worker that held them died without its message being
    returned (or is hopelessly stuck; the row lock keeps a late finish from applying twice).
    """
    expired = (
        select(events.c.id)
        .where(events.c.status == EventStatus.PROCESSING, events.c.lease_until < func.now())
        .order_by(events.c.lease_until)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return list(
        conn.execute(
            update(events)
            .where(events.c.id.in_(expired))
            .values(
                status=EventStatus.PENDING, published_at=None, lease_until=None, not_before=None
            )
            .returning(events.c.id)
        ).scalars()
    )


def requeue_failed(
    conn: Connection,
    conversation_ids: Sequence[str] | None = None,
    *,
    tenant: str | None = None,
    event_ids: Sequence[str] | None = None,
) -> list[str]:
    """Operator action: FAILED events back to PENDING with a fresh attempt budget.

    Every FAILED event, or only those of `tenant`, `conversation_ids` (within `tenant`, the
    default one unless given) or `event_ids`. They become unpublished, so the relay publishes
    them again. Returns their ids.
    """
    conditions = [events.c.status == EventStatus.FAILED]
    if conversation_ids:
        conditions.append(events.c.conversation_id.in_(conversation_ids))
        tenant = tenant or DEFAULT_TENANT
    if tenant is not None:
        conditions.append(events.c.tenant == tenant)
    if event_ids is not None:
        conditions.append(events.c.id.in_(event_ids))
    return list(
        conn.execute(
            update(events)
            .where(and_(*conditions))
            .values(
                status=EventStatus.PENDING,
                attempts=0,
                published_at=None,
                lease_until=None,
                not_before=None,
            )
            .returning(events.c.id)
        ).scalars()
    )


def delete_events(conn: Connection, event_ids: Sequence[str]) -> int:
    """Delete these events (rows the caller has locked)."""
    if not event_ids:
        return 0
    return int(conn.execute(delete(events).where(events.c.id.in_(list(event_ids)))).rowcount)
