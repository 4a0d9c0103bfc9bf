"""The API's event-loop lag metric: a loop that cannot run its timers shows it."""

from __future__ import annotations

import asyncio
import time

from conversation_events_api import metrics
from conversation_events_api.overload import watch_loop_lag


def lag_sum_and_count() -> tuple[float, float]:
    [metric] = list(metrics.LOOP_LAG.collect())
    samples = {s.name: s.value for s in metric.samples}
    return (
        samples["conversation_events_event_loop_lag_seconds_sum"],
        samples["conversation_events_event_loop_lag_seconds_count"],
    )


def block(seconds: float) -> None:
    """A blocking call on the loop: no timer can fire meanwhile."""
    time.sleep(seconds)


def test_a_blocked_event_loop_is_observed_as_lag() -> None:
    sum_before, count_before = lag_sum_and_count()

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        watcher = asyncio.create_task(watch_loop_lag(interval_s=0.05))
        await asyncio.sleep(0)  # the watcher arms its first timer
        loop.call_soon(block, 0.3)
        # Until the watcher has observed its late timer (polled, for 10 s at most).
        for _ in range(1000):
            if lag_sum_and_count()[1] > count_before:
                break
            await asyncio.sleep(0.01)
        watcher.cancel()

    asyncio.run(scenario())
    sum_after, count_after = lag_sum_and_count()
    assert count_after > count_before
    # At least the blocked time past the timer's due instant (0.3 - 0.05 s).
    assert sum_after - sum_before >= 0.25
