"""Autoscaling: a burst drained by the scaler (min 1, max N) and by N static workers; a step in
the publish rate met with the backlog metric alone and with the rate trigger as well."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from bench import infra
from bench.infra import log
from bench.scenarios.backlog import publish_in_background
from bench.scenarios.common import (
    Config,
    consumers,
    isolated,
    start_scaler,
    start_workers,
    unfinished,
    worker_pids,
)


def burst(
    mode: str,
    cfg: Config,
    template: str,
    events: int,
    *,
    rate: float = 0,
    static_workers: int | None = None,
    scaler_env: dict[str, str] | None = None,
    until_min: bool = True,
) -> dict[str, Any]:
    """`mode` "scaled": scaler min 1 / max N; "static": N workers (or `static_workers`) from the
    start. The events are published as fast as possible, or at `rate` per second; a scaled run
    ends once the workers are back to one (or, without `until_min`, when drained)."""
    n = cfg.max_workers
    with isolated(f"burst-{mode}", template, stop_timeout=90) as run:
        workers_of: Callable[[], list[int]]
        if mode == "scaled":
            scaler = start_scaler(run, 1, n, cfg, scaler_env)
            workers_of = functools.partial(worker_pids, scaler)
            want = 1
        else:
            want = static_workers or n
            static = start_workers("ours", want, run)
            workers_of = lambda: [p.pid for p in static if p.alive()]  # noqa: E731
        infra.wait_for(lambda: consumers(run.queue) >= want, timeout=60, what=f"{want} consumers")
        engine = run.engine()
        t0 = time.monotonic()
        samples: list[dict[str, float]] = []
        done = publish_in_background(run, rate)
        drained_at = None
        back_to_min_at = None
        deadline = t0 + max(180.0, events / 50) + cfg.scale_down_window_s + 120
        while time.monotonic() < deadline:
            t = time.monotonic() - t0
            left = unfinished(engine)
            published = done["published"]
            samples.append(
                {
                    "t": t,
                    "backlog": left - (events - published),
                    "queue_ready": infra.queue_ready(run.queue) or 0,
                    "workers": len(workers_of()),
                }
            )
            if drained_at is None and published >= events and left == 0:
                drained_at = t
                if mode == "static" or not until_min:
                    break
            if drained_at is not None and samples[-1]["workers"] <= 1:
                back_to_min_at = t
                break
            time.sleep(0.5)
        with engine.connect() as conn:
            statuses: dict[str, int] = dict(
                conn.execute(
                    text("SELECT status, count(*) FROM conversation_events GROUP BY status")
                ).all()
            )
            errors: dict[str, int] = dict(
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
            "peak_backlog": max((s["backlog"] for s in samples), default=None),
            "max_workers_seen": max((s["workers"] for s in samples), default=0),
            "statuses": statuses,
            "failed_errors": errors,
            "samples": samples,
        }
        log(
            f"burst {mode}: drained in {drained_at} s, first new worker {first_new} s,"
            f" max at {at_max} s, back to min {result['back_to_min_s']} s, statuses {statuses}"
        )
        return result


def autoscaling(cfg: Config, template: str, events: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("scaled", "static"):
        log(f"autoscaling burst: {mode}")
        try:
            out[mode] = burst(mode, cfg, template, events)
        except Exception as exc:
            log(f"burst {mode} failed: {exc!r}")
            out[mode] = {"error": repr(exc)}
    return out


def rate_step(cfg: Config, template: str, events: int) -> dict[str, Any]:
    """A step from nothing to 1.5× one worker's throughput, backlog metric alone vs with the
    rate trigger. Measured first: one worker's throughput `cap` (messages/s). Then
    targetPerReplica = 5 × cap (5 s of one worker's work may wait) and ratePerReplica = 0.8 × cap,
    `cfg.rate_step_rounds` rounds of each, interleaved."""
    log("rate step: one worker's throughput")
    one = burst("static", cfg, template, events, static_workers=1)
    cap = events / one["drain_s"]
    out: dict[str, Any] = {
        "events": events,
        "worker_rate": cap,
        "rate": 1.5 * cap,
        "target_per_replica": round(5 * cap),
        "rate_per_replica": round(0.8 * cap),
        "backlog": [],
        "backlog+rate": [],
    }
    backlog_only = {"CE_SCALER_TARGET_PER_REPLICA": str(out["target_per_replica"])}
    with_rate = backlog_only | {"CE_SCALER_RATE_PER_REPLICA": str(out["rate_per_replica"])}
    for i in range(cfg.rate_step_rounds):
        order = [("backlog", backlog_only), ("backlog+rate", with_rate)]
        for mode, env in order if i % 2 == 0 else order[::-1]:
            log(f"rate step: {mode}, {out['rate']:.0f} messages/s")
            r = burst(
                "scaled", cfg, template, events, rate=out["rate"], scaler_env=env, until_min=False
            )
            r.pop("samples")
            out[mode].append(r)
    return out
