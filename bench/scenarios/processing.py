"""Processing: a pre-loaded backlog drained by our worker, the seed's and Celery's."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from bench import infra
from bench.infra import log
from bench.scenarios.backlog import publish_backlog
from bench.scenarios.common import Config, isolated, median_range, start_workers

# Chosen by measurement on this 2-core machine (3,000-event backlog, two rounds, see
# docs/benchmarks.md): the thread pool beat prefork 2 and 4 (whose children each hold a GIL and
# a pool, and fight PostgreSQL for the same two cores); the work is mostly waiting on the
# database. Prefetch multiplier 2 keeps 20 messages per worker, as our prefetch 10 does.
CELERY_TUNED = {
    "BENCH_CELERY_POOL_KIND": "threads",
    "BENCH_CELERY_CONCURRENCY": "10",
    "BENCH_CELERY_PREFETCH": "2",
    "BENCH_CELERY_POOL": "10",
}


def done_count(engine: Engine) -> int:
    return int(
        infra.one_value(
            engine,
            "SELECT count(*) FROM conversation_events "
            "WHERE status IN ('PROCESSED', 'SKIPPED', 'FAILED')",
        )
    )


def processing_run(
    name: str, kind: str, workers: int, template: str, events: int, extra: dict[str, str]
) -> dict[str, Any]:
    """Drain the `events` unfinished events of a copy of `template`; events the copy held
    finished already (history) are not counted."""
    with isolated(f"proc-{name}", template) as run:
        publish_backlog(kind, run)
        engine = run.engine()
        before = done_count(engine)
        since = infra.one_value(engine, "SELECT now()")
        procs = start_workers(kind, workers, run, extra)
        infra.wait_for(lambda: done_count(engine) > before, timeout=60, what=f"{name} first event")
        meter = run.cpu_meter("workers").start()
        first_done = done_count(engine) - before
        timeout = max(120.0, events / 50)

        def finished() -> bool:
            for p in procs:
                if not p.alive():
                    raise RuntimeError(f"{p.name} exited:\n{p.tail()}")
            return done_count(engine) - before >= events

        infra.wait_for(finished, timeout=timeout, interval=0.25, what=f"{name} drained")
        cpu = meter.stop()
        row = infra.one_row(
            engine,
            "SELECT count(*) FILTER (WHERE status = 'PROCESSED') AS processed,"
            " count(*) FILTER (WHERE status = 'SKIPPED') AS skipped,"
            " (SELECT count(*) FROM conversation_events WHERE status = 'FAILED') AS failed,"
            " extract(epoch FROM max(processed_at) - min(processed_at)) AS span,"
            " (SELECT count(*) FROM friendship_status) AS users"
            " FROM conversation_events WHERE processed_at >= :since",
            since=since,
        )
        engine.dispose()
        span = float(row.span or 0.0)
        counted = events - first_done
        result = {
            "name": name,
            "kind": kind,
            "workers": workers,
            "settings": extra,
            "events": events,
            "processed": row.processed,
            "skipped": row.skipped,
            "failed": row.failed,
            "users": row.users,
            "seconds": span,
            "events_per_s": events / span if span else float("nan"),
            "cpu_s": cpu,
            "counted_events": counted,
            "cpu_ms_per_event": 1000 * sum(cpu.values()) / max(1, counted),
            "worker_cpu_ms_per_event": 1000 * cpu["workers"] / max(1, counted),
        }
        log(
            f"processing {name}: {result['events_per_s']:.0f} events/s, "
            f"cpu {result['cpu_ms_per_event']:.2f} ms/event, failed {row.failed}"
        )
        return result


def processing(cfg: Config, template: str, events: int) -> dict[str, Any]:
    """Each system once: a run drains the whole backlog (a minute or more), noise averages out."""
    plan: list[tuple[str, str, int, dict[str, str]]] = [
        ("ours", "ours", 1, {}),
        ("seed", "seed", 1, {}),
        ("celery", "celery", 1, CELERY_TUNED),
    ]
    if not cfg.quick:
        plan.insert(1, ("ours-2-processes", "ours", 2, {}))
    runs = []
    for name, kind, workers, extra in plan:
        log(f"processing: {name}")
        try:
            runs.append(processing_run(name, kind, workers, template, events, extra))
        except Exception as exc:
            log(f"processing {name} failed: {exc!r}")
            runs.append({"name": name, "error": repr(exc)})
    summary = {}
    for name, *_ in plan:
        ok = [r for r in runs if r["name"] == name and "error" not in r]
        summary[name] = {
            "events_per_s": median_range([r["events_per_s"] for r in ok]),
            "cpu_ms_per_event": median_range([r["cpu_ms_per_event"] for r in ok]),
            "worker_cpu_ms_per_event": median_range([r["worker_cpu_ms_per_event"] for r in ok]),
            "failed": sum(r["failed"] for r in ok),
        }
    return {"events": events, "runs": runs, "summary": summary}
