"""Overload: one API process and one worker, 1,000 concurrent clients, several times capacity.

Two load generators in turn against the same processes:

- *producers* (`bench.loadgen --producers`): 1,000 keep-alive connections started over the
  warm-up, each posting back to back and, after a `503`, waiting `Retry-After` (times 0.5-1.5)
  before sending the same body again, as the API's clients are told to;
- *wrk* (C, when installed): 1,000 connections posting back to back that ignore `Retry-After`,
  a hostile client, and a generator whose own cost is negligible: if its figures and the
  producers' agree, the Python generator is not what is measured.

Reported per generator: answers by status, latency percentiles (all answers, and per status
for the producers), the API's RSS before and at its peak, the API's CPU share, the API's
event-loop lag and accept-path latency (from its `/metrics`: the time inside the process), the
generator's own loop lag, and `lost`: stored events still not `PROCESSED` 180 s after the load
(every accepted event is stored, so 0 means every accepted one was processed).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bench import infra
from bench.infra import API_KEY, CpuMeter, log
from bench.payloads import templates
from bench.scenarios.common import (
    Config,
    isolated,
    run_loadgen,
    start_system,
    start_workers,
    unfinished,
)

CLIENTS = 1000
LUA = infra.ROOT / "bench" / "overload.lua"
ACCEPT_PATH = "/v1/conversations/end"
_BUCKET = re.compile(r"^(\w+)_bucket\{([^}]*)\} (\S+)")
_LE = re.compile(r'le="([^"]+)"')


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler:
    """The RSS of one process every 0.25 s while running; `start` and `peak` in MB."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples = [rss_mb(pid)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self.samples.append(rss_mb(self.pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def figures(self) -> dict[str, float]:
        return {"start": round(self.samples[0], 1), "peak": round(max(self.samples), 1)}


def histograms(port: int) -> dict[str, dict[float, float]]:
    """The API's event-loop lag and accept-path latency histograms (cumulative buckets, upper
    bound in s -> observations): keys `loop_lag`, `accept_2xx`, `accept_5xx`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as response:
        text = response.read().decode()
    out: dict[str, dict[float, float]] = {"loop_lag": {}, "accept_2xx": {}, "accept_5xx": {}}
    for line in text.splitlines():
        match = _BUCKET.match(line)
        if not match:
            continue
        name, labels, value = match.groups()
        bound = _LE.search(labels).group(1)  # type: ignore[union-attr]
        if name == "conversation_events_event_loop_lag_seconds":
            key = "loop_lag"
        elif f'route="{ACCEPT_PATH}"' in labels and 'status="2xx"' in labels:
            key = "accept_2xx"
        elif f'route="{ACCEPT_PATH}"' in labels and 'status="5xx"' in labels:
            key = "accept_5xx"
        else:
            continue
        out[key][float(bound)] = float(value)
    return out


def server_side(before: dict[str, dict[float, float]], port: int) -> dict[str, Any]:
    after = histograms(port)
    return {key: lag_quantiles(before[key], after[key]) for key in after}


def lag_quantiles(before: dict[float, float], after: dict[float, float]) -> dict[str, float]:
    """p50 and p99 observed between two readings of a histogram, as bucket upper bounds in ms."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    out: dict[str, float] = {"n": total}
    for name, q in (("p50_le_ms", 0.5), ("p99_le_ms", 0.99)):
        bound = next((b for b, c in zip(bounds, counts, strict=True) if c >= q * total), None)
        out[name] = float("nan") if bound is None or not total else bound * 1000
    return out


def drain(run: Any, prefix: str, timeout: float = 180.0) -> tuple[int, int]:
    """(processed, unfinished) events of `prefix` once none is unfinished, or at the deadline.

    Every accepted event is stored, so none unfinished means every accepted one is processed.
    """
    engine = run.engine()
    try:
        deadline = time.monotonic() + timeout
        left = unfinished(engine, prefix)
        while left and time.monotonic() < deadline:
            time.sleep(0.5)
            left = unfinished(engine, prefix)
        done = infra.one_value(
            engine,
            "SELECT count(*) FROM conversation_events WHERE conversation_id LIKE :p"
            " AND status = 'PROCESSED'",
            p=f"{prefix}-%",
        )
        return int(done), left
    finally:
        engine.dispose()


T = TypeVar("T")


def measured(port: int, api_pid: int, load: Callable[[], T]) -> tuple[T, dict[str, Any]]:
    """Run `load`; returns its result and the API's figures over it: loop lag and accept
    latency inside the process, CPU share and RSS."""
    before = histograms(port)
    meter = CpuMeter({"api": lambda: [api_pid]})
    with RssSampler(api_pid) as rss:
        meter.start()
        result = load()
        cpu = meter.stop()
    server = server_side(before, port)
    return result, {
        "api_loop_lag": server["loop_lag"],
        "api_accept_2xx": server["accept_2xx"],
        "api_accept_5xx": server["accept_5xx"],
        "api_cores": cpu["api"] / meter.elapsed,
        "rss_mb": rss.figures(),
    }


def outcome(run: Any, prefix: str, accepted: int) -> dict[str, int]:
    processed, left = drain(run, prefix)
    return {"accepted": accepted, "processed": processed, "lost": left}


def producers_phase(cfg: Config, run: Any, port: int, api_pid: int) -> dict[str, Any]:
    prefix = f"ovl-p-{uuid.uuid4().hex[:6]}"

    def load() -> dict[str, Any]:
        lg, out = run_loadgen(
            [port],
            duration=cfg.overload_duration,
            warmup=2.0,
            connections=CLIENTS,
            prefix=prefix,
            producers=True,
        )
        lg.proc.wait(cfg.overload_duration + 120)
        lg.stop()
        result: dict[str, Any] = json.loads(out.read_text())
        return result

    result, api = measured(port, api_pid, load)
    return {
        "generator": "producers (bench.loadgen, honours Retry-After)",
        "statuses": result["statuses"],
        "answers_per_s": result["measured"] / cfg.overload_duration,
        "accepted_per_s": result["measured_ok"] / cfg.overload_duration,
        "latency_ms": result["latency_ms"],
        "latency_by_status_ms": result["latency_by_status_ms"],
        "generator_loop_lag_ms": result["own_loop_lag_ms"],
        "generator_cpu_s": result["cpu_s"],
        "errors": result["errors"] - int(result["statuses"].get("503", 0)),
        **api,
        **outcome(run, prefix, int(result["statuses"].get("202", 0))),
    }


def wrk_phase(cfg: Config, run: Any, port: int, api_pid: int) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        return {"generator": "wrk", "skipped": "wrk is not installed (apt-get install wrk)"}
    prefix = f"ovl-w-{uuid.uuid4().hex[:6]}"
    head, middle, tail = templates(1)[0]
    body_file = infra.TMP / f"{prefix}.json"
    body_file.write_bytes(head + b"@CID@" + middle + b"@UID@" + tail)
    args = [wrk, "-t1", f"-c{CLIENTS}", f"-d{cfg.overload_duration:g}s", "--timeout", "10s"]
    args += ["-s", str(LUA), f"http://127.0.0.1:{port}", "--", str(body_file), API_KEY, prefix]

    def load() -> dict[str, Any]:
        done = subprocess.run(
            args, capture_output=True, text=True, check=True, timeout=cfg.overload_duration + 60
        )
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    result, api = measured(port, api_pid, load)
    accepted = int(result["statuses"].get("202", 0))
    return {
        "generator": "wrk (C, ignores Retry-After)",
        "statuses": result["statuses"],
        "answers_per_s": sum(result["statuses"].values()) / result["duration_s"],
        "accepted_per_s": accepted / result["duration_s"],
        "latency_ms": result["latency_ms"],
        "errors": sum(result["errors"].values())
        + sum(n for s, n in result["statuses"].items() if s not in ("202", "503")),
        **api,
        **outcome(run, prefix, accepted),
    }


def overload(cfg: Config, template: str) -> dict[str, Any]:
    """Both generators against one API process (defaults) and one worker."""
    with isolated("ovl", template) as run:
        port = start_system("ours", 1, run)[0]
        api_pid = run.procs[0].pid
        start_workers("ours", 1, run)
        phases = []
        for phase in (producers_phase, wrk_phase):
            log(f"overload: {phase.__name__.split('_')[0]}, {CLIENTS} connections")
            try:
                phases.append(phase(cfg, run, port, api_pid))
            except Exception as exc:  # one broken phase must not lose the other
                log(f"overload {phase.__name__} failed: {exc!r}")
                phases.append({"generator": phase.__name__, "error": repr(exc)})
            r = phases[-1]
            if "latency_ms" in r:
                log(
                    f"overload {r['generator']}: {r['statuses']}, p99 "
                    f"{r['latency_ms']['p99']:.0f} ms, RSS {r['rss_mb']}, lost {r['lost']}"
                )
        return {"clients": CLIENTS, "duration_s": cfg.overload_duration, "phases": phases}
