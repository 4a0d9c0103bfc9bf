"""Repository functions for `friendship_status`: load under a row lock, save."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from sqlalchemy import Connection, RowMapping, bindparam, select, text

from conversation_events.domain.emotions import Emotion
from conversation_events.domain.friendship import FriendshipStatus, Level, TopicMetrics
from conversation_events.persistence.tables import friendship_status

_LOCK = (
    select(friendship_status)
    .where(friendship_status.c.user_id.in_(bindparam("user_ids", expanding=True)))
    .order_by(friendship_status.c.user_id)
    .with_for_update()
)
# One statement creates every missing row, in user id order (the order of the array).
_CREATE = text(
    """
    INSERT INTO friendship_status (user_id, friendship_level)
    SELECT user_id, :level
    FROM unnest(CAST(:user_ids AS varchar[])) WITH ORDINALITY AS u(user_id, n)
    ORDER BY n
    ON CONFLICT (user_id) DO NOTHING
    """
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
    conn.execute(_CREATE, {"user_ids": wanted, "level": Level.PHASE1_STRANGER.value})
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


# One statement for the whole batch: the rows arrive as parallel arrays, joined by user id.
_SAVE = text(
    """
    UPDATE friendship_status AS f
    SET friendship_score = v.score,
        friendship_level = v.level,
        streak_day = v.streak,
        last_interaction_date = v.day,
        last_interaction_at = v.at,
        last_emotion = v.emotion,
        topic_metrics = v.topics::jsonb,
        updated_at = now()
    FROM unnest(
        CAST(:user_ids AS varchar[]), CAST(:scores AS double precision[]),
        CAST(:levels AS text[]), CAST(:streaks AS integer[]), CAST(:days AS date[]),
        CAST(:ats AS timestamptz[]), CAST(:emotions AS text[]), CAST(:topics AS text[])
    ) AS v(user_id, score, level, streak, day, at, emotion, topics)
    WHERE f.user_id = v.user_id
    """
)


def save_many(conn: Connection, statuses: Iterable[FriendshipStatus]) -> None:
    """Write the statuses back (one statement)."""
    rows = list(statuses)
    if not rows:
        return
    conn.execute(
        _SAVE,
        {
            "user_ids": [s.user_id for s in rows],
            "scores": [s.friendship_score for s in rows],
            "levels": [s.friendship_level.value for s in rows],
            "streaks": [s.streak_day for s in rows],
            "days": [s.last_interaction_date for s in rows],
            "ats": [s.last_interaction_at for s in rows],
            "emotions": [None if s.last_emotion is None else s.last_emotion.value for s in rows],
            "topics": [
                orjson.dumps({k: v.to_json() for k, v in s.topic_metrics.items()}).decode()
                for s in rows
            ],
        },
    )


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
