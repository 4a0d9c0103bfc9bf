"""A queue that hands out whatever is waiting, up to a limit, as one batch."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class BatchQueue(Generic[T]):
    """Producers `put` without waiting; one or more loops `take` batches.

    Under load batches grow by themselves (everything that arrived while the previous batch
    was being handled), so per-batch costs are paid once for many items.
    """

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def oldest(self) -> T | None:
        """The item waiting longest, or None."""
        return self._items[0] if self._items else None

    def put(self, item: T) -> None:
        self._items.append(item)
        self._ready.set()

    async def take(self, limit: int) -> list[T]:
        """Wait until something is queued, then return up to `limit` items, oldest first."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return [self._items.popleft() for _ in range(min(limit, len(self._items)))]
