"""The one table (our figures, baselines, ratios, targets), the JSON and the PNG plot."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any


def _m(stat: dict[str, float] | None, fmt: str = "{:.0f}") -> str:
    if not stat or stat.get("n", 0) == 0 or math.isnan(stat["median"]):
        return "n/a"
    if stat["n"] == 1:
        return fmt.format(stat["median"])
    return f"{fmt.format(stat['median'])} ({fmt.format(stat['min'])}–{fmt.format(stat['max'])})"


def _ratio(a: float | None, b: float | None) -> float:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return float("nan")
    return a / b


def _med(stat: dict[str, float] | None) -> float:
    return float("nan") if not stat or stat.get("n", 0) == 0 else float(stat["median"])


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each performance target with the measured value and whether it is met."""
    out: list[dict[str, Any]] = []
    acc = results.get("accept", {}).get("summary", {})

    def add(name: str, value: float, goal: str, met: bool) -> None:
        out.append({"target": name, "value": value, "goal": goal, "met": bool(met)})

    for procs in (1, 2):
        ours, seed, noio = (acc.get(f"{s}x{procs}") for s in ("ours", "seed", "noio"))
        if not ours:
            continue
        ratio = _ratio(_med(ours["rate"]), _med(seed["rate"] if seed else None))
        add(f"accept req/s vs seed ({procs} API proc)", ratio, "≥ 10×", ratio >= 10)
        p99 = _med(ours["p99_ms"])
        add(f"accept p99 at 64 connections ({procs} API proc), ms", p99, "≤ 100", p99 <= 100)
        cpu = _med(ours["cpu_ms_per_event"])
        add(f"CPU per accepted event ({procs} API proc), ms", cpu, "≤ 0.8", cpu <= 0.8)
        share = _ratio(_med(ours["rate"]), _med(noio["rate"] if noio else None))
        add(
            f"share of the no-I/O ceiling ({procs} API proc) [stretch]",
            share,
            "≥ 25 %",
            share >= 0.25,
        )
    at500 = acc.get("ours_at_500")
    if at500:
        p99 = _med(at500["p99_ms"])
        add("accept p99 at an offered 500 req/s (API alone), ms", p99, "≤ 20", p99 <= 20)
    bulk = results.get("bulk")
    if bulk:
        add(
            "bulk accept: batch vs single posts, events/s (1 API proc)",
            bulk["ratio"],
            "≥ 5×",
            bulk["ratio"] >= 5,
        )
    lag = results.get("lag", {})
    for key in ("lag_stack", "lag"):
        out += whole_system_targets(results.get(key, {}))
    if "1000" in lag:
        r = lag["1000"]
        ok = r["accepted_rate"] >= 950 and r["processed_rate"] >= 950 and r["lag_p99_ms"] <= 5000
        add(
            "whole system at 1,000 events/s: processed/s",
            r["processed_rate"],
            "≥ 1,000 accepted and processed, lag bounded",
            ok,
        )
    out += curve_targets(results.get("curve", {}))
    out += growth_targets(results.get("growth", {}))
    for phase in results.get("overload", {}).get("phases", []):
        if "latency_ms" in phase:
            p99 = phase["latency_ms"]["p99"]
            add(
                f"overload p99 of answers, {phase['generator'].split()[0]}, ms",
                p99,
                "< 1,000",
                p99 < 1000,
            )
    proc = results.get("processing", {}).get("summary", {})
    if proc:
        ours = _med(proc.get("ours", {}).get("events_per_s"))
        cpu = _med(proc.get("ours", {}).get("cpu_ms_per_event"))
        add(
            "processing: CPU per event in all while draining a backlog, ms",
            cpu,
            "≤ 1.1",
            cpu <= 1.1,
        )
        for base, goal in (("seed", 3.0), ("celery", 1.5)):
            ratio = _ratio(ours, _med(proc.get(base, {}).get("events_per_s")))
            add(
                f"processing vs {base} worker (defaults, 1 process)",
                ratio,
                f"≥ {goal}×",
                ratio >= goal,
            )
    auto = results.get("autoscaling", {})
    scaled, static = auto.get("scaled", {}), auto.get("static", {})
    if scaled.get("time_to_max_s") is not None or "drain_s" in scaled:
        t = scaled.get("time_to_max_s")
        if not _drained_alone(scaled):  # else the burst never called for more workers
            add(
                "autoscaling: reaches max after the burst, s",
                t if t is not None else float("nan"),
                "≤ 15",
                t is not None and t <= 15,
            )
        ratio = _ratio(scaled.get("drain_s"), static.get("drain_s"))
        add("autoscaling: drain time vs static N", ratio, "≤ 1.3×", ratio <= 1.3)
    return out


def _drained_alone(scaled: dict[str, Any]) -> bool:
    return scaled.get("first_new_worker_s") is None and scaled.get("drain_s") is not None


def table(results: dict[str, Any]) -> str:
    lines: list[str] = []
    acc = results.get("accept", {}).get("summary", {})
    if acc:
        lines.append("ACCEPT PATH  POST /v1/conversations/end, 64 connections, closed loop")
        lines.append(
            f"{'system':<22}{'req/s':>22}{'p50 ms':>20}{'p99 ms':>22}{'err':>6}"
            f"{'CPU ms/ev':>20}{'vs seed':>9}{'vs celery':>10}{'of no-I/O':>10}"
        )
        for procs in sorted({int(k.rsplit("x", 1)[1]) for k in acc if k != "ours_at_500"}):
            seed = _med(acc.get(f"seedx{procs}", {}).get("rate"))
            celery = _med(acc.get(f"celeryx{procs}", {}).get("rate"))
            noio = _med(acc.get(f"noiox{procs}", {}).get("rate"))
            for system in ("ours", "seed", "celery", "noio"):
                s = acc.get(f"{system}x{procs}")
                if not s:
                    continue
                rate = _med(s["rate"])
                label = {"noio": "no-I/O ceiling"}.get(system, system) + f" ×{procs} proc"
                lines.append(
                    f"{label:<22}{_m(s['rate']):>22}{_m(s['p50_ms'], '{:.1f}'):>20}"
                    f"{_m(s['p99_ms'], '{:.0f}'):>22}{s['errors']:>6}"
                    f"{_m(s['cpu_ms_per_event'], '{:.2f}') if system != 'noio' else '':>20}"
                    f"{_ratio(rate, seed):>8.1f}×{_ratio(rate, celery):>9.2f}×"
                    f"{100 * _ratio(rate, noio):>9.0f}%"
                )
        at500 = acc.get("ours_at_500")
        if at500:
            lines.append(
                f"  ours ×1 at an offered 500 req/s (open loop): p50 "
                f"{_m(at500['p50_ms'], '{:.1f}')}"
                f" ms, p99 {_m(at500['p99_ms'], '{:.1f}')} ms, CPU "
                f"{_m(at500['cpu_ms_per_event'], '{:.2f}')} ms/event, errors {at500['errors']}"
            )
        lost = sum(s["lost"] for s in acc.values())
        lines.append(f"  accepted but missing from PostgreSQL or the queue: {lost}")
        lg = [_med(s.get("loadgen_cpu_ms_per_request")) for s in acc.values()]
        lg = [v for v in lg if not math.isnan(v)]
        if lg:
            lines.append(
                f"  load generator CPU: {min(lg):.3f}–{max(lg):.3f} ms per request (not counted)"
            )
    traced = results.get("tracing", {}).get("summary", {})
    if traced:
        lines.append("")
        lines.append(
            f"TRACING COST  ours ×1 at an offered {results['tracing']['rate']} req/s, open loop"
        )
        lines.append(f"{'configuration':<22}{'API CPU ms/req':>22}{'p99 ms':>22}{'err':>6}")
        for name, s in traced.items():
            lines.append(
                f"{name:<22}{_m(s['api_cpu_ms_per_request'], '{:.3f}'):>22}"
                f"{_m(s['p99_ms'], '{:.0f}'):>22}{s['errors']:>6}"
            )
        paired = results["tracing"].get("in_process_ms_per_request", {})
        if paired:
            lines.append("  in one process (app + client), paired, CPU ms per request:")
            for name, stat in paired.items():
                lines.append(f"    {name:<20}{_m(stat, '{:.3f}'):>22}")
    bulk = results.get("bulk")
    if bulk:
        lines.append("")
        lines.append(
            f"BULK ACCEPT  1 API process: single posts ({bulk['single_connections']} connections)"
            f" vs batches of {bulk['batch_size']} ({bulk['batch_connections']} connections)"
        )
        lines.append(
            f"{'mode':<10}{'events/s':>22}{'request p99 ms':>22}{'API CPU ms/ev':>20}"
            f"{'CPU ms/ev':>20}{'err':>6}{'lost':>6}"
        )
        for mode, s in bulk["summary"].items():
            lines.append(
                f"{mode:<10}{_m(s['events_per_s']):>22}{_m(s['p99_ms']):>22}"
                f"{_m(s['api_cpu_ms_per_event'], '{:.2f}'):>20}"
                f"{_m(s['cpu_ms_per_event'], '{:.2f}'):>20}{s['errors']:>6}{s['lost']:>6}"
            )
        lines.append(f"  batch / single: {bulk['ratio']:.1f}× (target ≥ 5×)")
    ceil = results.get("ceilings", {})
    if ceil:
        lines.append("")
        lines.append("CEILINGS")
        for key, label, field in (
            ("postgres_batch1", "PostgreSQL INSERT+COMMIT, 8 conns, 1 row/commit", "rows_per_s"),
            (
                "postgres_batch100",
                "PostgreSQL INSERT+COMMIT, 8 conns, 100 rows/commit",
                "rows_per_s",
            ),
            ("amqp_confirmed", "RabbitMQ pipelined confirmed publishes (quorum)", "messages_per_s"),
        ):
            if key in ceil:
                lines.append(f"  {label:<55}{ceil[key][field]:>10.0f} /s")
    proc = results.get("processing", {}).get("summary", {})
    if proc:
        lines.append("")
        lines.append(f"PROCESSING  pre-loaded backlog of {results['processing']['events']} events")
        lines.append(
            f"{'worker':<28}{'events/s':>24}{'CPU ms/ev':>22}{'vs seed':>9}{'vs celery':>10}"
        )
        seed = _med(proc.get("seed", {}).get("events_per_s"))
        celery = _med(proc.get("celery", {}).get("events_per_s"))
        for name, s in proc.items():
            rate = _med(s["events_per_s"])
            lines.append(
                f"{name:<28}{_m(s['events_per_s']):>24}{_m(s['cpu_ms_per_event'], '{:.2f}'):>22}"
                f"{_ratio(rate, seed):>8.1f}×{_ratio(rate, celery):>9.2f}×"
            )
    for key in ("lag_stack", "lag"):
        lines += whole_system_lines(results.get(key, {}))
    auto = results.get("autoscaling", {})
    if auto:
        lines.append("")
        sc, st = auto.get("scaled", {}), auto.get("static", {})
        if "error" in sc or "error" in st:
            lines.append(f"AUTOSCALING  failed: {sc.get('error') or st.get('error')}")
        else:
            lines.append(
                f"AUTOSCALING  burst of {sc['events']} events, min 1 / max {sc['max_workers']}"
            )

            def f(v: float | None) -> str:
                return "n/a" if v is None else f"{v:.1f} s"

            lines.append(
                f"  first new worker {f(sc['first_new_worker_s'])}, max reached "
                f"{f(sc['time_to_max_s'])}, drained {f(sc['drain_s'])} vs static "
                f"{sc['max_workers']}: {f(st.get('drain_s'))} "
                f"({_ratio(sc['drain_s'], st.get('drain_s')):.2f}×), back to min "
                f"{f(sc['back_to_min_s'])} after the drain"
            )
            if _drained_alone(sc):
                lines.append(
                    "  (one worker drained the burst before the scaler's first reading: too small"
                    " to call for more workers)"
                )
    step = results.get("ratestep", {})
    if step:
        heading = (
            f"RATE STEP  0 → {step['rate']:.0f} messages/s ({step['events']} messages), 1.5× one"
            f" worker's {step['worker_rate']:.0f}/s; targetPerReplica {step['target_per_replica']},"
            f" ratePerReplica {step['rate_per_replica']}"
        )
        lines += ["", heading]
        columns = [  # heading, width, format, key of the rounds' results
            ("2nd worker s", 14, ".1f", "first_new_worker_s"),
            ("peak backlog", 14, ".0f", "peak_backlog"),
            ("drained s", 11, ".1f", "drain_s"),
            ("most workers", 14, ".0f", "max_workers_seen"),
        ]
        lines.append(f"{'metrics':<14}{'rounds':>8}" + "".join(f"{c[0]:>{c[1]}}" for c in columns))
        for mode in ("backlog", "backlog+rate"):
            rows = step[mode]
            cells = "".join(
                f"{_median(rows, key):>{width}{spec}}" for _, width, spec, key in columns
            )
            lines.append(f"{mode:<14}{len(rows):>8}{cells}")
    scale_in = results.get("scalein", {})
    if scale_in:
        lines += [
            "",
            f"SCALE-IN  {scale_in['workers']} → {scale_in['after']} workers, {scale_in['busy']} of"
            f" them holding an event for {scale_in['busy_s']:g} s after the decision",
            f"{'victims':<14}{'rounds':>8}{'median s':>10}{'min–max s':>14}{'busy victim':>13}",
        ]
        for policy in ("idle-first", "random"):
            r = scale_in[policy]
            lines.append(
                f"{policy:<14}{len(r['rounds']):>8}{r['median_s']:>10.2f}"
                f"{r['min_s']:>7.2f}–{r['max_s']:<6.2f}"
                f"{r['rounds_with_a_busy_victim']:>6} of {len(r['rounds'])}"
            )
    lines += purge_lines(results.get("purge", {}))
    lines += overload_lines(results.get("overload", {}))
    lines += curve_lines(results.get("curve", {}))
    lines += system_curve_lines(results.get("syscurve", {}))
    lines += growth_lines(results.get("growth", {}))
    tg = targets(results)
    if tg:
        lines.append("")
        lines.append("TARGETS")
        for t in tg:
            v = t["value"]
            shown = "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"
            lines.append(
                f"  [{'met ' if t['met'] else 'MISS'}] {t['target']:<58} {shown:>10}"
                f"  (goal {t['goal']})"
            )
    return "\n".join(lines)


def _median(rows: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else float("nan")


def purge_lines(pg: dict[str, Any]) -> list[str]:
    """The purge scenario: accept latencies alone and while purging, and the purge's own rate."""
    if not pg:
        return []
    heading = (
        f"PURGE  {pg['rows']} due events, 1 API process at an offered {pg['offered_rate']}"
        " req/s (open loop)"
    )
    lines = ["", heading]
    for label, key in (("accept alone", "alone"), ("accept while purging", "during_purge")):
        r = pg[key]
        lines.append(
            f"  {label:<22} p50 {r['latency_ms']['p50']:>7.1f} ms  p99 "
            f"{r['latency_ms']['p99']:>7.1f} ms  {r['rate']:>5.0f} req/s  errors {r['errors']}"
        )
    summary = pg["purge"]
    lines.append(
        f"  purge: {summary['content_dropped']} contents dropped + {summary['events_deleted']}"
        f" events deleted in {summary['seconds']:.0f} s ({pg['purge_rows_per_s']:.0f} rows/s,"
        f" {summary['batches']} batches); left due: {pg['left_due']}"
    )
    return lines


def overload_lines(ovl: dict[str, Any]) -> list[str]:
    """The overload scenario: one line of figures per generator, and how its answers split."""
    if not ovl:
        return []
    lines = [
        "",
        f"OVERLOAD  1 API process (defaults) + 1 worker, {ovl['clients']} connections, "
        f"{ovl['duration_s']:g} s measured",
        f"{'generator':<12}{'answers/s':>10}{'202/s':>7}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}"
        f"{'max ms':>8}{'loop lag p99':>13}{'API cores':>10}{'RSS MB':>12}{'lost':>5}{'err':>5}",
    ]
    for r in ovl["phases"]:
        name = r["generator"].split()[0]
        if "latency_ms" not in r:
            lines.append(f"{name:<12}{r.get('skipped') or r.get('error')}")
            continue
        lat, lag = r["latency_ms"], r["api_loop_lag"]["p99_le_ms"]
        lines.append(
            f"{name:<12}{r['answers_per_s']:>10.0f}{r['accepted_per_s']:>7.0f}{lat['p50']:>8.0f}"
            f"{lat['p95']:>8.0f}{lat['p99']:>8.0f}{lat['max']:>8.0f}{'≤ ' + f'{lag:g}':>13}"
            f"{r['api_cores']:>10.2f}{r['rss_mb']['start']:>6.0f}→{r['rss_mb']['peak']:<5.0f}"
            f"{r['lost']:>5}{r['errors']:>5}"
        )
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()))
        detail = f"  statuses {statuses}"
        by = r.get("latency_by_status_ms", {})
        if by:
            detail += "; p99 by status " + ", ".join(
                f"{k}: {v['p99']:.0f} ms" for k, v in sorted(by.items())
            )
        inside = r.get("api_accept_2xx", {}).get("p99_le_ms")
        if inside is not None:
            detail += f"; 202 p99 inside the API ≤ {inside:g} ms"
        if "generator_loop_lag_ms" in r:
            detail += f"; generator's own loop lag p99 {r['generator_loop_lag_ms']['p99']:.0f} ms"
        lines.append(detail)
    return lines


def whole_system_lines(lag: dict[str, Any]) -> list[str]:
    """The whole-system table of one configuration (its API processes), with its backlog and
    CPU by component."""
    rates = [k for k in lag if k.isdigit()]
    if not rates:
        return []
    lines = ["", f"WHOLE SYSTEM  {_api_processes(lag)} + scaler + workers, open-loop offered rate"]
    lines.append(
        f"{'offered/s':>10}{'accepted/s':>12}{'processed/s':>13}{'API p50':>12}"
        f"{'API p99':>12}{'lag p50':>12}{'lag p99':>12}{'workers':>9}{'CPU ms/ev':>11}"
        f"{'done ≤5 s':>11}"
    )
    for k in rates:
        r = lag[k]
        lines.append(
            f"{r['offered_rate']:>10}{r['accepted_rate']:>12.0f}{r['processed_rate']:>13.0f}"
            f"{r['api_latency_ms']['p50']:>10.1f}ms{r['api_latency_ms']['p99']:>10.1f}ms"
            f"{r['lag_p50_ms']:>10.0f}ms{r['lag_p99_ms']:>10.0f}ms{r['max_workers']:>9}"
            f"{r['cpu_ms_per_event']:>11.2f}"
            f"{100 * r.get('processed_within_share', float('nan')):>10.1f}%"
        )
    lines += whole_system_backlog_lines(lag, rates)
    lines += whole_system_cpu_lines(lag, rates)
    return lines


def _api_processes(lag: dict[str, Any]) -> str:
    """How many API processes a whole-system run ran, and whose configuration that is."""
    n = lag.get("api_processes", 1)
    processes = "1 API process" if n == 1 else f"{n} API processes"
    return f"{processes} ({lag['configuration']})" if "configuration" in lag else processes


def whole_system_targets(lag: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue #13's whole-system targets at 200 and 500 events/s (those the run measured), named
    with the configuration's API processes."""
    out: list[dict[str, Any]] = []
    api = f"{lag.get('api_processes', 1)} API proc"
    if "200" in lag:
        r = lag["200"]
        p99 = r["api_latency_ms"]["p99"]
        out += [
            _target(
                f"whole system at 200/s ({api}): CPU per event in all, ms",
                r["cpu_ms_per_event"],
                "≤ 4.0",
                r["cpu_ms_per_event"] <= 4.0,
            ),
            _target(f"whole system at 200/s ({api}): API p99, ms", p99, "≤ 50", p99 <= 50),
            _target(
                f"whole system at 200/s ({api}): lag accept→PROCESSED p99, ms",
                r["lag_p99_ms"],
                "≤ 500",
                r["lag_p99_ms"] <= 500,
            ),
        ]
    if "500" in lag:
        r = lag["500"]
        share = r.get("processed_within_share", float("nan"))
        out += [
            _target(
                f"whole system at 500/s ({api}): processed ≤ 5 s after the load, %",
                100 * share,
                "≥ 98 %",
                share >= 0.98,
            ),
            _target(
                f"whole system at 500/s ({api}): lag accept→PROCESSED p99, ms",
                r["lag_p99_ms"],
                "≤ 1,000",
                r["lag_p99_ms"] <= 1000,
            ),
        ]
    return out


def whole_system_backlog_lines(lag: dict[str, Any], rates: list[str]) -> list[str]:
    """Per rate, where waiting work was at most (sampled every 0.5 s): committed but not yet
    published, ready in the queue, delivered and not yet acknowledged."""
    lines = ["  backlog, most seen (sampled every 0.5 s; unacked from the management API):"]
    for k in rates:
        r = lag[k]
        lines.append(
            f"    at {k}/s: unpublished {r.get('max_unpublished', 0)}, ready"
            f" {r.get('max_queued', 0)}, unacked {r.get('max_unacked', 'n/a')}"
        )
    return lines


def whole_system_cpu_lines(lag: dict[str, Any], rates: list[str]) -> list[str]:
    """CPU ms per accepted event of each component; the load generator is not in the total."""
    by_rate = {k: lag[k].get("cpu_ms_per_event_by_component") for k in rates}
    if not all(by_rate.values()):
        return []
    names = list(next(iter(by_rate.values())))
    names = [n for n in names if n != "loadgen"]
    lines = [
        "  CPU ms per accepted event by component (load generator apart, not in the total):",
        f"{'offered/s':>10}" + "".join(f"{n:>10}" for n in names) + f"{'total':>10}{'loadgen':>10}",
    ]
    for k, cpu in by_rate.items():
        lines.append(
            f"{k:>10}"
            + "".join(f"{cpu.get(n, float('nan')):>10.2f}" for n in names)
            + f"{sum(cpu[n] for n in names):>10.2f}{cpu.get('loadgen', float('nan')):>10.2f}"
        )
    return lines


def _target(name: str, value: float, goal: str, met: bool) -> dict[str, Any]:
    return {"target": name, "value": value, "goal": goal, "met": bool(met)}


def curve_targets(cur: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue #13's two targets of one API process: the rate within the p99 bound, and the API
    process's CPU per accepted event at the highest step (where it is busiest)."""
    if not cur.get("steps"):
        return []
    best = cur["max_rate_within_bound"]
    top = cur["steps"][-1]
    return [
        _target(
            f"one API process: highest offered rate with p99 ≤ {cur['p99_bound_ms']:g} ms",
            float("nan") if best is None else float(best),
            "≥ 450 req/s",
            best is not None and best >= 450,
        ),
        _target(
            f"API process CPU per accepted event at saturation ({top['offered_rate']}/s), ms",
            top["api_cpu_ms_per_event"],
            "≤ 1.2",
            top["api_cpu_ms_per_event"] <= 1.2,
        ),
    ]


def curve_lines(cur: dict[str, Any]) -> list[str]:
    """The curve scenario: one line per offered rate, and the headline rate."""
    if not cur.get("steps"):
        return []
    best = cur["max_rate_within_bound"]
    lines = [
        "",
        f"LATENCY–THROUGHPUT CURVE  1 API process + 1 worker, open loop, {cur['step_s']:g} s"
        f" per step after {cur['warmup_s']:g} s warm-up",
        f"{'offered/s':>10}{'accepted/s':>12}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'err':>6}"
        f"{'lost':>6}{'API CPU ms/ev':>15}{'+PG+MQ ms/ev':>14}",
    ]
    for s in cur["steps"]:
        lat = s["latency_ms"]
        lines.append(
            f"{s['offered_rate']:>10}{s['accepted_rate']:>12.0f}{lat['p50']:>9.1f}"
            f"{lat['p95']:>9.1f}{lat['p99']:>9.1f}{s['errors']:>6}{s['lost']:>6}"
            f"{s['api_cpu_ms_per_event']:>15.2f}{s['cpu_ms_per_event']:>14.2f}"
        )
    lines.append(
        f"  highest offered rate with p99 ≤ {cur['p99_bound_ms']:g} ms and no errors: "
        + ("none" if best is None else f"{best} req/s")
    )
    return lines


def system_curve_lines(cur: dict[str, Any]) -> list[str]:
    """The whole-system curve: one line per offered rate, and the headline rate."""
    if not cur.get("steps"):
        return []
    best = cur["max_rate_within_bound"]
    lines = [
        "",
        f"WHOLE-SYSTEM CURVE  {cur['api_processes']} API processes + scaler + workers, open loop,"
        f" {cur['step_s']:g} s per step after {cur['warmup_s']:g} s warm-up",
        f"{'offered/s':>10}{'accepted/s':>12}{'processed/s':>13}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'p99 ms':>9}{'lag p99 ms':>12}{'done ≤5 s':>11}{'workers':>9}{'err':>5}"
        f"{'CPU ms/ev':>11}",
    ]
    for s in cur["steps"]:
        lat = s["api_latency_ms"]
        lines.append(
            f"{s['offered_rate']:>10}{s['accepted_rate']:>12.0f}{s['processed_rate']:>13.0f}"
            f"{lat['p50']:>9.1f}{lat['p95']:>9.1f}{lat['p99']:>9.1f}{s['lag_p99_ms']:>12.0f}"
            f"{100 * s['processed_within_share']:>10.1f}%{s['max_workers']:>9}{s['errors']:>5}"
            f"{s['cpu_ms_per_event']:>11.2f}"
        )
    lines.append(
        f"  highest offered rate with API p99 ≤ {cur['p99_bound_ms']:g} ms, no errors and"
        f" ≥ {100 * cur['done_share']:g} % processed within 5 s: "
        + ("none" if best is None else f"{best} events/s")
    )
    return lines


def growth_targets(gr: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue #13's "cost as the data grows" targets, at the sizes the run loaded."""
    if not gr:
        return []
    held = f"{gr['events']:,} events / {gr['users']:,} users"
    acc, proc = gr["accept"]["ratio"], gr["processing"]["ratio"]
    heavy = gr["topics"]["worker_pg_cpu_ratio"]
    return [
        _target(f"accept rate with {held} vs empty", acc, "≥ 85 %", acc >= 0.85),
        _target(f"processing rate with {held} vs empty", proc, "≥ 85 %", proc >= 0.85),
        _target(
            f"event of a user with {gr['topics']['topics']:,} topics vs a new user, CPU",
            heavy,
            "≤ 2×",
            heavy <= 2,
        ),
    ]


def growth_lines(gr: dict[str, Any]) -> list[str]:
    """The growth scenario: both rates on the empty and the loaded database, and the topics."""
    if not gr:
        return []
    acc, proc, top = gr["accept"], gr["processing"], gr["topics"]
    drained = f"processing events/s (1 worker, {gr['backlog']:,} events)"
    lines = [
        "",
        f"GROWTH  empty database vs {gr['events']:,} processed events of {gr['users']:,} users"
        f" ({gr['database_mb']:.0f} MB, loaded in {gr['load_s']:.0f} s)",
        f"{'':<44}{'empty':>10}{'loaded':>10}{'loaded/empty':>14}",
        f"{'accept req/s (1 API process, 64 conn.)':<44}{acc['empty']['rate']:>10.0f}"
        f"{acc['loaded']['rate']:>10.0f}{acc['ratio']:>14.2f}",
        f"{'  p99 ms':<44}{acc['empty']['latency_ms']['p99']:>10.1f}"
        f"{acc['loaded']['latency_ms']['p99']:>10.1f}",
        f"{drained:<44}"
        f"{proc['empty']['events_per_s']:>10.0f}{proc['loaded']['events_per_s']:>10.0f}"
        f"{proc['ratio']:>14.2f}",
        f"{'  worker CPU ms/event':<44}{proc['empty']['worker_cpu_ms_per_event']:>10.2f}"
        f"{proc['loaded']['worker_cpu_ms_per_event']:>10.2f}",
        f"TOPICS  {top['events']} users, one event each: {top['topics']:,} topics vs a new user",
        f"{'':<44}{'new':>10}{'heavy':>10}{'heavy/new':>14}",
    ]
    for label, key, ratio in (
        ("worker CPU ms/event", "worker_cpu_ms", "worker_cpu_ratio"),
        ("worker + PostgreSQL CPU ms/event", "worker_pg_cpu_ms", "worker_pg_cpu_ratio"),
        ("ms/event (1 worker, drain span)", "ms", "time_ratio"),
    ):
        lines.append(
            f"  {label:<42}{top['new']['per_event'][key]:>10.2f}"
            f"{top['heavy']['per_event'][key]:>10.2f}{top[ratio]:>14.2f}"
        )
    return lines


#: One line of a latency plot: its values, matplotlib style and label.
Series = tuple[list[float], str, str]


def _latency_plot(
    path: Path,
    title: str,
    xlabel: str,
    rates: list[int],
    latencies: list[Series],
    bound_ms: float,
    cpu: list[Series],
) -> bool:
    """Latency lines against the offered rate (log scale) with the p99 bound, CPU per event on
    a second axis; written to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    for values, style, label in latencies:
        ax.plot(rates, values, style, label=label)
    ax.axhline(bound_ms, color="grey", ls=":", label="p99 bound")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("latency, ms (log)")
    ax.grid(alpha=0.3, which="both")
    right = ax.twinx()
    for values, style, label in cpu:
        right.plot(rates, values, style, label=label)
    right.set_ylabel("CPU ms per accepted event")
    right.set_ylim(bottom=0)
    handles, labels = ax.get_legend_handles_labels()
    more, names = right.get_legend_handles_labels()
    ax.legend(handles + more, labels + names, loc="upper left", fontsize="small")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_curve(results: dict[str, Any], path: Path) -> bool:
    """p50/p95/p99 against the offered rate (log scale), CPU per event on a second axis."""
    steps = results.get("curve", {}).get("steps", [])
    if not steps:
        return False
    return _latency_plot(
        path,
        "One API process + one worker: latency and CPU per event against offered rate",
        "offered rate, requests/s (open loop)",
        [s["offered_rate"] for s in steps],
        [
            ([s["latency_ms"][point] for s in steps], style, f"API {point}")
            for point, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-"))
        ],
        results["curve"]["p99_bound_ms"],
        [
            ([s["api_cpu_ms_per_event"] for s in steps], "k--", "API CPU ms/event"),
            ([s["cpu_ms_per_event"] for s in steps], "k-.", "API+PG+MQ CPU ms/event"),
        ],
    )


def plot_system_curve(results: dict[str, Any], path: Path) -> bool:
    """The whole system: API p50/p95/p99 and the accept-to-processed lag p99 against the
    offered rate (log scale), CPU per event of every component on a second axis."""
    cur = results.get("syscurve", {})
    steps = cur.get("steps", [])
    if not steps:
        return False
    return _latency_plot(
        path,
        f"Whole system ({cur['api_processes']} API processes, scaler, workers):"
        " latency, lag and CPU per event",
        "offered rate, events/s (open loop)",
        [s["offered_rate"] for s in steps],
        [
            *(
                ([s["api_latency_ms"][point] for s in steps], style, f"API {point}")
                for point, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-"))
            ),
            ([s["lag_p99_ms"] for s in steps], "d-", "accept→processed p99"),
        ],
        cur["p99_bound_ms"],
        [([s["cpu_ms_per_event"] for s in steps], "k--", "CPU ms/event, all")],
    )


def plot(results: dict[str, Any], path: Path) -> bool:
    auto = results.get("autoscaling", {})
    if not auto or any("samples" not in auto.get(m, {}) for m in ("scaled", "static")):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for mode, style in (("scaled", "-"), ("static", "--")):
        s = auto[mode]["samples"]
        t = [x["t"] for x in s]
        label = "autoscaled (min 1)" if mode == "scaled" else f"static {auto[mode]['max_workers']}"
        ax1.plot(t, [x["backlog"] for x in s], style, label=f"{label}: queued + in flight")
        ax2.step(t, [x["workers"] for x in s], style, where="post", label=label)
    ax1.set_ylabel("messages")
    ax1.set_title(f"Burst of {auto['scaled']['events']} events: queue depth and workers over time")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.set_ylabel("worker processes")
    ax2.set_xlabel("seconds since the burst started")
    ax2.legend()
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
