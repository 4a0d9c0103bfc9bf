"""Hostile input inside a live stream: instants far in the future.

An `end_time` in year 2999, once accepted, would freeze its user's streak and last interaction
date for good (every real conversation afterwards would count as late). Such posts must get a
field-level 422 and leave no trace, while the rest of the stream is processed exactly once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from tests.chaos.harness import SHORT_EVENTS, USERS, Scenario, finish, make_events

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(300)]


def in_year(body: dict[str, Any], year: int) -> dict[str, Any]:
    """`body` moved to the same instant of `year`: start, end and every message."""
    end = datetime.fromisoformat(body["end_time"])
    shift = end.replace(year=year) - end

    def moved(instant: str) -> str:
        return (datetime.fromisoformat(instant) + shift).isoformat()

    return body | {
        "start_time": moved(body["start_time"]),
        "end_time": moved(body["end_time"]),
        "conversation_log": [
            m | {"timestamp": moved(m["timestamp"])} for m in body["conversation_log"]
        ],
    }


def test_end_time_in_year_2999_is_refused(scenario: Scenario) -> None:
    bodies = make_events(SHORT_EVENTS, USERS, seed=13)
    bodies = [in_year(b, 2999) if i % 10 == 9 else b for i, b in enumerate(bodies)]
    future = {b["conversation_id"] for b in bodies if b["end_time"].startswith("2999")}
    run = scenario.run_bodies(scenario.fleet(), bodies, [])
    with scenario.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT count(*) FROM conversation_events WHERE conversation_id = ANY(:ids)"),
            {"ids": list(future)},
        ).scalar_one()
        latest = conn.execute(
            text("SELECT max(last_interaction_at) FROM friendship_status WHERE user_id = ANY(:u)"),
            {"u": list({b["user_id"] for b in bodies})},
        ).scalar_one()
    report = finish(
        "13. end_time in year 2999 (1 post in 10)",
        [run.stream],
        run.verdict,
        None,  # no fault to recover from
        "none (no fault)",
        refused_422=run.stream.statuses.get("422", 0),
    )
    assert run.stream.statuses.get("422", 0) == len(future)
    assert stored == 0, "a refused event must not be stored"
    assert latest is not None and latest < datetime.now(latest.tzinfo) + timedelta(days=1)
    scenario.assert_exactly_once(run, report, refused=len(future))
