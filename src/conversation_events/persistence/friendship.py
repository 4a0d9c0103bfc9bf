"""Repository functions for `friendship_status`: load under a row lock, save.

A status belongs to a user of a tenant: every function takes `(tenant, user_id)` keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, RowMapping, and_, select, text

from conversation_events.domain.emotions import Emotion
from conversation_events.domain.friendship import FriendshipStatus, Level, TopicMetrics
from conversation_events.persistence.tables import friendship_status

#: A user within its tenant.
UserKey = tuple[str, str]

_LOCK = text(
    """
    SELECT f.* FROM friendship_status AS f
    JOIN unnest(CAST(:tenants AS varchar[]), CAST(:user_ids AS varchar[])) AS u(tenant, user_id)
      ON f.tenant = u.tenant AND f.user_id = u.user_id
    ORDER BY f.tenant, f.user_id
    FOR UPDATE OF f
    """
)
# One statement creates every missing row, in key order (the order of the arrays).
_CREATE = text(
    """
    INSERT INTO friendship_status (tenant, user_id, friendship_level)
    SELECT tenant, user_id, :level
    FROM unnest(CAST(:tenants AS varchar[]), CAST(:user_ids AS varchar[]))
        WITH ORDINALITY AS u(tenant, user_id, n)
    ORDER BY n
    ON CONFLICT (tenant, user_id) DO NOTHING
    """
)


def lock_many(conn: Connection, keys: Iterable[UserKey]) -> dict[UserKey, FriendshipStatus]:
    """The users' statuses, locked until the transaction ends; created on first use.

    Row locks serialise concurrent workers updating the same user: each sees the other's
    committed result, so no update is lost. Missing rows are created first, before any status
    row is locked, and then every row is locked in user id order: two workers therefore never
    wait on each other in a cycle (creating a row while holding a lock on another would).
    """
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    arrays = {"tenants": [k[0] for k in wanted], "user_ids": [k[1] for k in wanted]}
    # ON CONFLICT DO NOTHING neither locks nor waits for an existing row.
    conn.execute(_CREATE, {**arrays, "level": Level.PHASE1_STRANGER.value})
    return {
        (row["tenant"], row["user_id"]): to_domain(row)
        for row in conn.execute(_LOCK, arrays).mappings()
    }


def of_user(tenant: str, user_id: str) -> ColumnElement[bool]:
    """The condition selecting the user's `friendship_status` row (`tenant` and id)."""
    return and_(friendship_status.c.tenant == tenant, friendship_status.c.user_id == user_id)


def status_row(conn: Connection, tenant: str, user_id: str) -> RowMapping | None:
    """The user's `friendship_status` row as stored; another tenant's user of the same id is
    not seen."""
    return (
        conn.execute(select(friendship_status).where(of_user(tenant, user_id))).mappings().first()
    )


def get_status(conn: Connection, tenant: str, user_id: str) -> FriendshipStatus | None:
    """The user's status in `tenant`; another tenant's user of the same id is not seen."""
    row = status_row(conn, tenant, user_id)
    return None if row is None else to_domain(row)


# One statement for the whole batch: the rows arrive as parallel arrays, joined by key.
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
        CAST(:tenants AS varchar[]), CAST(:user_ids AS varchar[]),
        CAST(:scores AS double precision[]), CAST(:levels AS text[]),
        CAST(:streaks AS integer[]), CAST(:days AS date[]), CAST(:ats AS timestamptz[]),
        CAST(:emotions AS text[]), CAST(:topics AS text[])
    ) AS v(tenant, user_id, score, level, streak, day, at, emotion, topics)
    WHERE f.tenant = v.tenant AND f.user_id = v.user_id
    """
)


def save_many(conn: Connection, statuses: Mapping[UserKey, FriendshipStatus]) -> None:
    """Write the statuses back (one statement)."""
    keys = list(statuses)
    rows = [statuses[key] for key in keys]
    if not rows:
        return
    conn.execute(
        _SAVE,
        {
            "tenants": [key[0] for key in keys],
            "user_ids": [key[1] for key in keys],
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
