"""The accept path: every system's API saturated (or at an offered rate), nothing consuming."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from bench import infra
from bench.infra import CpuMeter, log
from bench.scenarios.common import (
    SYSTEMS,
    Config,
    isolated,
    median_range,
    run_loadgen,
    start_system,
)


def accept_run(
    system: str,
    processes: int,
    cfg: Config,
    template: str,
    rate: float = 0,
    extra_env: dict[str, str] | None = None,
    *,
    batch: int = 0,
    connections: int = 0,
) -> dict[str, Any]:
    """One accept-path run: saturate with `connections` (default `cfg.connections`) connections
    (or offer `rate` requests/s, open loop), then verify. `extra_env`: more settings of our API.
    With `batch`, each request is a batch of that many conversations."""
    prefix = f"{system}{processes}-{uuid.uuid4().hex[:6]}"
    with isolated(f"acc-{system}", template) as run:
        ports = start_system(system, processes, run, extra_env)
        meter = run.cpu_meter("api").start()
        lg, out = run_loadgen(
            ports,
            duration=cfg.duration,
            warmup=cfg.warmup,
            connections=connections or cfg.connections,
            rate=rate,
            prefix=prefix,
            batch=batch,
        )
        lg_meter = CpuMeter({"loadgen": lambda: [lg.pid] if lg.alive() else []}).start()
        lg.proc.wait(cfg.duration + cfg.warmup + 120)
        lg.stop()
        load = json.loads(out.read_text())
        loadgen_cpu = lg_meter.stop()["loadgen"]
        accepted = int(load["accepted_events"])
        # Every accepted event must be in PostgreSQL and in the queue (no consumer runs).
        engine = run.engine()
        queued = 0
        if system != "noio":
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                queued = infra.queue_ready(run.queue) or 0
                if queued >= accepted:
                    break
                time.sleep(0.25)
        cpu = meter.stop()
        stored = (
            0
            if system == "noio"
            else int(infra.one_value(engine, "SELECT count(*) FROM conversation_events"))
        )
        published = None
        if system == "ours":
            published = int(
                infra.one_value(
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
            "batch": batch,
            "events_rate": load["events_rate"],
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
