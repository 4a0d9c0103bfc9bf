"""Everything stored about one user of a tenant: erase it, export it, and remember erasures.

An erasure deletes the user's events (with their content) and friendship status and records a
tombstone: a pseudonymous digest of (tenant, user id) with the erasure's instant, so that a
conversation that ended before it (re-sent, or still in the queue) does not bring the user
back, while a conversation that ends after it starts afresh.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import insert

from conversation_events.access import subject_hash
from conversation_events.persistence.friendship import get_status, of_user
from conversation_events.persistence.tables import events, friendship_status, user_erasures


@dataclass(frozen=True, slots=True)
class Erasure:
    erased_at: datetime
    events_deleted: int
    status_deleted: bool


def erase_user(conn: Connection, tenant: str, user_id: str) -> Erasure:
    """Delete the user's events and status and record the tombstone (one transaction).

    The tombstone comes first: an insert or a worker that runs meanwhile sees it once this
    commits. The events are locked in id order, as the workers lock them, so an erasure and a
    worker batch never wait on each other in a cycle.
    """
    erased_at = conn.execute(
        insert(user_erasures)
        .values(subject=subject_hash(tenant, user_id), erased_at=func.now())
        .on_conflict_do_update(index_elements=["subject"], set_={"erased_at": func.now()})
        .returning(user_erasures.c.erased_at)
    ).scalar_one()
    mine = (events.c.tenant == tenant) & (events.c.user_id == user_id)
    ids = list(
        conn.execute(
            select(events.c.id).where(mine).order_by(events.c.id).with_for_update()
        ).scalars()
    )
    deleted = 0
    if ids:
        deleted = conn.execute(delete(events).where(events.c.id.in_(ids))).rowcount
    # Its topic rows go with it (ON DELETE CASCADE).
    status = conn.execute(delete(friendship_status).where(of_user(tenant, user_id))).rowcount
    return Erasure(erased_at, deleted, status > 0)


_ERASED = select(user_erasures.c.subject, user_erasures.c.erased_at).where(
    user_erasures.c.subject.in_(bindparam("subjects", expanding=True))
)


def erasures(conn: Connection, users: Iterable[tuple[str, str]]) -> dict[tuple[str, str], datetime]:
    """When each of these (tenant, user id) was last erased; users never erased are absent."""
    by_subject = {subject_hash(tenant, user): (tenant, user) for tenant, user in set(users)}
    if not by_subject:
        return {}
    return {
        by_subject[row.subject]: row.erased_at
        for row in conn.execute(_ERASED, {"subjects": list(by_subject)})
    }


def erased_at(conn: Connection, tenant: str, user_id: str) -> datetime | None:
    return erasures(conn, [(tenant, user_id)]).get((tenant, user_id))


def export_user(conn: Connection, tenant: str, user_id: str) -> dict[str, Any]:
    """What is stored of the user: the status with all its topics (a `FriendshipStatus`) and
    every event row as it is, oldest first."""
    status = get_status(conn, tenant, user_id)
    rows = conn.execute(
        select(events)
        .where(events.c.tenant == tenant, events.c.user_id == user_id)
        .order_by(events.c.end_time, events.c.id)
    ).mappings()
    return {
        "friendship_status": status,
        "events": [dict(row) for row in rows],
        "erased_at": erased_at(conn, tenant, user_id),
    }


def was_erased_after(
    erasures_: Mapping[tuple[str, str], datetime], key: tuple[str, str], end_time: datetime
) -> bool:
    """Whether a conversation that ended at `end_time` predates the user's erasure."""
    erased = erasures_.get(key)
    return erased is not None and end_time <= erased
