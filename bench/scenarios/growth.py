"""Cost as the data grows: the accept and processing rates on an empty and a loaded database,
and the event of a user with 1,000 topics against that of a new user.

The loaded database holds `events` finished (PROCESSED) events spread over `users` users,
each with a `friendship_status` row, loaded in SQL like the purge scenario's (logs of 10–40
messages, half with upstream metadata, scoring results set), then VACUUM ANALYZE. On the empty
database and on the loaded one: one API process saturated by 64 connections (closed loop,
nothing consuming), and one worker draining a backlog of the same `backlog` new events (of
users of the loaded set: on the loaded database they update existing rows, on the empty one
they create them).

Topics: `topic_events` events of as many users, one event each, so that no two events share a
row lock or a batch's status read and write. The users have a status with 1,000 topics (rows
of `topic_metrics`) in one run and no status in the other; the worker's and PostgreSQL's CPU
per event are compared.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import TextClause, text

from bench import infra
from bench.infra import log
from bench.scenarios.accept import accept_run
from bench.scenarios.common import Config, load_in_sql
from bench.scenarios.processing import processing_run

#: Topics of a heavy user's status (issue #13: "a user with 1,000 topics").
HEAVY_TOPICS = 1000
TABLES = ("conversation_events", "friendship_status", "topic_metrics")

# Four conversation logs (10, 20, 30 and 40 messages, English and Vietnamese) shared by the
# loaded rows in turn: the row sizes of real conversations without building one per row.
_LOGS = """
    logs AS (
        SELECT k, jsonb_agg(jsonb_build_object(
            'character', CASE WHEN i % 2 = 1 THEN 'USER' ELSE 'PIKA' END,
            'content', CASE WHEN i % 2 = 1
                THEN (ARRAY['Why do elephants have such big ears?',
                            'Tại sao con voi lại có cái vòi dài vậy?',
                            'I drew a picture of a dinosaur, it has three horns',
                            'Kể cho mình nghe chuyện về biển cả đi'])[1 + (i + k) % 4]
                ELSE (ARRAY['Great question! Their big ears help them stay cool in the sun.',
                            'Câu hỏi hay quá! Cái vòi giúp voi uống nước và cầm đồ vật.',
                            'A spider has eight legs. Can you count to eight with me?',
                            'Ngày xửa ngày xưa, dưới đáy biển xanh có một chú rùa nhỏ...'])
                     [1 + (i + k) % 4] END,
            'timestamp', timestamptz '2026-06-01 03:00:00+00' + make_interval(secs => 15 * i))
            ORDER BY i) AS doc
        FROM generate_series(0, 3) AS k, generate_series(1, 10 + 10 * k) AS i
        GROUP BY k)
"""
_TAGS = "(ARRAY['animals', 'ocean', 'counting', 'feelings', 'dinosaurs'])"


def _events_sql(finished: bool) -> TextClause:
    """`:rows` events `<:tag>-<g>` of users `<:user_prefix><g % :users>`: PROCESSED long ago
    with their results (`finished`), or stored and published now, waiting for a worker."""
    if finished:
        state = """'PROCESSED', 1, t, t, t, 1.5, 'PHASE1_STRANGER',
            '{"inputs": {"turns": {"value": 12}, "questions": {"value": 2}},
              "emotion": "happy", "change": 1.5}'::jsonb, 1"""
        at = "now() - interval '1 hour' - make_interval(secs => g % 7776000)"
    else:
        state = "'PENDING', 0, now(), now(), NULL, NULL, NULL, NULL, NULL"
        at = "now() - interval '1 minute'"
    return text(
        f"""
        WITH {_LOGS}
        INSERT INTO conversation_events (
            id, tenant, conversation_id, user_id, bot_id, bot_name, bot_type, agent_tag,
            start_time, end_time, conversation_log, metadata, content_hash, status, attempts,
            created_at, published_at, processed_at, friendship_score_change,
            new_friendship_level, score_calculation_details, scoring_version)
        SELECT md5(CAST(:tag AS text) || g)::uuid, 'default', CAST(:tag AS text) || '-' || g,
            CAST(:user_prefix AS text) || (g % :users), 'bot-' || (1 + g % 12), 'Pika', 'TALK',
            CASE WHEN g % 6 = 0 THEN NULL ELSE {_TAGS}[1 + g % 5] END,
            t - make_interval(secs => 15 * (10 + 10 * (g % 4))), t, logs.doc,
            CASE WHEN g % 2 = 0 THEN '{{"session_emotion": "happy",
                "user_initiated_questions": 2, "new_memories_count": 1}}'::jsonb END,
            md5('c' || CAST(:tag AS text) || g) || md5('h' || CAST(:tag AS text) || g), {state}
        FROM generate_series(1, :rows) AS g
        JOIN logs ON logs.k = g % 4
        CROSS JOIN LATERAL (SELECT {at} AS t) AS at
        """
    )


#: `:users` statuses `<:user_prefix><u>`, each with `:topics` topic rows (the five tags first).
_STATUSES = text(
    f"""
    WITH users AS (
        INSERT INTO friendship_status (tenant, user_id, friendship_score, friendship_level,
            streak_day, last_interaction_date, last_interaction_at, last_emotion)
        SELECT 'default', CAST(:user_prefix AS text) || u, 20 + u % 50, 'PHASE1_STRANGER',
            1 + u % 7, current_date - 1, now() - interval '1 day', 'happy'
        FROM generate_series(0, :users - 1) AS u
        RETURNING tenant, user_id)
    INSERT INTO topic_metrics (tenant, user_id, topic, score, turns, last_date, agents_used)
    SELECT users.tenant, users.user_id,
        CASE WHEN i <= 5 THEN {_TAGS}[i] ELSE 'topic-' || i END,
        12.5, 40, DATE '2026-05-20', ARRAY['bot-1', 'bot-7']
    FROM users, generate_series(1, :topics) AS i
    """
)


Statement = tuple[TextClause, dict[str, Any]]


def events(tag: str, rows: int, users: int, user_prefix: str, *, finished: bool) -> Statement:
    """One statement for :func:`load_in_sql`: `rows` events over `users` users."""
    params = {"tag": tag, "rows": rows, "users": users, "user_prefix": user_prefix}
    return (_events_sql(finished), params)


def statuses(users: int, topics: int, user_prefix: str) -> Statement:
    """One statement for :func:`load_in_sql`: `users` statuses of `topics` topics each."""
    return (_STATUSES, {"users": users, "topics": topics, "user_prefix": user_prefix})


def sizes(cfg: Config) -> dict[str, int]:
    if cfg.quick:
        return {"events": 200_000, "users": 20_000, "backlog": 3_000, "topic_events": 500}
    return {"events": 2_000_000, "users": 200_000, "backlog": 10_000, "topic_events": 2_000}


def _ratio(loaded: float, empty: float) -> float:
    return loaded / empty if empty else float("nan")


def _rates(cfg: Config, empty: str, loaded: str, backlog: int) -> dict[str, Any]:
    """Accept runs on both databases, then the same backlog added to each and drained."""
    acc = {
        name: accept_run("ours", 1, cfg, db) for name, db in (("empty", empty), ("loaded", loaded))
    }
    for db in (empty, loaded):
        load_in_sql(db, [events("new", backlog, backlog, "grow-", finished=False)], TABLES)
    proc = {
        name: processing_run(f"growth-{name}", "ours", 1, db, backlog, {})
        for name, db in (("empty", empty), ("loaded", loaded))
    }
    return {
        "accept": acc | {"ratio": _ratio(acc["loaded"]["rate"], acc["empty"]["rate"])},
        "processing": proc
        | {"ratio": _ratio(proc["loaded"]["events_per_s"], proc["empty"]["events_per_s"])},
    }


def _per_event(run: dict[str, Any]) -> dict[str, float]:
    counted = max(1, int(run["counted_events"]))
    return {
        "worker_cpu_ms": 1000 * run["cpu_s"]["workers"] / counted,
        "worker_pg_cpu_ms": 1000 * (run["cpu_s"]["workers"] + run["cpu_s"]["postgres"]) / counted,
        "ms": 1000 / run["events_per_s"] if run["events_per_s"] else float("nan"),
    }


def _topics(template: str, count: int) -> dict[str, Any]:
    """`count` users with 1,000 topics each against `count` new users, one event per user."""
    runs: dict[str, Any] = {}
    for name, topics in (("heavy", HEAVY_TOPICS), ("new", 0)):
        db = infra.create_database("growth", template=template)
        try:
            statements = [events(name, count, count, "topic-user-", finished=False)]
            if topics:
                statements.append(statuses(count, topics, "topic-user-"))
            load_in_sql(db, statements, TABLES)
            run = processing_run(f"topics-{name}", "ours", 1, db, count, {})
        finally:
            infra.drop_database(db)
        runs[name] = run | {"per_event": _per_event(run)}
    heavy, new = runs["heavy"]["per_event"], runs["new"]["per_event"]
    return runs | {
        "events": count,
        "topics": HEAVY_TOPICS,
        "worker_pg_cpu_ratio": _ratio(heavy["worker_pg_cpu_ms"], new["worker_pg_cpu_ms"]),
        "worker_cpu_ratio": _ratio(heavy["worker_cpu_ms"], new["worker_cpu_ms"]),
        "time_ratio": _ratio(heavy["ms"], new["ms"]),
    }


def _database_bytes(url: str) -> int:
    engine = infra.engine_for(url, 1)
    try:
        return int(infra.one_value(engine, "SELECT pg_database_size(current_database())"))
    finally:
        engine.dispose()  # a template must have no session left when it is copied


def growth(cfg: Config, template: str) -> dict[str, Any]:
    n = sizes(cfg)
    empty = infra.create_database("growth", template=template)
    loaded = infra.create_database("growth", template=template)
    try:
        log(f"growth: loading {n['events']} events of {n['users']} users")
        load_s = load_in_sql(
            loaded,
            [
                events("old", n["events"], n["users"], "grow-", finished=True),
                statuses(n["users"], 5, "grow-"),
            ],
            TABLES,
        )
        size = _database_bytes(loaded)
        log(f"growth: loaded in {load_s:.0f} s ({size / 1e6:.0f} MB)")
        rates = _rates(cfg, empty, loaded, n["backlog"])
    finally:
        infra.drop_database(empty)
        infra.drop_database(loaded)
    topics = _topics(template, n["topic_events"])
    result = n | {"load_s": load_s, "database_mb": size / 1e6, **rates, "topics": topics}
    log(
        f"growth: accept {rates['accept']['ratio']:.2f}, processing "
        f"{rates['processing']['ratio']:.2f} of empty; heavy user's event "
        f"{topics['worker_pg_cpu_ratio']:.2f}× a new user's CPU"
    )
    return result
