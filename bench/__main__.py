"""`python -m bench [--quick] [--only SCENARIOS] [--out DIR]`.

SCENARIOS, comma-separated: accept, bulk, ceilings, processing, lag, autoscaling, curve, growth
(the default: all of these), and tracing, ratestep, scalein, purge, overload, syscurve (run only
when named).

Runs the scenarios in order, prints one table and writes `bench/results/latest.json`,
`bench/results/autoscale.png` and, with curve, `curve.png`, with syscurve, `system-curve.png`
(quick mode: `bench/results/quick/`).
See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from bench import infra, report, scenarios

ALL = ("accept", "bulk", "ceilings", "processing", "lag", "autoscaling", "curve", "growth")
#: Run only when named in --only.
OPTIONAL = ("tracing", "ratestep", "scalein", "purge", "overload", "syscurve")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs (about 4 minutes in all)")
    parser.add_argument(
        "--only",
        default=",".join(ALL),
        help=f"comma-separated scenarios (default: all but {', '.join(OPTIONAL)})",
    )
    parser.add_argument("--repeats", type=int, help="accept-path runs per configuration")
    parser.add_argument("--out", type=Path, help="results folder")
    args = parser.parse_args()
    cfg = scenarios.Config.make(args.quick)
    if args.repeats:
        cfg = scenarios.Config(**{**cfg.__dict__, "repeats": args.repeats})
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    out_dir = args.out or (infra.ROOT / "bench" / "results" / ("quick" if args.quick else ""))
    started = time.monotonic()
    infra.drop_stale_databases()
    infra.delete_stale_queues()
    results: dict[str, object] = {
        "mode": "quick" if args.quick else "full",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": infra.machine_info(),
        "config": cfg.__dict__,
        "command": " ".join(["scripts/bench", *sys.argv[1:]]),
    }
    empty = infra.create_database("empty")
    backlog = None
    try:
        if "accept" in only:
            results["accept"] = scenarios.accept_path(cfg, empty)
        if "bulk" in only:
            results["bulk"] = scenarios.bulk(cfg, empty)
        if "ceilings" in only:
            results["ceilings"] = scenarios.ceilings(cfg, empty)
        if "tracing" in only:
            results["tracing"] = scenarios.tracing_cost(cfg, empty)
        if {"processing", "autoscaling", "ratestep"} & set(only):
            infra.log(f"pre-loading {cfg.backlog} events")
            backlog = scenarios.preload_template(cfg.backlog, users=max(100, cfg.backlog // 10))
        if "processing" in only and backlog:
            results["processing"] = scenarios.processing(cfg, backlog, cfg.backlog)
        if "lag" in only:
            results["lag"] = scenarios.lag(cfg, empty)
            results["lag_stack"] = scenarios.lag(
                cfg,
                empty,
                rates=cfg.stack_rates,
                name="lagstack",
                api_processes=scenarios.STACK_API_PROCESSES,
                configuration="as scripts/stack",
            )
        if "autoscaling" in only and backlog:
            results["autoscaling"] = scenarios.autoscaling(cfg, backlog, cfg.backlog)
        if "ratestep" in only and backlog:
            results["ratestep"] = scenarios.rate_step(cfg, backlog, cfg.backlog)
        if "scalein" in only:
            results["scalein"] = scenarios.scale_in(cfg)
        if "purge" in only:
            results["purge"] = scenarios.purge(cfg, empty)
        if "overload" in only:
            results["overload"] = scenarios.overload(cfg, empty)
        if "curve" in only:
            results["curve"] = scenarios.curve(cfg, empty)
        if "syscurve" in only:
            results["syscurve"] = scenarios.system_curve(cfg, empty)
        if "growth" in only:
            results["growth"] = scenarios.growth(cfg, empty)
    finally:
        infra.drop_database(empty)
        if backlog:
            infra.drop_database(backlog)
    results["load_after"] = os.getloadavg()
    results["seconds"] = time.monotonic() - started
    results["targets"] = report.targets(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latest.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )
    plotted = report.plot(results, out_dir / "autoscale.png")
    curve_plotted = report.plot_curve(results, out_dir / "curve.png")
    system_plotted = report.plot_system_curve(results, out_dir / "system-curve.png")
    text = report.table(results)
    (out_dir / "latest.txt").write_text(text + "\n")
    print(text)
    print(
        f"\n{results['mode']} run took {results['seconds']:.0f} s; results in "
        f"{out_dir.relative_to(infra.ROOT) if out_dir.is_relative_to(infra.ROOT) else out_dir}"
        "/latest.json"
        + (", plot autoscale.png" if plotted else "")
        + (", plot curve.png" if curve_plotted else "")
        + (", plot system-curve.png" if system_plotted else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
