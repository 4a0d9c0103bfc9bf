"""The API's batch queue: what arrives within the window shares a batch, nothing waits twice."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from conversation_events_api.batching import BatchQueue


async def _take_while_another_arrives(window_s: float) -> list[str]:
    queue: BatchQueue[str] = BatchQueue()
    queue.put("first")
    taking = asyncio.create_task(queue.take(10, window_s))
    await asyncio.sleep(0)  # the taker runs until it returns or waits out its window
    queue.put("second")
    return await taking


async def _at_once(taking: asyncio.Task[list[Any]]) -> tuple[bool, list[Any]]:
    """Whether `taking` returned without waiting, and what it returned (nothing if it waited:
    it is cancelled, as the tests that use it freeze the clock)."""
    await asyncio.sleep(0)
    if not taking.done():
        taking.cancel()
        return False, []
    return True, taking.result()


@pytest.mark.parametrize(("window_s", "batch"), [(0.0, ["first"]), (0.5, ["first", "second"])])
def test_an_item_arriving_within_the_window_joins_the_batch(
    window_s: float, batch: list[str]
) -> None:
    assert asyncio.run(_take_while_another_arrives(window_s)) == batch


def test_items_that_waited_behind_an_earlier_batch_are_not_held_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])

    async def scenario() -> tuple[bool, list[str]]:
        queue: BatchQueue[str] = BatchQueue()
        queue.put("waited")
        clock[0] += 0.6  # longer than the window, e.g. while the writer stored a batch
        taking = asyncio.create_task(queue.take(10, 0.5))
        return await _at_once(taking)

    assert asyncio.run(scenario()) == (True, ["waited"])


def test_a_full_batch_is_not_held() -> None:
    async def scenario() -> tuple[bool, list[int]]:
        queue: BatchQueue[int] = BatchQueue()
        queue.put_all([1, 2, 3])
        taking = asyncio.create_task(queue.take(3, 5.0))
        return await _at_once(taking)

    assert asyncio.run(scenario()) == (True, [1, 2, 3])


def test_what_is_left_of_a_full_batch_is_not_held_again(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])

    async def scenario() -> tuple[list[int], tuple[bool, list[int]]]:
        queue: BatchQueue[int] = BatchQueue()
        queue.put_all([1, 2, 3])
        clock[0] += 0.6  # all three have waited past the window
        first = await queue.take(2, 0.5)  # full: not held
        rest = asyncio.create_task(queue.take(2, 0.5))
        return first, await _at_once(rest)

    assert asyncio.run(scenario()) == ([1, 2], (True, [3]))
