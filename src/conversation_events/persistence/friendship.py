"""Repository functions for `friendship_status`: load under a row lock, save."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert

from conversation_events.domain.analysis import Emotion
from conversation_events.domain.friendship import FriendshipStatus, Level, TopicMetrics
from conversation_events.persistence.tables import friendship_status

_LOCK = (
    select(friendship_status)
    .where(friendship_status.c.user_id.in_(bindparam("user_ids", expanding=True)))
    .order_by(friendship_status.c.user_id)
    .with_for_update()
)
_CREATE = (
    insert(friendship_status)
    .values(user_id=bindparam("user_id"), friendship_level=Level.PHASE1_STRANGER.value)
    .on_conflict_do_nothing(index_elements=["user_id"])
)


def lock_many(conn: Connection, user_ids: Iterable[str]) -> dict[str, FriendshipStatus]:
    """The users' statuses, locked until the transaction ends; created on first use.

    Row locks serialise concurrent workers updating the same user: each sees the other's
    committed result, so no update is lost. Missing rows are created first, before any status
    row is locked, and then every row is locked in user id order: two workers therefore never
    wait on each other in a cycle (creating a row while holding a lock on another would).
    """
    wanted = sorted(set(user_ids))
    if not wanted:
        return {}
    # ON CONFLICT DO NOTHING neither locks nor waits for an existing row.
    conn.execute(_CREATE, [{"user_id": user_id} for user_id in wanted])
    return {
        row["user_id"]: to_domain(row)
        for row in conn.execute(_LOCK, {"user_ids": wanted}).mappings()
    }


def get_status(conn: Connection, user_id: str) -> FriendshipStatus | None:
    row = (
        conn.execute(select(friendship_status).where(friendship_status.c.user_id == user_id))
        .mappings()
        .first()
    )
    return None if row is None else to_domain(row)


_SAVE = (
    update(friendship_status)
    .where(friendship_status.c.user_id == bindparam("b_user_id"))
    .values(
        friendship_score=bindparam("friendship_score"),
        friendship_level=bindparam("friendship_level"),
        streak_day=bindparam("streak_day"),
        last_interaction_date=bindparam("last_interaction_date"),
        last_interaction_at=bindparam("last_interaction_at"),
        last_emotion=bindparam("last_emotion"),
        topic_metrics=bindparam("topic_metrics", type_=friendship_status.c.topic_metrics.type),
        updated_at=func.now(),
    )
)


def save_many(conn: Connection, statuses: Iterable[FriendshipStatus]) -> None:
    """Write the statuses back (one executemany)."""
    params = [
        {
            "b_user_id": status.user_id,
            "friendship_score": status.friendship_score,
            "friendship_level": status.friendship_level.value,
            "streak_day": status.streak_day,
            "last_interaction_date": status.last_interaction_date,
            "last_interaction_at": status.last_interaction_at,
            "last_emotion": None if status.last_emotion is None else status.last_emotion.value,
            "topic_metrics": {k: v.to_json() for k, v in status.topic_metrics.items()},
        }
        for status in statuses
    ]
    if params:
        conn.execute(_SAVE, params)


def to_domain(row: RowMapping | Mapping[str, Any]) -> FriendshipStatus:
    return FriendshipStatus(
        user_id=row["user_id"],
        friendship_score=row["friendship_score"],
        friendship_level=Level(row["friendship_level"]),
        streak_day=row["streak_day"],
        last_interaction_date=row["last_interaction_date"],
        last_interaction_at=row["last_interaction_at"],
        last_emotion=None if row["last_emotion"] is None else Emotion(row["last_emotion"]),
        topic_metrics={
            k: TopicMetrics.from_json(v) for k, v in (row["topic_metrics"] or {}).items()
        },
    )
