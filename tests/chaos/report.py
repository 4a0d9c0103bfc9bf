"""The per-scenario report table, collected during the run and printed in pytest's summary."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPORTS: list[ScenarioReport] = []


@dataclass
class ScenarioReport:
    scenario: str
    sent: int
    accepted: int
    processed: int
    lost: int
    applied_twice: int
    server_errors: int  # 5xx other than 503 with Retry-After
    retried_503: int  # 503 + Retry-After answers, each retried by the producer
    redelivered: int  # messages the broker delivered again
    max_lag_s: float  # longest time from 202 to PROCESSED
    recovery_s: float | None
    recovery_meaning: str
    stream_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self) -> None:
        REPORTS.append(self)
        target = os.environ.get("CHAOS_REPORT_FILE")
        if target:
            path = Path(target)
            rows = json.loads(path.read_text()) if path.exists() else []
            rows.append(asdict(self))
            path.write_text(json.dumps(rows, indent=2))


HEADER = (
    "| scenario | sent | accepted | processed | lost | applied twice | non-503 5xx "
    "| 503 retried | redelivered | max lag (s) | time to recover (s) | stream (s) |"
)


def table(reports: list[ScenarioReport]) -> list[str]:
    """The reports as a Markdown table, then one line per scenario saying what recovery means."""
    lines = [HEADER, "|" + "---|" * 12]
    for r in reports:
        recovery = "n/a" if r.recovery_s is None else f"{r.recovery_s:.1f}"
        lines.append(
            f"| {r.scenario} | {r.sent} | {r.accepted} | {r.processed} | {r.lost} "
            f"| {r.applied_twice} | {r.server_errors} | {r.retried_503} | {r.redelivered} "
            f"| {r.max_lag_s:.1f} | {recovery} | {r.stream_s:.0f} |"
        )
    lines.append("")
    for r in reports:
        notes = ", ".join(f"{k}: {v}" for k, v in r.extra.items())
        lines.append(
            f"- {r.scenario}: time to recover = {r.recovery_meaning}"
            + (f"; {notes}" if notes else "")
        )
    return lines
