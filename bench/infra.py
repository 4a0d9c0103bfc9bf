"""Processes, databases, queues and CPU accounting for the benchmark scenarios.

Every run uses its own database (`ce_bench_*`) and queue names (`bench.*`), never the
one-machine stack's defaults, and removes them afterwards. Polling, free ports and one-row or
one-value queries come from the tests' harness (`tests/support`), so tests and benchmarks wait
and ask the same way.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from tests.support.database import one_row as one_row
from tests.support.database import one_value as one_value
from tests.support.services import free_port as free_port
from tests.support.services import wait_for as wait_for

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
TMP = ROOT / "bench" / "results" / "tmp"
PG_ADMIN_URL = os.environ.get(
    "BENCH_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
MANAGEMENT_URL = os.environ.get("BENCH_MANAGEMENT_URL", "http://127.0.0.1:15672")
API_KEY = "bench-key-" + uuid.uuid4().hex[:8]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- databases and queues -------------------------------------------------------------------

# Every name this run creates carries it, so that clean-up can tell live runs from dead ones.
_RUN = f"p{os.getpid()}"


def create_database(tag: str, template: str | None = None) -> str:
    """A fresh, migrated database (or a copy of `template`); returns its URL."""
    from conversation_events.migrate import migrate

    name = f"ce_bench_{tag}_{_RUN}_{uuid.uuid4().hex[:8]}"
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    if template is None:
        migrate(url, create=True, timeout_s=30)
    else:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{make_url(template).database}"'))
        admin.dispose()
    return url


def drop_database(url: str) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def _left_behind(name: str) -> bool:
    """Whether a `ce_bench_*` database or `bench.*` queue name belongs to a run that has ended.

    Names carry the creating process's id (`p<pid>`); a run still going on this machine keeps its
    objects, so two benchmark runs side by side never delete each other's.
    """
    match = re.search(r"[_.]p(\d+)[_.]", name)
    if match is None:
        return True
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def drop_stale_databases() -> None:
    """Remove `ce_bench_*` databases left by interrupted runs (those of live runs stay)."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        names = conn.execute(
            text("SELECT datname FROM pg_database WHERE datname LIKE 'ce\\_bench\\_%'")
        ).scalars()
        for name in [n for n in names if _left_behind(n)]:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def engine_for(url: str, pool_size: int = 4) -> Engine:
    # Pre-ping: on a shared machine other jobs may end idle PostgreSQL sessions between samples.
    return create_engine(url, pool_size=pool_size, max_overflow=0, pool_pre_ping=True)


def names(tag: str) -> tuple[str, str]:
    """(exchange, queue) used by one run only."""
    suffix = f"{tag}.{_RUN}.{uuid.uuid4().hex[:8]}"
    return f"bench.{suffix}.exchange", f"bench.{suffix}.queue"


def queue_ready(queue: str) -> int | None:
    """Messages ready in `queue` (passive declare: exact and instant); None if it is missing."""
    watch = QueueWatch(queue)
    try:
        return watch.ready()
    finally:
        watch.close()


def queue_unacked(queue: str) -> int | None:
    """Messages delivered from `queue` and not yet acknowledged, from the management API (its
    figures are refreshed every few seconds, so this lags); None if unreadable."""
    import base64
    import json
    import urllib.parse

    auth = base64.b64encode(b"guest:guest").decode()
    req = urllib.request.Request(
        f"{MANAGEMENT_URL}/api/queues/%2F/{urllib.parse.quote(queue, safe='')}",
        headers={"Authorization": f"Basic {auth}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return int(json.load(resp).get("messages_unacknowledged", 0))
    except (OSError, ValueError):
        return None


class QueueWatch:
    """Ready and unacked counts of one queue, sampled often at little cost to the broker it
    measures: one AMQP connection for every ready count (opening one costs RabbitMQ more CPU
    than the count) and the management API, whose figures refresh every few seconds anyway,
    read at most every `unacked_every` seconds."""

    def __init__(self, queue: str, unacked_every: float = 2.0) -> None:
        self.queue = queue
        self.unacked_every = unacked_every
        self._connect()
        self._unacked: int | None = None
        self._unacked_at = -math.inf

    def _connect(self) -> None:
        self._connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        self._channel = self._connection.channel()

    def ready(self) -> int | None:
        """Messages ready (passive declare: exact and instant); None if the queue is missing.
        A connection that went away while unused is opened again, once."""
        for reconnect in (True, False):
            try:
                declared = self._channel.queue_declare(self.queue, passive=True)
                return int(declared.method.message_count)
            except pika.exceptions.ChannelClosedByBroker:  # missing: a fresh channel next time
                self._channel = self._connection.channel()
                return None
            except pika.exceptions.AMQPError:
                if not reconnect:
                    raise
                self.close()
                self._connect()
        return None

    def unacked(self) -> int | None:
        now = time.monotonic()
        if now - self._unacked_at >= self.unacked_every:
            self._unacked, self._unacked_at = queue_unacked(self.queue), now
        return self._unacked

    def close(self) -> None:
        if self._connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError):
                self._connection.close()


def delete_queues(queues: Iterable[str], exchanges: Iterable[str] = ()) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        for q in queues:
            channel.queue_delete(q)
        for x in exchanges:
            channel.exchange_delete(x)
    finally:
        connection.close()


def delete_stale_queues() -> None:
    """Remove `bench.*` queues and exchanges interrupted runs left behind (not live runs')."""
    import base64
    import json

    auth = base64.b64encode(b"guest:guest").decode()
    found: dict[str, list[str]] = {}
    for kind in ("queues", "exchanges"):
        req = urllib.request.Request(
            f"{MANAGEMENT_URL}/api/{kind}/%2F?columns=name",
            headers={"Authorization": f"Basic {auth}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                found[kind] = [
                    item["name"]
                    for item in json.load(resp)
                    if item["name"].startswith("bench.") and _left_behind(item["name"])
                ]
        except OSError:
            return
    delete_queues(found.get("queues", []), found.get("exchanges", []))


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


# --- processes ------------------------------------------------------------------------------


class Proc:
    """A child process with its own environment and log file under bench/results/tmp/.

    It runs this interpreter (the workspace's venv, where every distribution is installed) in
    the repository root, so `-m bench...` finds the benchmark's own modules."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        TMP.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = TMP / f"{name}-{uuid.uuid4().hex[:6]}.log"
        full = dict(os.environ)
        full.update(env)
        full["PYTHONUNBUFFERED"] = "1"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [PYTHON, *args], cwd=ROOT, env=full, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def pids(self) -> list[int]:
        """This process and all its descendants (prefork children, scaled workers)."""
        return [self.pid, *descendants(self.pid)] if self.alive() else []

    def stop(self, timeout: float = 30.0, sig: int = signal.SIGTERM) -> int | None:
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                for pid in descendants(self.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in children:
                out.append(int(child))
                stack.append(int(child))
    return out


@contextlib.contextmanager
def running(procs: list[Proc]) -> Iterator[list[Proc]]:
    try:
        yield procs
    finally:
        for p in procs:
            p.stop()


def common_env(database_url: str, exchange: str, queue: str) -> dict[str, str]:
    return {
        "CE_DATABASE_URL": database_url,
        "CE_AMQP_URL": AMQP_URL,
        "CE_EXCHANGE_NAME": exchange,
        "CE_QUEUE_NAME": queue,
        "CE_LOG_LEVEL": "WARNING",
    }


def start_http(name: str, args: list[str], env: dict[str, str], port: int) -> Proc:
    """Start an HTTP server process and wait until `/healthz` answers."""
    proc = Proc(name, args, env)
    try:
        wait_for(
            lambda: (
                (_ for _ in ()).throw(RuntimeError(f"{name} exited:\n{proc.tail()}"))
                if not proc.alive()
                else http_ok(f"http://127.0.0.1:{port}/healthz")
            ),
            timeout=60,
            what=f"{name} /healthz",
        )
    except BaseException:
        proc.stop()
        raise
    return proc


# --- CPU accounting -------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of one process in seconds, None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def postgres_pids(database: str) -> list[int]:
    """Backends of `database` plus the server's own processes (WAL writer, checkpointer...).

    Backends of other databases (other people's tests) are left out.
    """
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or _comm(int(entry.name)) != "postgres":
            continue
        cmd = _cmdline(int(entry.name))
        is_backend = "(" in cmd or "[local]" in cmd
        if not is_backend or f" {database} " in cmd:
            out.append(int(entry.name))
    return out


def rabbitmq_pids() -> list[int]:
    return [
        int(e.name)
        for e in Path("/proc").iterdir()
        if e.name.isdigit() and _comm(int(e.name)) in ("beam.smp", "erl_child_setup")
    ]


@dataclass
class CpuMeter:
    """CPU seconds per group of processes between `start()` and `stop()`.

    Groups are functions returning pids, re-evaluated at every sample (every 0.25 s), so
    processes that start later (scaled workers, new backends) are counted from their birth
    and processes that exit keep their last sample.
    """

    groups: dict[str, Callable[[], Iterable[int]]]
    interval: float = 0.25
    _first: dict[tuple[str, int], float] = field(default_factory=dict)
    _last: dict[tuple[str, int], float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    started: float = 0.0
    elapsed: float = 0.0

    def _sample(self, initial: bool) -> None:
        for group, pids in self.groups.items():
            for pid in pids():
                value = cpu_seconds(pid)
                if value is None:
                    continue
                key = (group, pid)
                if key not in self._first:
                    self._first[key] = value if initial else 0.0
                self._last[key] = value

    def start(self) -> CpuMeter:
        self._sample(initial=True)
        self.started = time.monotonic()

        def loop() -> None:
            while not self._stop.wait(self.interval):
                self._sample(initial=False)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample(initial=False)
        self.elapsed = time.monotonic() - self.started
        totals = dict.fromkeys(self.groups, 0.0)
        for (group, pid), last in self._last.items():
            totals[group] += last - self._first[(group, pid)]
        return totals


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"cores": os.cpu_count()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        info["memory_gib"] = round(int(mem) / 1024 / 1024, 1)
    info["load_before"] = os.getloadavg()
    info["python"] = sys.version.split()[0]
    return info
