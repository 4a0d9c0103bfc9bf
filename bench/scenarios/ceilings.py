"""Ceilings: what PostgreSQL and RabbitMQ alone sustain on this machine (no API, no worker)."""

from __future__ import annotations

from typing import Any

from bench.infra import AMQP_URL, log
from bench.scenarios.common import Config, isolated, libpq, run_json


def ceilings(cfg: Config, template: str) -> dict[str, Any]:
    duration = str(3 if cfg.quick else 5)
    out: dict[str, Any] = {}
    with isolated("ceil-amqp", template) as run:
        for batch in (1, 100):
            args = ("--url", libpq(run.url), "--batch", str(batch), "--duration", duration)
            out[f"postgres_batch{batch}"] = run_json("bench.baselines.ceilings.postgres", *args)
            rate = out[f"postgres_batch{batch}"]["rows_per_s"]
            log(f"ceiling postgres batch {batch}: {rate:.0f} rows/s")
        args = ("--url", AMQP_URL, "--queue", run.queue, "--duration", duration)
        out["amqp_confirmed"] = run_json("bench.baselines.ceilings.amqp", *args)
        log(f"ceiling amqp: {out['amqp_confirmed']['messages_per_s']:.0f} confirmed msg/s")
    return out
