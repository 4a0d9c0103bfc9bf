"""The accept path while the retention purge works through a large backlog of old events.

The database is loaded in SQL (`generate_series`, not through the API) with `rows` finished
events that are all due: half past the event retention (deleted), half past the content
retention only (their log and metadata dropped). One API process then takes an offered rate
(open loop, so latency is not queueing behind saturation) twice: once alone, once while
`admin purge` runs with its default batch size. Both latency distributions, the purge's rows
per second and what was left due afterwards are reported.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from sqlalchemy import text

from bench import infra
from bench.infra import Proc, log
from bench.scenarios.common import (
    Config,
    Run,
    isolated,
    load_in_sql,
    run_loadgen,
    start_system,
)

#: Offered requests per second: well inside one API process's capacity, also on a machine
#: whose two cores are shared with other work (there, one process saturated near 200 req/s).
RATE = 100

_LOAD = text(
    """
    INSERT INTO conversation_events (
        id, tenant, conversation_id, user_id, bot_id, bot_name, bot_type, start_time, end_time,
        conversation_log, metadata, content_hash, status, attempts, created_at, published_at,
        processed_at, friendship_score_change, new_friendship_level, score_calculation_details,
        scoring_version)
    SELECT md5('purge-' || g)::uuid, 'default', 'old-' || g, 'u-' || (g % 20000), 'pika',
        'Pika', 'FRIENDSHIP', t - interval '5 minutes', t,
        '[{"character": "USER", "content": "What do pandas eat?"},
          {"character": "PIKA", "content": "Bamboo, mostly! They eat for hours every day."},
          {"character": "USER", "content": "Can I see one at the zoo?"}]'::jsonb,
        '{"session_emotion": "happy", "user_initiated_questions": 2}'::jsonb,
        md5('content-' || g) || md5('hash-' || g), 'PROCESSED', 1, t, t, t, 1.5, 'FRIEND',
        '{"inputs": {"turns": {"value": 3}}}'::jsonb, 1
    FROM generate_series(1, :rows) AS g,
        LATERAL (SELECT now() - make_interval(days => CASE WHEN g % 2 = 0 THEN 450 ELSE 100 END)
                     - make_interval(secs => g % 86400) AS t) AS at
    """
)
_DUE = """
    SELECT count(*) FILTER (WHERE processed_at < now() - interval '400 days'),
           count(*) FILTER (WHERE processed_at < now() - interval '30 days'
                            AND conversation_log IS NOT NULL)
    FROM conversation_events WHERE status IN ('PROCESSED', 'SKIPPED')
"""


def load_due_events(url: str, rows: int) -> float:
    """Insert `rows` due events; returns the seconds it took (ANALYZE included)."""
    return load_in_sql(url, [(_LOAD, {"rows": rows})], ("conversation_events",))


def _accept(ports: list[int], cfg: Config, duration: float, tag: str) -> dict[str, Any]:
    lg, out = run_loadgen(
        ports,
        duration=duration,
        warmup=cfg.warmup,
        connections=cfg.connections,
        rate=RATE,
        prefix=f"{tag}-{uuid.uuid4().hex[:6]}",
    )
    lg.proc.wait(duration + cfg.warmup + 120)
    lg.stop()
    load: dict[str, Any] = json.loads(out.read_text())
    return {
        "rate": load["rate"],
        "latency_ms": load["latency_ms"],
        "errors": load["errors"],
        "statuses": load["statuses"],
    }


def _start_purge(run: Run) -> Proc:
    env = infra.common_env(run.url, run.exchange, run.queue) | {"CE_LOG_LEVEL": "INFO"}
    return Proc("purge", ["-m", "conversation_events_worker.admin", "purge"], env)


def purge(cfg: Config, template: str) -> dict[str, Any]:
    rows = 20_000 if cfg.quick else 1_000_000
    duration = cfg.duration if cfg.quick else 60.0
    with isolated("purge", template) as run:
        log(f"purge: loading {rows} due events")
        load_s = load_due_events(run.url, rows)
        log(f"purge: loaded in {load_s:.0f} s")
        ports = start_system("ours", 1, run)
        alone = _accept(ports, cfg, duration, "alone")
        log(f"purge: accept alone p50 {alone['latency_ms']['p50']:.1f} ms, "
            f"p99 {alone['latency_ms']['p99']:.1f} ms")  # fmt: skip
        started = time.monotonic()
        purger = _start_purge(run)
        run.procs.append(purger)
        during = _accept(ports, cfg, duration, "purging")
        overlap = purger.alive()  # still purging when the measurement ended
        purger.proc.wait(3600)
        purge_s = time.monotonic() - started
        summary = json.loads(purger.log_path.read_text().strip().splitlines()[-1])
        engine = run.engine()
        with engine.connect() as conn:
            left = tuple(conn.execute(text(_DUE)).one())
        engine.dispose()
    purged = int(summary["content_dropped"]) + int(summary["events_deleted"])
    result = {
        "rows": rows,
        "offered_rate": RATE,
        "load_s": load_s,
        "alone": alone,
        "during_purge": during,
        "purge_overlapped_whole_measurement": overlap,
        "purge": summary,
        "purge_s": purge_s,  # the process's whole life, start-up included
        "purge_rows_per_s": purged / summary["seconds"] if summary["seconds"] else float("nan"),
        "left_due": {"events": left[0], "content": left[1]},
    }
    log(
        f"purge: {purged} rows in {summary['seconds']:.0f} s "
        f"({result['purge_rows_per_s']:.0f} rows/s); "
        f"accept during it p50 {during['latency_ms']['p50']:.1f} ms, "
        f"p99 {during['latency_ms']['p99']:.1f} ms; left due {left}"
    )
    return result
