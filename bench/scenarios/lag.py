"""Lag: our API, scaler (min 1, max N) and workers under a steady offered rate."""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Engine

from bench import infra
from bench.infra import CpuMeter, Proc, log
from bench.scenarios.common import (
    Config,
    Run,
    consumers,
    db_name,
    isolated,
    run_loadgen,
    start_scaler,
    start_system,
    unfinished,
    worker_pids,
)

#: API processes of the whole-system runs: the chart's default (`api.replicaCount`), one per
#: core here.
LAG_API_PROCESSES = 2
#: ... and as `scripts/stack up` runs the system on one machine: one API process. At light load
#: it costs less in all (its requests and batches come closer together); near 500 requests/s
#: with the workers, PostgreSQL and RabbitMQ on the same two cores, its publisher falls behind.
STACK_API_PROCESSES = 1
#: Issue #13's drain bound: the share of a run's events processed this long after its load.
PROCESSED_WITHIN_S = 5.0


#: The load generator's group in the CPU meter: measured, not counted in the total.
LOADGEN = "loadgen"


def backlog(engine: Engine, watch: infra.QueueWatch, prefix: str) -> dict[str, float]:
    """Events of this run committed and not yet published, messages ready in the queue, and
    messages delivered to workers and not yet acknowledged."""
    unpublished = infra.one_value(
        engine,
        "SELECT count(*) FROM conversation_events WHERE conversation_id LIKE :p"
        " AND status = 'PENDING' AND published_at IS NULL",
        p=f"{prefix}-%",
    )
    return {
        "unpublished": int(unpublished),
        "queued": int(watch.ready() or 0),
        "unacked": int(watch.unacked() or 0),
    }


def component_meter(run: Run, scaler: Proc, loadgen: list[Proc]) -> CpuMeter:
    """CPU per component: each API process, the workers (whichever the scaler runs at each
    sample), the scaler itself, PostgreSQL, RabbitMQ, and the load generator (once in
    `loadgen`)."""
    apis = [p for p in run.procs if p is not scaler]
    groups: dict[str, Callable[[], Iterable[int]]] = {
        f"api{i}": functools.partial(_own_pid, p) for i, p in enumerate(apis)
    }
    groups["workers"] = lambda: worker_pids(scaler)
    groups["scaler"] = functools.partial(_own_pid, scaler)
    database = db_name(run.url)
    groups["postgres"] = lambda: infra.postgres_pids(database)
    groups["rabbitmq"] = infra.rabbitmq_pids
    groups[LOADGEN] = lambda: [p.pid for p in loadgen if p.alive()]
    return CpuMeter(groups)


def _own_pid(proc: Proc) -> list[int]:
    return [proc.pid] if proc.alive() else []


def processed_within(engine: Engine, prefix: str, after_s: float) -> int:
    """Events of the run processed by `after_s` seconds after its last accepted event."""
    return int(
        infra.one_value(
            engine,
            "WITH w AS (SELECT created_at, processed_at FROM conversation_events"
            " WHERE conversation_id LIKE :p)"
            " SELECT count(*) FROM w WHERE processed_at <="
            " (SELECT max(created_at) FROM w) + make_interval(secs => :after)",
            p=f"{prefix}-%",
            after=after_s,
        )
        or 0
    )


def lag(
    cfg: Config,
    template: str,
    *,
    rates: tuple[int, ...] | None = None,
    duration: float | None = None,
    warmup: float | None = None,
    name: str = "lag",
    api_processes: int = LAG_API_PROCESSES,
    configuration: str = "the chart's default",
) -> dict[str, Any]:
    """Our API (`api_processes`) + scaler (min 1, max N) + workers under a steady offered
    rate, at each of `rates` in turn (default `cfg.lag_rates`, measured `cfg.lag_duration` s
    after `cfg.lag_warmup` s); results by rate. `configuration`: whose system this is, for
    the report."""
    rates = rates or cfg.lag_rates
    duration = duration or cfg.lag_duration
    warmup = cfg.lag_warmup if warmup is None else warmup
    results: dict[str, Any] = {
        "scaler": True,
        "api_processes": api_processes,
        "configuration": configuration,
    }
    with isolated(name, template) as run:
        ports = start_system("ours", api_processes, run)
        scaler = start_scaler(run, 1, cfg.max_workers, cfg)
        infra.wait_for(lambda: consumers(run.queue) >= 1, timeout=60, what="a consuming worker")
        engine = run.engine()
        watch = infra.QueueWatch(run.queue)
        for rate in rates:
            prefix = f"{name}{rate}-{uuid.uuid4().hex[:6]}"
            loadgen: list[Proc] = []
            meter = component_meter(run, scaler, loadgen).start()
            lg, out = run_loadgen(
                ports,
                duration=duration,
                warmup=warmup,
                connections=64,
                rate=rate,
                prefix=prefix,
            )
            loadgen.append(lg)
            max_workers_seen = 0
            samples: list[dict[str, float]] = []
            started = time.monotonic()
            while lg.alive():
                max_workers_seen = max(max_workers_seen, len(worker_pids(scaler)))
                samples.append({"t": time.monotonic() - started, **backlog(engine, watch, prefix)})
                time.sleep(0.5)
            lg.stop()
            load = json.loads(out.read_text())
            backlog_at_end = unfinished(engine, prefix)
            infra.wait_for(
                lambda: unfinished(engine, prefix) == 0,  # noqa: B023
                timeout=120,
                what="lag run drained",
            )
            cpu = meter.stop()
            window = {"p": f"{prefix}-%", "warm": warmup, "dur": duration}
            row = infra.one_row(
                engine,
                "WITH w AS (SELECT created_at, processed_at FROM conversation_events"
                " WHERE conversation_id LIKE :p),"
                " m AS (SELECT min(created_at) + make_interval(secs => :warm) AS t0,"
                " min(created_at) + make_interval(secs => :warm + :dur) AS t1 FROM w)"
                " SELECT count(*) AS n,"
                " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM"
                " processed_at - created_at)) AS p50,"
                " percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM"
                " processed_at - created_at)) AS p99,"
                " max(extract(epoch FROM processed_at - created_at)) AS max"
                " FROM w, m WHERE created_at >= m.t0 AND created_at < m.t1",
                **window,
            )
            processed_in_window = infra.one_value(
                engine,
                "WITH w AS (SELECT created_at, processed_at FROM conversation_events"
                " WHERE conversation_id LIKE :p)"
                " SELECT count(*) FROM w WHERE processed_at >"
                " (SELECT min(created_at) FROM w) + make_interval(secs => :warm)"
                " AND processed_at <="
                " (SELECT min(created_at) FROM w) + make_interval(secs => :warm + :dur)",
                **window,
            )
            accepted = int(load["accepted"])
            ours = {k: v for k, v in cpu.items() if k != LOADGEN}
            within = processed_within(engine, prefix, PROCESSED_WITHIN_S)
            results[str(rate)] = {
                "offered_rate": rate,
                "accepted_rate": load["rate"],
                "errors": load["errors"],
                "api_latency_ms": load["latency_ms"],
                "processed_rate": (processed_in_window or 0) / duration,
                "backlog_at_end": backlog_at_end,
                "lag_p50_ms": 1000 * float(row.p50 or 0),
                "lag_p99_ms": 1000 * float(row.p99 or 0),
                "lag_max_ms": 1000 * float(row.max or 0),
                "max_workers": max_workers_seen,
                # Where waiting work was: committed but not yet published (invisible to the
                # scaler), or ready in the queue (what it reads).
                "backlog_samples": samples,
                "max_unpublished": max((x["unpublished"] for x in samples), default=0),
                "max_queued": max((x["queued"] for x in samples), default=0),
                "max_unacked": max((x["unacked"] for x in samples), default=0),
                "processed_within_s": PROCESSED_WITHIN_S,
                "processed_within_share": within / max(1, accepted),
                # Our components, PostgreSQL and RabbitMQ; the load generator apart.
                "cpu_ms_per_event": 1000 * sum(ours.values()) / max(1, accepted),
                "cpu_ms_per_event_by_component": {
                    k: 1000 * v / max(1, accepted) for k, v in cpu.items()
                },
                "cpu_s": cpu,
            }
            log(
                f"{name} at {rate}/s: API p99 {load['latency_ms']['p99']:.1f} ms, lag p50 "
                f"{results[str(rate)]['lag_p50_ms']:.0f} ms p99 "
                f"{results[str(rate)]['lag_p99_ms']:.0f} ms, workers {max_workers_seen}"
            )
        watch.close()
        engine.dispose()
        return results
