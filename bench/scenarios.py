"""The measured scenarios: accept path, ceilings, processing, lag and autoscaling.

Each function starts what it measures, drives it, verifies that nothing was lost, stops
everything and returns plain numbers (dicts) for the report.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pika
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench import infra
from bench.infra import AMQP_URL, API_KEY, PATHS, CpuMeter, Proc, log
from bench.payloads import bodies

SYSTEMS = ("ours", "seed", "celery", "noio")
UVICORN = ["-m", "uvicorn", "--host", "127.0.0.1", "--loop", "uvloop", "--http", "httptools"]
UVICORN += ["--no-access-log", "--log-level", "warning"]


@dataclass(frozen=True)
class Config:
    quick: bool
    duration: float  # measured seconds of each accept-path run
    warmup: float
    repeats: int
    api_processes: tuple[int, ...]
    connections: int
    backlog: int  # events pre-loaded for the processing and autoscaling scenarios
    lag_duration: float
    lag_warmup: float  # seconds at the offered rate before measuring (the scaler settles)
    lag_rates: tuple[int, ...]
    max_workers: int
    scale_down_window_s: float

    @classmethod
    def make(cls, quick: bool) -> Config:
        if quick:
            return cls(True, 4, 1, 1, (1,), 64, 2000, 6, 2, (200,), 3, 10)
        return cls(False, 20, 2, 3, (1, 2), 64, 20_000, 20, 10, (200, 500, 1000), 4, 30)


def db_name(url: str) -> str:
    return str(make_url(url).database)


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def median_range(values: list[float]) -> dict[str, float]:
    clean = [v for v in values if v is not None and not math.isnan(v)]
    if not clean:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": statistics.median(clean), "min": min(clean), "max": max(clean)} | {
        "n": len(clean)
    }


# --- accept path ----------------------------------------------------------------------------


def start_system(
    system: str, processes: int, database_url: str, exchange: str, queue: str
) -> tuple[list[Proc], list[int]]:
    """Start `processes` API processes of `system`; returns them and their ports."""
    procs: list[Proc] = []
    ports: list[int] = []
    try:
        for i in range(processes):
            port = infra.free_port()
            name = f"{system}-api{i}"
            if system == "ours":
                env = infra.common_env(database_url, exchange, queue)
                env |= {"CE_API_KEYS": API_KEY, "CE_PORT": str(port), "CE_HOST": "127.0.0.1"}
                args = ["-m", "conversation_events_api"]
                procs.append(infra.start_http(name, args, PATHS["api"], env, port))
            else:
                module = {
                    "seed": "bench.baselines.seed.app:app",
                    "celery": "bench.baselines.celery.app:app",
                    "noio": "bench.baselines.ceilings.noio:app",
                }[system]
                env = {
                    "BENCH_DATABASE_URL": database_url,
                    "BENCH_AMQP_URL": AMQP_URL,
                    "BENCH_QUEUE": queue,
                    "BENCH_API_KEY": API_KEY,
                }
                args = [*UVICORN, "--port", str(port), module]
                procs.append(infra.start_http(name, args, PATHS["bench"], env, port))
            ports.append(port)
    except BaseException:
        for p in procs:
            p.stop()
        raise
    return procs, ports


def run_loadgen(
    ports: list[int],
    *,
    duration: float,
    warmup: float,
    connections: int,
    rate: float = 0,
    prefix: str,
    users: int = 5000,
) -> tuple[Proc, Path]:
    out = infra.TMP / f"loadgen-{prefix}.json"
    args = ["-m", "bench.loadgen", "--url", f"http://127.0.0.1:{ports[0]}", "--key", API_KEY]
    if ports[1:]:
        args += ["--extra-ports", *map(str, ports[1:])]
    args += ["--duration", str(duration), "--warmup", str(warmup), "--prefix", prefix]
    args += ["--connections", str(connections), "--out", str(out), "--users", str(users)]
    if rate:
        args += ["--rate", str(rate)]
    return Proc(f"loadgen-{prefix}", args, PATHS["bench"], {}), out


def accept_run(
    system: str, processes: int, cfg: Config, template: str, rate: float = 0
) -> dict[str, Any]:
    """One accept-path run: saturate with `cfg.connections` connections (or offer `rate`
    requests/s, open loop), then verify."""
    url = infra.create_database("acc", template=template)
    exchange, queue = infra.names(f"acc-{system}")
    prefix = f"{system}{processes}-{uuid.uuid4().hex[:6]}"
    procs: list[Proc] = []
    try:
        procs, ports = start_system(system, processes, url, exchange, queue)
        meter = CpuMeter(
            {
                "api": lambda: [pid for p in procs for pid in p.pids()],
                "postgres": lambda: infra.postgres_pids(db_name(url)),
                "rabbitmq": infra.rabbitmq_pids,
            }
        )
        lg_meter = None
        meter.start()
        lg, out = run_loadgen(
            ports,
            duration=cfg.duration,
            warmup=cfg.warmup,
            connections=cfg.connections,
            rate=rate,
            prefix=prefix,
        )
        lg_meter = CpuMeter({"loadgen": lambda: [lg.pid] if lg.alive() else []}).start()
        lg.proc.wait(cfg.duration + cfg.warmup + 120)
        lg.stop()
        load = json.loads(out.read_text())
        loadgen_cpu = lg_meter.stop()["loadgen"]
        accepted = int(load["accepted"])
        # Every accepted event must be in PostgreSQL and in the queue (no consumer runs).
        engine = infra.engine_for(url, 1)
        queued = 0
        if system != "noio":
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                queued = infra.queue_ready(queue) or 0
                if queued >= accepted:
                    break
                time.sleep(0.25)
        cpu = meter.stop()
        stored = (
            0
            if system == "noio"
            else int(infra.scalar(engine, "SELECT count(*) FROM conversation_events"))
        )
        published = None
        if system == "ours":
            published = int(
                infra.scalar(
                    engine,
                    "SELECT count(*) FROM conversation_events WHERE published_at IS NOT NULL",
                )
            )
        engine.dispose()
        total_cpu = sum(cpu.values())
        result = {
            "system": system,
            "api_processes": processes,
            "offered_rate": rate,
            "rate": load["rate"],
            "latency_ms": load["latency_ms"],
            "statuses": load["statuses"],
            "errors": load["errors"],
            "accepted": accepted,
            "stored": stored,
            "queued": queued,
            "published_confirmed": published,
            "lost": 0 if system == "noio" else max(0, accepted - min(stored, queued)),
            "cpu_s": cpu,
            "cpu_ms_per_event": 1000 * total_cpu / accepted if accepted else float("nan"),
            "api_cpu_ms_per_event": 1000 * cpu["api"] / accepted if accepted else float("nan"),
            "loadgen_cpu_ms_per_request": 1000 * loadgen_cpu / max(1, load["sent"]),
        }
        log(
            f"accept {system}×{processes}: {result['rate']:.0f} req/s, "
            f"p99 {load['latency_ms']['p99']:.1f} ms, errors {load['errors']}, "
            f"cpu {result['cpu_ms_per_event']:.2f} ms/event, lost {result['lost']}"
        )
        return result
    finally:
        for p in procs:
            p.stop()
        infra.delete_queues([queue, f"{queue}.dead"], [exchange, f"{exchange}.dlx", queue])
        infra.drop_database(url)


def accept_path(cfg: Config, template: str) -> dict[str, Any]:
    """All systems × API process counts × repeats, interleaved so drift hits all alike."""
    runs: list[dict[str, Any]] = []
    for repeat in range(cfg.repeats):
        for processes in cfg.api_processes:
            for system in SYSTEMS:
                log(f"accept path: {system}, {processes} process(es), run {repeat + 1}")
                try:
                    runs.append(accept_run(system, processes, cfg, template))
                except Exception as exc:  # one broken run must not lose the others
                    log(f"accept {system}×{processes} failed: {exc!r}")
                    runs.append({"system": system, "api_processes": processes, "error": repr(exc)})
    # The API alone at a steady offered rate (open loop): latency without saturation.
    for repeat in range(cfg.repeats):
        log(f"accept path: ours at an offered 500 req/s, run {repeat + 1}")
        try:
            runs.append(accept_run("ours", 1, cfg, template, rate=500))
        except Exception as exc:
            log(f"accept at 500 req/s failed: {exc!r}")
    return {"runs": runs, "summary": summarize_accept(runs, cfg.api_processes)}


def summarize_accept(runs: list[dict[str, Any]], api_processes: tuple[int, ...]) -> dict[str, Any]:
    """Medians (min–max) per system and process count; open-loop runs apart."""
    offered = [r for r in runs if "error" not in r and r.get("offered_rate")]
    closed = [r for r in runs if not r.get("offered_rate")]
    summary: dict[str, Any] = {
        "ours_at_500": {
            "rate": median_range([r["rate"] for r in offered]),
            "p50_ms": median_range([r["latency_ms"]["p50"] for r in offered]),
            "p99_ms": median_range([r["latency_ms"]["p99"] for r in offered]),
            "cpu_ms_per_event": median_range([r["cpu_ms_per_event"] for r in offered]),
            "errors": sum(r["errors"] for r in offered),
            "lost": sum(r["lost"] for r in offered),
        }
    }
    for processes in api_processes:
        for system in SYSTEMS:
            mine = [r for r in closed if r["system"] == system and r["api_processes"] == processes]
            ok = [r for r in mine if "error" not in r]
            summary[f"{system}x{processes}"] = {
                "rate": median_range([r["rate"] for r in ok]),
                "p50_ms": median_range([r["latency_ms"]["p50"] for r in ok]),
                "p95_ms": median_range([r["latency_ms"]["p95"] for r in ok]),
                "p99_ms": median_range([r["latency_ms"]["p99"] for r in ok]),
                "cpu_ms_per_event": median_range([r["cpu_ms_per_event"] for r in ok]),
                "api_cpu_ms_per_event": median_range([r["api_cpu_ms_per_event"] for r in ok]),
                "loadgen_cpu_ms_per_request": median_range(
                    [r["loadgen_cpu_ms_per_request"] for r in ok]
                ),
                "errors": sum(r["errors"] for r in ok),
                "lost": sum(r["lost"] for r in ok),
                "failed_runs": len(mine) - len(ok),
            }
    return summary


# --- ceilings -------------------------------------------------------------------------------


def ceilings(cfg: Config, template: str) -> dict[str, Any]:
    duration = 3 if cfg.quick else 5
    out: dict[str, Any] = {}
    url = infra.create_database("ceil", template=template)
    try:
        for batch in (1, 100):
            res = subprocess.run(
                [
                    infra.PYTHON,
                    "-m",
                    "bench.baselines.ceilings.postgres",
                    "--url",
                    libpq(url),
                    "--batch",
                    str(batch),
                    "--duration",
                    str(duration),
                ],
                cwd=infra.ROOT,
                env={"PYTHONPATH": PATHS["bench"], "PATH": "/usr/bin:/bin"},
                capture_output=True,
                text=True,
                check=True,
            )
            out[f"postgres_batch{batch}"] = json.loads(res.stdout)
            rate = out[f"postgres_batch{batch}"]["rows_per_s"]
            log(f"ceiling postgres batch {batch}: {rate:.0f} rows/s")
    finally:
        infra.drop_database(url)
    _, queue = infra.names("ceil-amqp")
    try:
        res = subprocess.run(
            [
                infra.PYTHON,
                "-m",
                "bench.baselines.ceilings.amqp",
                "--url",
                AMQP_URL,
                "--queue",
                queue,
                "--duration",
                str(duration),
            ],
            cwd=infra.ROOT,
            env={"PYTHONPATH": PATHS["bench"], "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        )
        out["amqp_confirmed"] = json.loads(res.stdout)
        log(f"ceiling amqp: {out['amqp_confirmed']['messages_per_s']:.0f} confirmed msg/s")
    finally:
        infra.delete_queues([queue])
    return out


# --- pre-loaded backlog ---------------------------------------------------------------------


def preload_template(events: int, users: int) -> str:
    """A database holding `events` stored, unprocessed events (copied for every run)."""
    from conversation_events.persistence.events import NewEvent, content_hash, insert_events

    url = infra.create_database("backlog")
    engine = infra.engine_for(url, 1)
    batch: list[NewEvent] = []
    prefix = f"pre{uuid.uuid4().hex[:6]}"
    with engine.begin() as conn:
        for b in bodies(prefix, events, users):
            batch.append(
                NewEvent(
                    id=str(uuid.uuid4()),
                    conversation_id=b["conversation_id"],
                    user_id=b["user_id"],
                    bot_id=b["bot_id"],
                    bot_name=b["bot_name"],
                    bot_type=b["bot_type"],
                    agent_tag=b["agent_tag"],
                    start_time=datetime.fromisoformat(b["start_time"]),
                    end_time=datetime.fromisoformat(b["end_time"]),
                    conversation_log=b["conversation_log"],
                    metadata=b.get("metadata"),
                    content_hash=content_hash(b),
                )
            )
            if len(batch) == 1000:
                insert_events(conn, batch)
                batch = []
        if batch:
            insert_events(conn, batch)
        conn.execute(text("UPDATE conversation_events SET published_at = now()"))
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            text("VACUUM ANALYZE conversation_events")
        )
    engine.dispose()
    return url


def event_ids(url: str) -> list[tuple[str, str, str, str]]:
    engine = infra.engine_for(url, 1)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, conversation_id, user_id, bot_id FROM conversation_events")
        ).all()
    engine.dispose()
    return [(str(r[0]), r[1], r[2], r[3]) for r in rows]


def publish_backlog(kind: str, url: str, exchange: str, queue: str) -> int:
    """Queue one message per stored event, in the format `kind`'s worker consumes."""
    rows = event_ids(url)
    if kind == "celery":
        res = subprocess.run(
            [infra.PYTHON, "-m", "bench.baselines.celery.enqueue"],
            cwd=infra.ROOT,
            env={
                "PYTHONPATH": PATHS["bench"],
                "PATH": "/usr/bin:/bin",
                "BENCH_DATABASE_URL": url,
                "BENCH_AMQP_URL": AMQP_URL,
                "BENCH_QUEUE": queue,
            },
            capture_output=True,
            text=True,
            check=True,
        )
        return int(res.stdout.strip())
    from conversation_events.messaging.contract import EventMessage
    from conversation_events.messaging.topology import Topology
    from conversation_events_worker.broker import declare_topology

    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        if kind == "seed":
            channel.queue_declare(queue=queue, durable=True)
            target = ("", queue)
        else:
            topology = Topology(exchange, queue, 50)
            declare_topology(channel, topology)
            target = (exchange, topology.routing_key)
        for event_id, cid, uid, bid in rows:
            msg = EventMessage.now(event_id, cid, uid, bid)
            channel.basic_publish(
                *target,
                msg.to_bytes(),
                pika.BasicProperties(
                    content_type="application/json", delivery_mode=2, message_id=event_id
                ),
            )
    finally:
        connection.close()
    infra.wait_until(
        lambda: (infra.queue_ready(queue) or 0) >= len(rows), timeout=60, what="backlog queued"
    )
    return len(rows)


def start_workers(
    kind: str, count: int, url: str, exchange: str, queue: str, extra: dict[str, str] | None = None
) -> list[Proc]:
    procs = []
    for i in range(count):
        if kind == "ours":
            env = infra.common_env(url, exchange, queue) | {"CE_WORKER_HTTP_PORT": "0"}
            procs.append(
                Proc(
                    f"worker{i}",
                    ["-m", "conversation_events_worker"],
                    PATHS["worker"],
                    env | (extra or {}),
                )
            )
            continue
        env = {"BENCH_DATABASE_URL": url, "BENCH_AMQP_URL": AMQP_URL, "BENCH_QUEUE": queue}
        env |= extra or {}
        if kind == "seed":
            procs.append(
                Proc(f"seed-worker{i}", ["-m", "bench.baselines.seed.worker"], PATHS["bench"], env)
            )
        else:
            args = ["-m", "celery", "-A", "bench.baselines.celery.tasks", "worker"]
            args += ["--loglevel", "WARNING", "--without-gossip", "--without-mingle"]
            args += ["--without-heartbeat", "-n", f"bench{uuid.uuid4().hex[:6]}@%h"]
            args += [
                "--pool",
                env.get("BENCH_CELERY_POOL_KIND", "prefork"),
                "--concurrency",
                env.get("BENCH_CELERY_CONCURRENCY", "2"),
            ]
            procs.append(Proc(f"celery-worker{i}", args, PATHS["bench"], env))
    return procs


def done_count(engine: Any) -> int:
    return int(
        infra.scalar(
            engine,
            "SELECT count(*) FROM conversation_events "
            "WHERE status IN ('PROCESSED', 'SKIPPED', 'FAILED')",
        )
    )


def processing_run(
    name: str, kind: str, workers: int, template: str, events: int, extra: dict[str, str]
) -> dict[str, Any]:
    url = infra.create_database("proc", template=template)
    exchange, queue = infra.names(f"proc-{name}")
    procs: list[Proc] = []
    try:
        publish_backlog(kind, url, exchange, queue)
        engine = infra.engine_for(url, 1)
        procs = start_workers(kind, workers, url, exchange, queue, extra)
        infra.wait_until(lambda: done_count(engine) > 0, timeout=60, what=f"{name} first event")
        meter = CpuMeter(
            {
                "workers": lambda: [pid for p in procs for pid in p.pids()],
                "postgres": lambda: infra.postgres_pids(db_name(url)),
                "rabbitmq": infra.rabbitmq_pids,
            }
        ).start()
        first_done = done_count(engine)
        timeout = max(120.0, events / 50)

        def finished() -> bool:
            for p in procs:
                if not p.alive():
                    raise RuntimeError(f"{p.name} exited:\n{p.tail()}")
            return done_count(engine) >= events

        infra.wait_until(finished, timeout=timeout, interval=0.25, what=f"{name} drained")
        cpu = meter.stop()
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT count(*) FILTER (WHERE status = 'PROCESSED') AS processed,"
                    " count(*) FILTER (WHERE status = 'SKIPPED') AS skipped,"
                    " count(*) FILTER (WHERE status = 'FAILED') AS failed,"
                    " extract(epoch FROM max(processed_at) - min(processed_at)) AS span,"
                    " (SELECT count(*) FROM friendship_status) AS users"
                    " FROM conversation_events"
                )
            ).one()
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
            "cpu_ms_per_event": 1000 * sum(cpu.values()) / max(1, counted),
            "worker_cpu_ms_per_event": 1000 * cpu["workers"] / max(1, counted),
        }
        log(
            f"processing {name}: {result['events_per_s']:.0f} events/s, "
            f"cpu {result['cpu_ms_per_event']:.2f} ms/event, failed {row.failed}"
        )
        return result
    finally:
        for p in procs:
            p.stop(timeout=60)
        infra.delete_queues([queue, f"{queue}.dead"], [exchange, f"{exchange}.dlx", queue])
        infra.drop_database(url)


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


def processing(cfg: Config, template: str, events: int) -> dict[str, Any]:
    plan: list[tuple[str, str, int, dict[str, str]]] = [
        ("ours", "ours", 1, {}),
        ("seed", "seed", 1, {}),
        ("celery", "celery", 1, CELERY_TUNED),
    ]
    if not cfg.quick:
        plan.insert(1, ("ours-2-processes", "ours", 2, {}))
    repeats = 1  # each run drains the whole backlog (a minute or more): noise averages out
    runs = []
    for _ in range(repeats):
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


# --- the whole system: lag and autoscaling ------------------------------------------------------


def scaler_available() -> bool:
    return (infra.ROOT / "services/scaler/conversation_events_scaler/__main__.py").exists()


def start_scaler(
    url: str, exchange: str, queue: str, min_workers: int, max_workers: int, cfg: Config
) -> Proc:
    status = infra.TMP / f"scaler-{uuid.uuid4().hex[:6]}.json"
    env = infra.common_env(url, exchange, queue) | {
        "CE_SCALER_ACTUATOR": "local",
        "CE_SCALER_MIN_REPLICAS": str(min_workers),
        "CE_SCALER_MAX_REPLICAS": str(max_workers),
        "CE_SCALER_STATUS_FILE": str(status),
        "CE_SCALER_LOCK_FILE": str(status) + ".lock",
        "CE_SCALER_HTTP_PORT": "0",
        "CE_SCALER_WORKER_HTTP_BASE_PORT": "0",
        "CE_SCALER_WORKER_PYTHONPATH": PATHS["worker"],
        "CE_SCALER_WORKER_LOG_DIR": str(infra.TMP),
        "CE_SCALER_SCALE_DOWN_STABILIZATION_S": str(cfg.scale_down_window_s),
    }
    return Proc("scaler", ["-m", "conversation_events_scaler"], PATHS["scaler"], env)


def worker_pids(proc: Proc) -> list[int]:
    """Worker processes under `proc` (the scaler), by command line."""
    out = []
    for pid in infra.descendants(proc.pid):
        if "conversation_events_worker" in infra._cmdline(pid):
            out.append(pid)
    return out


def consumers(queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.consumer_count)
    except pika.exceptions.ChannelClosedByBroker:
        return 0
    finally:
        if connection.is_open:
            connection.close()


# API processes of the whole-system runs: one per core. A single process saturates its event
# loop near 500 requests/s here, and its publisher then falls behind the requests.
LAG_API_PROCESSES = 2


def lag(cfg: Config, template: str) -> dict[str, Any]:
    """Our API + scaler (min 1, max N) + workers under a steady offered rate."""
    url = infra.create_database("lag", template=template)
    exchange, queue = infra.names("lag")
    procs: list[Proc] = []
    results: dict[str, Any] = {"scaler": scaler_available(), "api_processes": LAG_API_PROCESSES}
    try:
        api, ports = start_system("ours", LAG_API_PROCESSES, url, exchange, queue)
        procs += api
        if scaler_available():
            scaler = start_scaler(url, exchange, queue, 1, cfg.max_workers, cfg)
            procs.append(scaler)
            workers_of = lambda: worker_pids(scaler)  # noqa: E731
        else:
            static = start_workers("ours", 2, url, exchange, queue)
            procs += static
            workers_of = lambda: [p.pid for p in static if p.alive()]  # noqa: E731
        infra.wait_until(lambda: consumers(queue) >= 1, timeout=60, what="a consuming worker")
        engine = infra.engine_for(url, 1)
        for rate in cfg.lag_rates:
            prefix = f"lag{rate}-{uuid.uuid4().hex[:6]}"
            meter = CpuMeter(
                {
                    "system": lambda: [pid for p in procs for pid in p.pids()],
                    "postgres": lambda: infra.postgres_pids(db_name(url)),
                    "rabbitmq": infra.rabbitmq_pids,
                }
            ).start()
            lg, out = run_loadgen(
                ports,
                duration=cfg.lag_duration,
                warmup=cfg.lag_warmup,
                connections=64,
                rate=rate,
                prefix=prefix,
            )
            max_workers_seen = 0
            while lg.alive():
                max_workers_seen = max(max_workers_seen, len(workers_of()))
                time.sleep(0.5)
            lg.stop()
            load = json.loads(out.read_text())
            backlog_at_end = int(
                infra.scalar(
                    engine,
                    "SELECT count(*) FROM conversation_events WHERE conversation_id LIKE :p"
                    " AND status IN ('PENDING', 'PROCESSING')",
                    p=f"{prefix}-%",
                )
            )
            infra.wait_until(
                lambda: (
                    infra.scalar(
                        engine,
                        "SELECT count(*) FROM conversation_events WHERE conversation_id LIKE :p"
                        " AND status IN ('PENDING', 'PROCESSING')",
                        p=f"{prefix}-%",  # noqa: B023
                    )
                    == 0
                ),
                timeout=120,
                what="lag run drained",
            )
            cpu = meter.stop()
            with engine.connect() as conn:
                row = conn.execute(
                    text(
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
                        " FROM w, m WHERE created_at >= m.t0 AND created_at < m.t1"
                    ),
                    {"p": f"{prefix}-%", "warm": cfg.lag_warmup, "dur": cfg.lag_duration},
                ).one()
                processed_in_window = conn.execute(
                    text(
                        "WITH w AS (SELECT created_at, processed_at FROM conversation_events"
                        " WHERE conversation_id LIKE :p)"
                        " SELECT count(*) FROM w WHERE processed_at >"
                        " (SELECT min(created_at) FROM w) + make_interval(secs => :w)"
                        " AND processed_at <="
                        " (SELECT min(created_at) FROM w) + make_interval(secs => :w + :d)"
                    ),
                    {"p": f"{prefix}-%", "w": cfg.lag_warmup, "d": cfg.lag_duration},
                ).scalar()
            accepted = int(load["accepted"])
            results[str(rate)] = {
                "offered_rate": rate,
                "accepted_rate": load["rate"],
                "errors": load["errors"],
                "api_latency_ms": load["latency_ms"],
                "processed_rate": (processed_in_window or 0) / cfg.lag_duration,
                "backlog_at_end": backlog_at_end,
                "lag_p50_ms": 1000 * float(row.p50 or 0),
                "lag_p99_ms": 1000 * float(row.p99 or 0),
                "lag_max_ms": 1000 * float(row.max or 0),
                "max_workers": max_workers_seen,
                "cpu_ms_per_event": 1000 * sum(cpu.values()) / max(1, accepted),
                "cpu_s": cpu,
            }
            log(
                f"lag at {rate}/s: API p99 {load['latency_ms']['p99']:.1f} ms, lag p50 "
                f"{results[str(rate)]['lag_p50_ms']:.0f} ms p99 "
                f"{results[str(rate)]['lag_p99_ms']:.0f} ms, workers {max_workers_seen}"
            )
        engine.dispose()
        return results
    finally:
        for p in reversed(procs):
            p.stop(timeout=60)
        infra.delete_queues([queue, f"{queue}.dead"], [exchange, f"{exchange}.dlx"])
        infra.drop_database(url)


def backlog_left(engine: Any) -> int:
    return int(
        infra.scalar(
            engine,
            "SELECT count(*) FROM conversation_events WHERE status IN ('PENDING', 'PROCESSING')",
        )
    )


def burst(mode: str, cfg: Config, template: str, events: int) -> dict[str, Any]:
    """`mode` "scaled": scaler min 1 / max N; "static": N workers from the start."""
    url = infra.create_database("burst", template=template)
    exchange, queue = infra.names(f"burst-{mode}")
    procs: list[Proc] = []
    n = cfg.max_workers
    try:
        if mode == "scaled":
            scaler = start_scaler(url, exchange, queue, 1, n, cfg)
            procs.append(scaler)
            workers_of = lambda: worker_pids(scaler)  # noqa: E731
            want = 1
        else:
            static = start_workers("ours", n, url, exchange, queue)
            procs += static
            workers_of = lambda: [p.pid for p in static if p.alive()]  # noqa: E731
            want = n
        infra.wait_until(lambda: consumers(queue) >= want, timeout=60, what=f"{want} consumers")
        engine = infra.engine_for(url, 1)
        t0 = time.monotonic()
        samples: list[dict[str, float]] = []
        done = threading_publish(exchange, queue, url)
        drained_at = None
        back_to_min_at = None
        deadline = t0 + max(180.0, events / 50) + cfg.scale_down_window_s + 120
        while time.monotonic() < deadline:
            t = time.monotonic() - t0
            left = backlog_left(engine)
            published = done["published"]
            samples.append(
                {
                    "t": t,
                    "backlog": left - (events - published),
                    "queue_ready": infra.queue_ready(queue) or 0,
                    "workers": len(workers_of()),
                }
            )
            if drained_at is None and published >= events and left == 0:
                drained_at = t
                if mode == "static":
                    break
            if drained_at is not None and samples[-1]["workers"] <= 1:
                back_to_min_at = t
                break
            time.sleep(0.5)
        with engine.connect() as conn:
            statuses = dict(
                conn.execute(
                    text("SELECT status, count(*) FROM conversation_events GROUP BY status")
                ).all()
            )
            errors = dict(
                conn.execute(
                    text(
                        "SELECT left(last_error, 160), count(*) FROM conversation_events"
                        " WHERE status = 'FAILED' GROUP BY 1 ORDER BY 2 DESC LIMIT 5"
                    )
                ).all()
            )
        engine.dispose()
        first_new = next((s["t"] for s in samples if s["workers"] >= 2), None)
        at_max = next((s["t"] for s in samples if s["workers"] >= n), None)
        result = {
            "mode": mode,
            "events": events,
            "max_workers": n,
            "publish_s": done["seconds"],
            "drain_s": drained_at,
            "first_new_worker_s": first_new if mode == "scaled" else None,
            "time_to_max_s": at_max if mode == "scaled" else None,
            "back_to_min_s": (back_to_min_at - drained_at)
            if back_to_min_at is not None and drained_at is not None
            else None,
            "statuses": statuses,
            "failed_errors": errors,
            "samples": samples,
        }
        log(
            f"burst {mode}: drained in {drained_at} s, first new worker {first_new} s,"
            f" max at {at_max} s, back to min {result['back_to_min_s']} s, statuses {statuses}"
        )
        return result
    finally:
        for p in reversed(procs):
            p.stop(timeout=90)
        infra.delete_queues([queue, f"{queue}.dead"], [exchange, f"{exchange}.dlx"])
        infra.drop_database(url)


def threading_publish(exchange: str, queue: str, url: str) -> dict[str, float]:
    """Publish the backlog on a thread (the burst); the dict fills in as it goes."""
    import threading

    state: dict[str, float] = {"published": 0, "seconds": 0.0}
    rows = event_ids(url)

    def run() -> None:
        from conversation_events.messaging.contract import EventMessage
        from conversation_events.messaging.topology import Topology

        started = time.monotonic()
        topology = Topology(exchange, queue, 50)
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        channel = connection.channel()
        for i, (event_id, cid, uid, bid) in enumerate(rows):
            channel.basic_publish(
                exchange,
                topology.routing_key,
                EventMessage.now(event_id, cid, uid, bid).to_bytes(),
                pika.BasicProperties(
                    content_type="application/json", delivery_mode=2, message_id=event_id
                ),
            )
            if i % 500 == 0:
                state["published"] = i
        connection.close()
        state["published"] = len(rows)
        state["seconds"] = time.monotonic() - started

    threading.Thread(target=run, daemon=True).start()
    return state


def autoscaling(cfg: Config, template: str, events: int) -> dict[str, Any]:
    if not scaler_available():
        return {"error": "scaler not available"}
    out: dict[str, Any] = {}
    for mode in ("scaled", "static"):
        log(f"autoscaling burst: {mode}")
        try:
            out[mode] = burst(mode, cfg, template, events)
        except Exception as exc:
            log(f"burst {mode} failed: {exc!r}")
            out[mode] = {"error": repr(exc)}
    return out
