"""ThrottledLog: a line when a cause first appears, then at most one per period with a count."""

from __future__ import annotations

import logging

import pytest

from conversation_events_api.throttle import ThrottledLog


def test_logs_each_cause_once_then_a_count_per_period(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    throttled = ThrottledLog(
        logging.getLogger("test.throttle"), "failed", every_s=30, clock=lambda: now[0]
    )
    caplog.set_level(logging.WARNING, logger="test.throttle")

    throttled.record("returned", 3)
    throttled.record("returned", 2)
    throttled.record("timeout", 1)
    now[0] = 29.0
    throttled.record("returned", 4)
    assert [(r.cause, r.count, r.first) for r in caplog.records] == [  # type: ignore[attr-defined]
        ("returned", 3, True),
        ("timeout", 1, True),
    ]

    now[0] = 31.0
    throttled.record("returned", 1)
    last = caplog.records[-1]
    assert (last.cause, last.count, last.first) == ("returned", 7, False)  # type: ignore[attr-defined]
    throttled.record("returned", 1)  # a new period started at 31 s
    assert len(caplog.records) == 3
