"""Repository functions for `friendship_status` and `topic_metrics`: load under a row lock, save.

A status belongs to a user of a tenant: every function takes `(tenant, user_id)` keys. Its topics
are rows of `topic_metrics`; the worker loads and writes only the topics of the events at hand,
so an event costs the same whatever the number of topics its user has. A topic's level is not
stored: it is computed on read from the topic's score and the user's level.

`friendship_status.topic_metrics` (a JSON document) held the topics before migration 0007 and is
empty since, unless a worker of the release before wrote there during the rollout; such a
worker starts from the empty document, so what it wrote is what it added: it is added to the
rows here (scores, turns, agents; the later day) and the document emptied again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, RowMapping, and_, select, text

from conversation_events.domain.emotions import Emotion
from conversation_events.domain.friendship import (
    FriendshipStatus,
    Level,
    TopicMetrics,
    topic_level,
)
from conversation_events.persistence.tables import friendship_status, topic_metrics

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


_TOPICS = text(
    """
    SELECT t.* FROM topic_metrics AS t
    JOIN unnest(CAST(:tenants AS varchar[]), CAST(:user_ids AS varchar[]), CAST(:topics AS text[]))
        AS u(tenant, user_id, topic)
      ON t.tenant = u.tenant AND t.user_id = u.user_id AND t.topic = u.topic
    """
)


def lock_many(
    conn: Connection, wanted: Mapping[UserKey, Collection[str]]
) -> dict[UserKey, FriendshipStatus]:
    """The users' statuses, locked until the transaction ends; created on first use.

    `wanted` names, per user, the topics to load: a status holds only those of them the user
    has (and any a worker of the release before added, see the module's docstring).

    Row locks serialise concurrent workers updating the same user: each sees the other's
    committed result, so no update is lost; the status row's lock covers its topic rows too.
    Missing rows are created first, before any status row is locked, and then every row is
    locked in user id order: two workers therefore never wait on each other in a cycle
    (creating a row while holding a lock on another would).
    """
    keys = sorted(set(wanted))
    if not keys:
        return {}
    arrays = {"tenants": [k[0] for k in keys], "user_ids": [k[1] for k in keys]}
    # ON CONFLICT DO NOTHING neither locks nor waits for an existing row.
    conn.execute(_CREATE, {**arrays, "level": Level.PHASE1_STRANGER.value})
    rows = {(row["tenant"], row["user_id"]): row for row in conn.execute(_LOCK, arrays).mappings()}
    topics = {key: set(wanted[key]) | set(_written_before(rows[key])) for key in rows}
    stored = _load_topics(conn, topics)
    return {key: to_domain(row, stored.get(key, {})) for key, row in rows.items()}


def _load_topics(
    conn: Connection, wanted: Mapping[UserKey, Collection[str]]
) -> dict[UserKey, dict[str, TopicMetrics]]:
    triples = [(key[0], key[1], topic) for key in sorted(wanted) for topic in sorted(wanted[key])]
    if not triples:
        return {}
    found: dict[UserKey, dict[str, TopicMetrics]] = {}
    params = {
        "tenants": [t[0] for t in triples],
        "user_ids": [t[1] for t in triples],
        "topics": [t[2] for t in triples],
    }
    for row in conn.execute(_TOPICS, params).mappings():
        found.setdefault((row["tenant"], row["user_id"]), {})[row["topic"]] = _topic(row)
    return found


def _topic(row: RowMapping) -> TopicMetrics:
    return TopicMetrics(
        score=row["score"],
        turns=row["turns"],
        last_date=row["last_date"],
        agents_used=tuple(row["agents_used"]),
    )


def _written_before(row: RowMapping | Mapping[str, Any]) -> dict[str, Any]:
    """The topics a worker of the release before wrote into the status's JSON document."""
    document = row["topic_metrics"]
    return document if isinstance(document, dict) else {}


def _with_earlier(
    topics: Mapping[str, TopicMetrics], document: Mapping[str, Any]
) -> dict[str, TopicMetrics]:
    merged = dict(topics)
    for name, value in document.items():
        added = TopicMetrics.from_json(value)
        current = merged.get(str(name), TopicMetrics())
        merged[str(name)] = current.adding(
            added.score, added.turns, added.last_date, added.agents_used
        )
    return merged


def of_user(tenant: str, user_id: str) -> ColumnElement[bool]:
    """The condition selecting the user's `friendship_status` row (`tenant` and id)."""
    return and_(friendship_status.c.tenant == tenant, friendship_status.c.user_id == user_id)


def status_row(conn: Connection, tenant: str, user_id: str) -> RowMapping | None:
    """The user's `friendship_status` row as stored; another tenant's user of the same id is
    not seen."""
    return (
        conn.execute(select(friendship_status).where(of_user(tenant, user_id))).mappings().first()
    )


_ALL_TOPICS = select(topic_metrics)


def get_status(conn: Connection, tenant: str, user_id: str) -> FriendshipStatus | None:
    """The user's status in `tenant` with all its topics, each with its level; another tenant's
    user of the same id is not seen."""
    row = status_row(conn, tenant, user_id)
    if row is None:
        return None
    found = conn.execute(
        _ALL_TOPICS.where(topic_metrics.c.tenant == tenant, topic_metrics.c.user_id == user_id)
    ).mappings()
    return to_domain(row, {topic["topic"]: _topic(topic) for topic in found})


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
        topic_metrics = '{}'::jsonb,
        updated_at = now()
    FROM unnest(
        CAST(:tenants AS varchar[]), CAST(:user_ids AS varchar[]),
        CAST(:scores AS double precision[]), CAST(:levels AS text[]),
        CAST(:streaks AS integer[]), CAST(:days AS date[]), CAST(:ats AS timestamptz[]),
        CAST(:emotions AS text[])
    ) AS v(tenant, user_id, score, level, streak, day, at, emotion)
    WHERE f.tenant = v.tenant AND f.user_id = v.user_id
    """
)


_SAVE_TOPICS = text(
    """
    INSERT INTO topic_metrics AS t
        (tenant, user_id, topic, score, turns, last_date, agents_used, updated_at)
    SELECT v.tenant, v.user_id, v.topic, v.score, v.turns, v.day,
        ARRAY(SELECT jsonb_array_elements_text(v.agents::jsonb)), now()
    FROM unnest(
        CAST(:tenants AS varchar[]), CAST(:user_ids AS varchar[]), CAST(:topics AS text[]),
        CAST(:scores AS double precision[]), CAST(:turns AS integer[]),
        CAST(:days AS date[]), CAST(:agents AS text[])
    ) AS v(tenant, user_id, topic, score, turns, day, agents)
    ON CONFLICT (tenant, user_id, topic) DO UPDATE
    SET score = excluded.score, turns = excluded.turns, last_date = excluded.last_date,
        agents_used = excluded.agents_used, updated_at = excluded.updated_at
    """
)


def save_many(conn: Connection, statuses: Mapping[UserKey, FriendshipStatus]) -> None:
    """Write the statuses back with the topics they hold (two statements)."""
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
        },
    )
    topics = [
        (key, name, metrics)
        for key in sorted(statuses)
        for name, metrics in sorted(statuses[key].topic_metrics.items())
    ]
    if topics:
        conn.execute(
            _SAVE_TOPICS,
            {
                "tenants": [key[0] for key, _, _ in topics],
                "user_ids": [key[1] for key, _, _ in topics],
                "topics": [name for _, name, _ in topics],
                "scores": [m.score for _, _, m in topics],
                "turns": [m.turns for _, _, m in topics],
                "days": [m.last_date for _, _, m in topics],
                "agents": [orjson.dumps(list(m.agents_used)).decode() for _, _, m in topics],
            },
        )


def to_domain(
    row: RowMapping | Mapping[str, Any], topics: Mapping[str, TopicMetrics]
) -> FriendshipStatus:
    """The status of a `friendship_status` row with the given topics (and any a worker of the
    release before added), each topic levelled by its score and the user's level."""
    level = Level(row["friendship_level"])
    merged = _with_earlier(topics, _written_before(row))
    return FriendshipStatus(
        user_id=row["user_id"],
        friendship_score=row["friendship_score"],
        friendship_level=level,
        streak_day=row["streak_day"],
        last_interaction_date=row["last_interaction_date"],
        last_interaction_at=row["last_interaction_at"],
        last_emotion=None if row["last_emotion"] is None else Emotion(row["last_emotion"]),
        topic_metrics={
            name: replace(metrics, friendship_level=topic_level(metrics.score, level))
            for name, metrics in merged.items()
        },
    )
