"""A queue that hands out whatever is waiting, up to a limit, as one batch."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class BatchQueue(Generic[T]):
    """Producers `put` without waiting; one or more loops `take` batches.

    Under load batches grow by themselves (everything that arrived while the previous batch
    was being handled), so per-batch costs are paid once for many items. At most `max_items`
    wait at once: past that `put` refuses, so a backlog costs bounded memory and bounded
    waiting instead of growing for as long as the overload lasts. (None: unbounded, for
    callers that bound their producers themselves.)
    """

    def __init__(self, max_items: int | None = None) -> None:
        self._items: deque[T] = deque()
        self._ready = asyncio.Event()
        self._max = max_items
        self._since = 0.0  # time.monotonic() when the queue last became non-empty

    def __len__(self) -> int:
        return len(self._items)

    def oldest(self) -> T | None:
        """The item waiting longest, or None."""
        return self._items[0] if self._items else None

    def put(self, item: T) -> bool:
        """Queue `item`; False (and nothing queued) when `max_items` are already waiting."""
        if self._max is not None and len(self._items) >= self._max:
            return False
        self._mark()
        self._items.append(item)
        self._ready.set()
        return True

    def put_all(self, items: Sequence[T]) -> bool:
        """Queue all of `items`, or none of them (False) when they would pass `max_items`.

        Items more numerous than `max_items` are queued together into an empty queue, so a
        bound set below a caller's largest group still lets that group through, alone.
        """
        if self._max is not None and self._items and len(self._items) + len(items) > self._max:
            return False
        self._mark()
        self._items.extend(items)
        self._ready.set()
        return True

    def _mark(self) -> None:
        if not self._items:
            self._since = time.monotonic()

    async def take(self, limit: int, window_s: float = 0.0) -> list[T]:
        """Wait until something is queued, then return up to `limit` items, oldest first.

        `window_s`: while fewer than `limit` are waiting, hold the batch until its first item
        has waited this long, so that items arriving close together share it. Items that
        waited already (while an earlier batch was handled) are not held again; several
        takers may wake for the same items: one takes them, the others wait again.
        """
        while True:
            while not self._items:
                self._ready.clear()
                await self._ready.wait()
            if window_s > 0 and len(self._items) < limit:
                delay = self._since + window_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            if self._items:
                # What is left keeps `_since`: it waited at least that long already.
                return [self._items.popleft() for _ in range(min(limit, len(self._items)))]
