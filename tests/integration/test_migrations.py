"""The Alembic migrations against a real PostgreSQL: up and down with data, drift, offline SQL."""

from __future__ import annotations

import contextlib
import io
import json
import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from tests.support import services

from conversation_events.migrate import alembic_config, check, create_database, upgrade_sql


@pytest.fixture
def empty_database() -> Iterator[str]:
    """A database with no schema yet."""
    services.require(services.port_open("127.0.0.1", 5432), "PostgreSQL at 127.0.0.1:5432")
    url = (
        make_url(services.PG_ADMIN_URL)
        .set(database=f"ce_migrations_{uuid.uuid4().hex[:10]}")
        .render_as_string(hide_password=False)
    )
    create_database(make_url(url))
    yield url
    services.drop_database(url)


EVENT = """
    INSERT INTO conversation_events (id, conversation_id, user_id, bot_id, start_time,
        end_time, conversation_log, content_hash, status, attempts)
    VALUES (:id, 'c-1', 'u-1', 'pika', now() - interval '5 minutes', now(),
        '[{"speaker": "user", "content": "hi"}]', repeat('a', 64), 'PROCESSED', 1)
"""
USER = """
    INSERT INTO friendship_status (user_id, friendship_score, friendship_level, streak_day)
    VALUES ('u-1', 42.5, 'PHASE1_STRANGER', 3)
"""


def snapshot(url: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT e.id::text, e.status, e.attempts, e.conversation_log::text, "
                    "f.friendship_score, f.streak_day FROM conversation_events e "
                    "JOIN friendship_status f USING (user_id) ORDER BY e.id"
                )
            )
            return [tuple(row) for row in rows]
    finally:
        engine.dispose()


def test_every_migration_goes_up_and_down_keeping_the_data(empty_database: str) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "0001")
    engine = create_engine(empty_database)
    with engine.begin() as conn:
        conn.execute(text(EVENT), {"id": str(uuid.uuid4())})
        conn.execute(text(USER))
    engine.dispose()
    before = snapshot(empty_database)

    command.upgrade(config, "head")
    assert snapshot(empty_database) == before
    command.downgrade(config, "0001")
    assert snapshot(empty_database) == before
    command.upgrade(config, "head")
    assert snapshot(empty_database) == before
    check(empty_database)  # and head still matches the tables after the round trip

    command.downgrade(config, "base")
    engine = create_engine(empty_database)
    with engine.connect() as conn:
        tables = conn.execute(
            text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        ).scalar()
    engine.dispose()
    assert tables == 1  # only alembic_version is left


TOPICS_0006 = {
    "animals": {
        "score": 160.0,
        "turns": 12,
        "last_date": "2026-11-20",
        "agents_used": ["pika", "bolt", "pika"],
        "friendship_level": "PHASE2_ACQUAINTANCE",
    },
    # Written by an older version: fields missing or malformed take their defaults.
    "ocean": {"score": "lots", "turns": 2.5, "last_date": "2026-11-19T08:00:00+07:00"},
}


def test_0007_moves_topics_into_rows_and_back(empty_database: str) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "0006")
    engine = create_engine(empty_database)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO friendship_status (user_id, friendship_score, friendship_level, "
                "topic_metrics) VALUES ('u-1', 800, 'PHASE2_ACQUAINTANCE', CAST(:doc AS jsonb))"
            ),
            {"doc": json.dumps(TOPICS_0006)},
        )
    command.upgrade(config, "0007")
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT topic, score, turns, last_date::text, agents_used FROM topic_metrics "
                "WHERE user_id = 'u-1' ORDER BY topic"
            )
        ).all()
        document = conn.execute(text("SELECT topic_metrics FROM friendship_status")).scalar()
    assert [tuple(row) for row in rows] == [
        ("animals", 160.0, 12, "2026-11-20", ["bolt", "pika"]),
        ("ocean", 0.0, 0, "2026-11-19", []),
    ]
    assert document == {}

    command.downgrade(config, "0006")
    with engine.connect() as conn:
        document = conn.execute(text("SELECT topic_metrics FROM friendship_status")).scalar()
    engine.dispose()
    assert document == {
        "animals": {
            "score": 160.0,
            "turns": 12,
            "last_date": "2026-11-20",
            "agents_used": ["bolt", "pika"],
            "friendship_level": "PHASE2_ACQUAINTANCE",
        },
        "ocean": {
            "score": 0.0,
            "turns": 0,
            "last_date": "2026-11-19",
            "agents_used": [],
            "friendship_level": "PHASE1_STRANGER",
        },
    }


def _log_compression(url: str) -> str:
    """How PostgreSQL compressed a newly stored conversation log of about 10 KB."""
    log = [{"speaker": "user", "content": f"{i}: the elephants at the zoo"} for i in range(250)]
    event_id = str(uuid.uuid4())
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO conversation_events (id, conversation_id, user_id, bot_id, "
                    "start_time, end_time, conversation_log, content_hash) VALUES (:id, :id, "
                    "'u-1', 'pika', now(), now(), CAST(:log AS jsonb), repeat('a', 64))"
                ),
                {"id": event_id, "log": json.dumps(log)},
            )
        with engine.connect() as conn:
            return str(
                conn.execute(
                    text(
                        "SELECT pg_column_compression(conversation_log) FROM conversation_events "
                        "WHERE id = :id"
                    ),
                    {"id": event_id},
                ).scalar()
            )
    finally:
        engine.dispose()


def test_0009_stores_new_content_compressed_with_lz4(empty_database: str) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "0008")
    assert _log_compression(empty_database) == "pglz"  # the server's default
    command.upgrade(config, "0009")
    assert _log_compression(empty_database) == "lz4"
    command.downgrade(config, "0008")
    assert _log_compression(empty_database) == "pglz"


def test_the_tables_and_the_migrations_agree(empty_database: str) -> None:
    check(empty_database)


def test_the_upgrade_sql_can_be_reviewed_offline() -> None:
    out = io.StringIO()
    # Nothing connects in offline mode: a host that does not exist is fine.
    with contextlib.redirect_stdout(out):
        upgrade_sql("postgresql+psycopg2://nobody@db.invalid/ce", "0001:head")
    sql = out.getvalue()
    assert sql.index("SET lock_timeout = '5s'") < sql.index("ALTER TABLE conversation_events")
    assert "ADD COLUMN not_before TIMESTAMP WITH TIME ZONE" in sql
    assert "CREATE INDEX ix_conversation_events_unfinished" in sql


def test_a_migration_behind_live_traffic_gives_up_at_its_lock_timeout(
    empty_database: str,
) -> None:
    command.upgrade(alembic_config(empty_database), "0001")
    reader = create_engine(empty_database)
    with reader.connect() as conn, conn.begin():
        # A long transaction that read the table: ALTER TABLE must wait for it.
        conn.execute(text("SELECT count(*) FROM conversation_events"))
        error = services.outcome_within(
            lambda: command.upgrade(alembic_config(empty_database, lock_timeout="1s"), "head"),
            60,
            hung="the migration waited for the lock without a deadline",
        )
    reader.dispose()
    assert error is not None and "lock timeout" in str(error)
    command.upgrade(alembic_config(empty_database), "head")  # retried once traffic allows
