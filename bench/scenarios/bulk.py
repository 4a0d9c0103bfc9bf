"""Bulk accept: one API process's accepted events/s through single posts and through
`POST /v1/conversations/end:batch`, side by side (interleaved runs, same machine, same bodies).
"""

from __future__ import annotations

from typing import Any

from bench.infra import log
from bench.scenarios.accept import accept_run
from bench.scenarios.common import Config, median_range

#: Conversations per batch request, and the batch requests in flight at once: a producer
#: backfilling history, as many batches at once as the API takes by default.
BATCH = 500
BATCH_CONNECTIONS = 2
#: Target: events/s through the batch endpoint against single posts, one API process.
TARGET_RATIO = 5.0


def bulk(cfg: Config, template: str) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"single": [], "batch": []}
    for repeat in range(cfg.repeats):
        for mode in ("single", "batch"):
            log(f"bulk accept: {mode}, run {repeat + 1}")
            try:
                if mode == "single":
                    run = accept_run("ours", 1, cfg, template)
                else:
                    run = accept_run(
                        "ours", 1, cfg, template, batch=BATCH, connections=BATCH_CONNECTIONS
                    )
            except Exception as exc:  # one broken run must not lose the others
                log(f"bulk accept {mode} failed: {exc!r}")
                continue
            runs[mode].append(run)
    summary = {
        mode: {
            "events_per_s": median_range([r["events_rate"] for r in done]),
            "p99_ms": median_range([r["latency_ms"]["p99"] for r in done]),
            "api_cpu_ms_per_event": median_range([r["api_cpu_ms_per_event"] for r in done]),
            "cpu_ms_per_event": median_range([r["cpu_ms_per_event"] for r in done]),
            "errors": sum(r["errors"] for r in done),
            "lost": sum(r["lost"] for r in done),
        }
        for mode, done in runs.items()
    }
    single, batch = (summary[m]["events_per_s"]["median"] for m in ("single", "batch"))
    ratio = batch / single if single else float("nan")
    log(f"bulk accept: {single:.0f} events/s single, {batch:.0f} batched ({ratio:.1f}×)")
    return {
        "batch_size": BATCH,
        "batch_connections": BATCH_CONNECTIONS,
        "single_connections": cfg.connections,
        "runs": runs,
        "summary": summary,
        "ratio": ratio,
    }
