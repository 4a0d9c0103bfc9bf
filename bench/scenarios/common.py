"""What every scenario shares: the configuration, one isolated run, starting the processes.

:func:`isolated` is the one setup and teardown: a database copied from a template and
per-run queue names on the way in; on the way out every process it started is stopped (last
started first) and the queues, exchanges and database are removed, whatever happened.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
from sqlalchemy import TextClause, text
from sqlalchemy.engine import Engine, make_url

from bench import infra
from bench.infra import AMQP_URL, API_KEY, CpuMeter, Proc

SYSTEMS = ("ours", "seed", "celery", "noio")
UVICORN = ["-m", "uvicorn", "--host", "127.0.0.1", "--loop", "uvloop", "--http", "httptools"]
UVICORN += ["--no-access-log", "--log-level", "warning"]
#: SQL condition of an event not yet finished (stored, or being processed).
UNFINISHED = "status IN ('PENDING', 'PROCESSING')"


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
    scale_in_rounds: int  # rounds of each victim policy in the scale-in scenario
    scale_in_busy_s: float  # how long a busy worker's event is held after the decision
    rate_step_rounds: int  # rounds of each mode in the rate-step scenario
    overload_duration: float = 10.0  # measured seconds of each overload generator
    curve_rates: tuple[int, ...] = tuple(range(100, 1000, 100))  # offered req/s of the curve
    curve_step_s: float = 10.0  # measured seconds of each curve step
    curve_warmup: float = 2.0  # seconds at a step's rate before measuring
    stack_rates: tuple[int, ...] = (200, 500)  # offered rates of the whole system, 1 API process

    @classmethod
    def make(cls, quick: bool) -> Config:
        if quick:
            return cls(
                True,
                4,
                1,
                1,
                (1,),
                64,
                2000,
                6,
                2,
                (200,),
                3,
                10,
                2,
                3.0,
                1,
                overload_duration=5,
                curve_rates=(100, 300, 500, 700),
                curve_step_s=6,
                curve_warmup=1,
                stack_rates=(200,),
            )
        return cls(False, 20, 2, 3, (1, 2), 64, 20_000, 20, 10, (200, 500, 1000), 4, 30, 8, 10.0, 3)


@dataclass
class Run:
    """One isolated run: its database, exchange and queue, and the processes it started."""

    url: str
    exchange: str
    queue: str
    procs: list[Proc] = field(default_factory=list)

    def engine(self) -> Engine:
        return infra.engine_for(self.url, 1)

    def cpu_meter(self, label: str, pids: Callable[[], list[int]] | None = None) -> CpuMeter:
        """CPU of `label` (this run's processes unless `pids` says otherwise), PostgreSQL and
        RabbitMQ, not yet started."""
        database = db_name(self.url)
        return CpuMeter(
            {
                label: pids or (lambda: [pid for p in self.procs for pid in p.pids()]),
                "postgres": lambda: infra.postgres_pids(database),
                "rabbitmq": infra.rabbitmq_pids,
            }
        )


@contextmanager
def isolated(tag: str, template: str | None, stop_timeout: float = 60.0) -> Iterator[Run]:
    """A fresh database (a copy of `template`) and queue names for `tag`, removed afterwards."""
    url = infra.create_database(tag.split("-")[0], template=template)
    exchange, queue = infra.names(tag)
    run = Run(url, exchange, queue)
    try:
        yield run
    finally:
        for p in reversed(run.procs):
            p.stop(timeout=stop_timeout)
        # The queue's name is also an exchange for the baselines that declare their own.
        infra.delete_queues([queue, f"{queue}.dead"], [exchange, f"{exchange}.dlx", queue])
        infra.drop_database(url)


def load_in_sql(
    url: str, statements: list[tuple[TextClause, dict[str, Any]]], tables: tuple[str, ...]
) -> float:
    """Run `statements` in one transaction, then VACUUM ANALYZE `tables`; the seconds it took.

    Large volumes are loaded in SQL (`generate_series`), not through the API: a million rows
    take seconds, and the planner's statistics and visibility map are those of a settled table.
    """
    started = time.monotonic()
    engine = infra.engine_for(url, 1)
    with engine.begin() as conn:
        for statement, params in statements:
            conn.execute(statement, params)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            text(f"VACUUM ANALYZE {', '.join(tables)}")
        )
    engine.dispose()
    return time.monotonic() - started


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


def run_module(module: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run `python -m module args` in the repository root; its standard output."""
    res = subprocess.run(
        [infra.PYTHON, "-m", module, *args],
        cwd=infra.ROOT,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    )
    return res.stdout


def run_json(module: str, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(run_module(module, *args))
    return result


def unfinished(engine: Engine, prefix: str | None = None) -> int:
    """Events not finished yet (of conversations whose id starts with `prefix`, if given)."""
    if prefix is None:
        return int(
            infra.one_value(engine, f"SELECT count(*) FROM conversation_events WHERE {UNFINISHED}")
        )
    return int(
        infra.one_value(
            engine,
            "SELECT count(*) FROM conversation_events WHERE conversation_id LIKE :p"
            f" AND {UNFINISHED}",
            p=f"{prefix}-%",
        )
    )


# --- processes --------------------------------------------------------------------------------


def start_system(
    system: str, processes: int, run: Run, extra_env: dict[str, str] | None = None
) -> list[int]:
    """Start `processes` API processes of `system` into `run.procs`; returns their ports.

    `extra_env`: more variables for our API processes (e.g. tracing's `OTEL_*`)."""
    ports: list[int] = []
    for i in range(processes):
        port = infra.free_port()
        name = f"{system}-api{i}"
        if system == "ours":
            env = infra.common_env(run.url, run.exchange, run.queue)
            env |= {"CE_API_KEYS": API_KEY, "CE_PORT": str(port), "CE_HOST": "127.0.0.1"}
            env |= extra_env or {}
            args = ["-m", "conversation_events_api"]
            run.procs.append(infra.start_http(name, args, env, port))
        else:
            module = {
                "seed": "bench.baselines.seed.app:app",
                "celery": "bench.baselines.celery.app:app",
                "noio": "bench.baselines.ceilings.noio:app",
            }[system]
            env = {
                "BENCH_DATABASE_URL": run.url,
                "BENCH_AMQP_URL": AMQP_URL,
                "BENCH_QUEUE": run.queue,
                "BENCH_API_KEY": API_KEY,
            }
            args = [*UVICORN, "--port", str(port), module]
            run.procs.append(infra.start_http(name, args, env, port))
        ports.append(port)
    return ports


def run_loadgen(
    ports: list[int],
    *,
    duration: float,
    warmup: float,
    connections: int,
    rate: float = 0,
    prefix: str,
    users: int = 5000,
    batch: int = 0,
    producers: bool = False,
) -> tuple[Proc, Path]:
    out = infra.TMP / f"loadgen-{prefix}.json"
    args = ["-m", "bench.loadgen", "--url", f"http://127.0.0.1:{ports[0]}", "--key", API_KEY]
    if ports[1:]:
        args += ["--extra-ports", *map(str, ports[1:])]
    args += ["--duration", str(duration), "--warmup", str(warmup), "--prefix", prefix]
    args += ["--connections", str(connections), "--out", str(out), "--users", str(users)]
    if rate:
        args += ["--rate", str(rate)]
    if batch:
        args += ["--batch", str(batch)]
    if producers:
        args += ["--producers"]
    return Proc(f"loadgen-{prefix}", args, {}), out


def start_workers(
    kind: str, count: int, run: Run, extra: dict[str, str] | None = None
) -> list[Proc]:
    """Start `count` workers of `kind` into `run.procs`; returns them."""
    procs = []
    for i in range(count):
        if kind == "ours":
            env = infra.common_env(run.url, run.exchange, run.queue) | {"CE_WORKER_HTTP_PORT": "0"}
            procs.append(
                Proc(
                    f"worker{i}",
                    ["-m", "conversation_events_worker"],
                    env | (extra or {}),
                )
            )
            continue
        env = {"BENCH_DATABASE_URL": run.url, "BENCH_AMQP_URL": AMQP_URL, "BENCH_QUEUE": run.queue}
        env |= extra or {}
        if kind == "seed":
            procs.append(Proc(f"seed-worker{i}", ["-m", "bench.baselines.seed.worker"], env))
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
            procs.append(Proc(f"celery-worker{i}", args, env))
    run.procs += procs
    return procs


def start_scaler(
    run: Run, min_workers: int, max_workers: int, cfg: Config, extra: dict[str, str] | None = None
) -> Proc:
    """Our scaler with the local actuator (it starts the workers), into `run.procs`; `extra`:
    more `CE_SCALER_*` settings."""
    status = infra.TMP / f"scaler-{uuid.uuid4().hex[:6]}.json"
    env = (
        infra.common_env(run.url, run.exchange, run.queue)
        | {
            "CE_SCALER_ACTUATOR": "local",
            "CE_SCALER_MIN_REPLICAS": str(min_workers),
            "CE_SCALER_MAX_REPLICAS": str(max_workers),
            "CE_SCALER_STATUS_FILE": str(status),
            "CE_SCALER_LOCK_FILE": str(status) + ".lock",
            "CE_SCALER_HTTP_PORT": "0",
            "CE_SCALER_WORKER_HTTP_BASE_PORT": "0",
            "CE_SCALER_WORKER_LOG_DIR": str(infra.TMP),
            "CE_SCALER_SCALE_DOWN_STABILIZATION_S": str(cfg.scale_down_window_s),
        }
        | (extra or {})
    )
    scaler = Proc("scaler", ["-m", "conversation_events_scaler"], env)
    run.procs.append(scaler)
    return scaler


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
