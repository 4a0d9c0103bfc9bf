"""Curves: latency against throughput at offered rates in steps.

`curve`: one API process and one worker. Each step is an open-loop run (latency counts from
the request's due time) at one offered rate; between steps the worker drains what the step
left, so a step starts on an empty queue. The headline is the highest offered rate whose p99
stays within :data:`P99_BOUND_MS`.

`system_curve`: the whole system of the lag scenario (two API processes, the scaler and its
workers) at the same steps, with the accept-to-processed lag and every component's CPU; its
headline also asks that the step's events were processed within 5 s of its end.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from bench import infra
from bench.infra import log
from bench.scenarios.common import (
    Config,
    Run,
    consumers,
    isolated,
    run_loadgen,
    start_system,
    start_workers,
    unfinished,
)
from bench.scenarios.lag import lag

#: The latency bound of the headline: the highest offered rate whose p99 is within it.
P99_BOUND_MS = 100.0
#: How long a step's leftovers may take to drain before the next step starts anyway.
DRAIN_TIMEOUT_S = 60.0


def curve(cfg: Config, template: str) -> dict[str, Any]:
    """One API process + one worker, offered `cfg.curve_rates` req/s in turn."""
    steps: list[dict[str, Any]] = []
    with isolated("curve", template) as run:
        ports = start_system("ours", 1, run)
        start_workers("ours", 1, run)
        infra.wait_for(lambda: consumers(run.queue) >= 1, timeout=60, what="a consuming worker")
        api = run.procs[0]
        engine = run.engine()
        for rate in cfg.curve_rates:
            steps.append(_step(cfg, run, engine, ports, rate, api.pids))
            _drain(engine)
        engine.dispose()
    return {
        "api_processes": 1,
        "workers": 1,
        "step_s": cfg.curve_step_s,
        "warmup_s": cfg.curve_warmup,
        "p99_bound_ms": P99_BOUND_MS,
        "steps": steps,
        "max_rate_within_bound": max_rate_within(steps, P99_BOUND_MS),
    }


def _step(
    cfg: Config,
    run: Run,
    engine: Engine,
    ports: list[int],
    rate: int,
    api_pids: Callable[[], list[int]],
) -> dict[str, Any]:
    """One open-loop run at `rate`: latency percentiles, accepted rate, CPU per accepted event."""
    prefix = f"curve{rate}-{uuid.uuid4().hex[:6]}"
    meter = run.cpu_meter("api", api_pids).start()
    lg, out = run_loadgen(
        ports,
        duration=cfg.curve_step_s,
        warmup=cfg.curve_warmup,
        connections=64,
        rate=rate,
        prefix=prefix,
    )
    lg.proc.wait(cfg.curve_step_s + cfg.curve_warmup + 120)
    lg.stop()
    cpu = meter.stop()
    load = json.loads(out.read_text())
    accepted = int(load["accepted"])
    stored = int(
        infra.one_value(
            engine,
            "SELECT count(*) FROM conversation_events WHERE conversation_id LIKE :p",
            p=f"{prefix}-%",
        )
    )
    step = {
        "offered_rate": rate,
        "accepted_rate": load["rate"],
        "errors": load["errors"],
        "latency_ms": load["latency_ms"],
        "accepted": accepted,
        "lost": max(0, accepted - stored),
        "cpu_s": cpu,
        # Over every accepted event of the step, warm-up included, as the meter ran throughout.
        "api_cpu_ms_per_event": 1000 * cpu["api"] / max(1, accepted),
        "cpu_ms_per_event": 1000 * sum(cpu.values()) / max(1, accepted),
    }
    log(
        f"curve at {rate}/s: {load['rate']:.0f} accepted/s, p99 {load['latency_ms']['p99']:.1f} ms,"
        f" API {step['api_cpu_ms_per_event']:.2f} ms/event, errors {load['errors']}"
    )
    return step


def _drain(engine: Engine) -> None:
    """Wait (bounded) until the worker has finished every event, so steps do not overlap."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while unfinished(engine) > 0:
        if time.monotonic() > deadline:
            log(f"curve: {unfinished(engine)} events still unfinished; next step starts anyway")
            return
        time.sleep(0.5)


#: A whole-system step is within bounds when at least this share was processed within 5 s.
DONE_SHARE = 0.98


def system_curve(cfg: Config, template: str) -> dict[str, Any]:
    """The whole system (as `lag`) offered `cfg.curve_rates` events/s in turn."""
    by_rate = lag(
        cfg,
        template,
        rates=cfg.curve_rates,
        duration=cfg.curve_step_s,
        warmup=cfg.lag_warmup,  # as long as the lag scenario's: the scaler settles
        name="syscurve",
    )
    steps = [by_rate[str(rate)] for rate in cfg.curve_rates]
    ok = [
        s["offered_rate"]
        for s in steps
        if s["api_latency_ms"]["p99"] <= P99_BOUND_MS
        and not s["errors"]
        and s["processed_within_share"] >= DONE_SHARE
    ]
    return {
        "api_processes": by_rate["api_processes"],
        "step_s": cfg.curve_step_s,
        "warmup_s": cfg.lag_warmup,
        "p99_bound_ms": P99_BOUND_MS,
        "done_share": DONE_SHARE,
        "steps": steps,
        "max_rate_within_bound": max(ok) if ok else None,
    }


def max_rate_within(steps: list[dict[str, Any]], bound_ms: float) -> int | None:
    """The highest offered rate whose p99 is within `bound_ms` with no errors (None if none)."""
    ok = [
        s["offered_rate"] for s in steps if s["latency_ms"]["p99"] <= bound_ms and not s["errors"]
    ]
    return max(ok) if ok else None
