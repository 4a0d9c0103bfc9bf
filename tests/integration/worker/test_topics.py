"""Topic metrics as rows of their own, against real PostgreSQL: an event touches its topic only,
levels follow the user's level on read, and what a worker of the release before wrote into the
old JSON document is added, not lost."""

from __future__ import annotations

import json
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, text
from tests.support.payloads import conversation
from tests.support.pipeline import store

from conversation_events.domain.friendship import Level
from conversation_events.persistence import friendship as friendship_repo
from conversation_events.persistence import users as user_repo
from conversation_events.processing import Outcome, ProcessingConfig, process_batch

CONFIG = ProcessingConfig(zone=ZoneInfo("Asia/Ho_Chi_Minh"), max_attempts=3, lease_s=60)
TOPICS = 1000


def _seed(engine: Engine, user: str, score: float, topics: int, topic_score: float) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO friendship_status (tenant, user_id, friendship_score, "
                "friendship_level, streak_day) VALUES ('default', :u, :s, 'PHASE1_STRANGER', 1)"
            ),
            {"u": user, "s": score},
        )
        conn.execute(
            text(
                "INSERT INTO topic_metrics (tenant, user_id, topic, score, turns, agents_used) "
                "SELECT 'default', :u, 'topic-' || i, :ts, 4, ARRAY['bot-9'] "
                "FROM generate_series(1, :n) AS i"
            ),
            {"u": user, "ts": topic_score, "n": topics},
        )


def _topic_rows(engine: Engine, user: str) -> dict[str, tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT topic, score, turns, agents_used, updated_at FROM topic_metrics "
                "WHERE tenant = 'default' AND user_id = :u"
            ),
            {"u": user},
        )
        return {row.topic: tuple(row[1:]) for row in rows}


def test_an_event_writes_its_own_topic_only_and_the_others_follow_the_users_level(
    engine: Engine,
) -> None:
    user = f"user-{uuid.uuid4().hex[:12]}"
    # Just below PHASE2 (500): the event lifts the user, and with it every topic past 50.
    _seed(engine, user, score=495.0, topics=TOPICS, topic_score=60.0)
    before = _topic_rows(engine, user)
    event_id = store(engine, conversation(user_id=user, agent_tag="topic-7"))

    assert process_batch(engine, [event_id], CONFIG)[event_id].outcome is Outcome.PROCESSED  # type: ignore[union-attr]

    after = _topic_rows(engine, user)
    changed = {topic for topic in after if after[topic] != before[topic]}
    assert changed == {"topic-7"}
    assert after["topic-7"][1] > 4 and after["topic-7"][2] == ["bot-1", "bot-9"]
    with engine.connect() as conn:
        status = friendship_repo.get_status(conn, "default", user)
    assert status is not None and status.friendship_level is Level.PHASE2_ACQUAINTANCE
    assert len(status.topic_metrics) == TOPICS
    assert {m.friendship_level for m in status.topic_metrics.values()} == {
        Level.PHASE2_ACQUAINTANCE
    }


def test_a_document_written_by_the_release_before_is_added_to_the_rows(engine: Engine) -> None:
    user = f"user-{uuid.uuid4().hex[:12]}"
    _seed(engine, user, score=10.0, topics=2, topic_score=20.0)
    # What a worker of the release before writes during a rollout: its view, from an empty
    # document, of the topics it processed.
    earlier = {
        "topic-1": {"score": 5.0, "turns": 2, "last_date": "2026-11-19", "agents_used": ["old"]},
        "topic-new": {"score": 3.0, "turns": 1, "last_date": None, "agents_used": ["old"]},
    }
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE friendship_status SET topic_metrics = CAST(:d AS jsonb) WHERE user_id = :u"
            ),
            {"d": json.dumps(earlier), "u": user},
        )
    with engine.connect() as conn:
        read = friendship_repo.get_status(conn, "default", user)
    assert read is not None and read.topic_metrics["topic-1"].score == 25.0

    event_id = store(engine, conversation(user_id=user, agent_tag="topic-2"))
    process_batch(engine, [event_id], CONFIG)

    rows = _topic_rows(engine, user)
    assert rows["topic-1"][:3] == (25.0, 6, ["bot-9", "old"])
    assert rows["topic-new"][:3] == (3.0, 1, ["old"])
    assert rows["topic-2"][0] > 20.0
    with engine.connect() as conn:
        document = conn.execute(
            text("SELECT topic_metrics FROM friendship_status WHERE user_id = :u"), {"u": user}
        ).scalar_one()
        status = friendship_repo.get_status(conn, "default", user)
    assert document == {}
    assert status is not None and status.topic_metrics["topic-1"].score == 25.0  # added once


def test_erasing_a_user_removes_its_topic_rows(engine: Engine) -> None:
    user = f"user-{uuid.uuid4().hex[:12]}"
    _seed(engine, user, score=10.0, topics=3, topic_score=1.0)
    with engine.begin() as conn:
        assert user_repo.erase_user(conn, "default", user).status_deleted
    assert _topic_rows(engine, user) == {}


def _pages(engine: Engine, prefix: str) -> dict[str, dict[str, int]]:
    """The heap page of each status row and topic row of the users named `<prefix>…`."""
    pages: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for table in ("friendship_status", "topic_metrics"):
            rows = conn.execute(
                text(
                    f"SELECT user_id, (ctid::text::point)[0]::int AS page FROM {table} "
                    "WHERE tenant = 'default' AND user_id LIKE :p"
                ),
                {"p": f"{prefix}%"},
            )
            pages[table] = {row.user_id: row.page for row in rows}
    return pages


def test_processing_rewrites_a_known_users_rows_in_place(engine: Engine) -> None:
    """Migration 0008's fill factor: an event of an existing user updates its status and topic
    rows on their own pages (heap-only tuples), so no index of either table grows with it.

    The batch's users are spread over the tables as a live batch's are (one in 25 of the users
    stored one after the other): a page's spare room is for a few rewrites at a time."""
    prefix = f"inplace-{uuid.uuid4().hex[:8]}-"
    users = 1000
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO friendship_status (tenant, user_id, friendship_score, "
                "friendship_level, streak_day) SELECT 'default', :p || i, 20, "
                "'PHASE1_STRANGER', 1 FROM generate_series(1, :n) AS i"
            ),
            {"p": prefix, "n": users},
        )
        conn.execute(
            text(
                "INSERT INTO topic_metrics (tenant, user_id, topic, score, turns, agents_used) "
                "SELECT 'default', :p || i, 'animals', 12, 4, ARRAY['bot-1'] "
                "FROM generate_series(1, :n) AS i"
            ),
            {"p": prefix, "n": users},
        )
    before = _pages(engine, prefix)
    ids = [
        store(engine, conversation(user_id=f"{prefix}{i}", agent_tag="animals"))
        for i in range(1, users + 1, 25)
    ]

    results = process_batch(engine, ids, CONFIG)

    assert {r.outcome for r in results.values()} == {Outcome.PROCESSED}  # type: ignore[union-attr]
    with engine.connect() as conn:
        rewritten = conn.execute(
            text("SELECT count(*) FROM topic_metrics WHERE user_id LIKE :p AND turns > 4"),
            {"p": f"{prefix}%"},
        ).scalar()
    assert rewritten == len(ids)
    assert _pages(engine, prefix) == before
