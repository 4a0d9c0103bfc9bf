"""Micro-batching event writer: concurrent requests share one INSERT and one commit.

Each request hands its event to the writer and awaits the outcome; a loop takes everything
waiting (up to a batch size) and inserts it on a worker thread. Under load the batches grow by
themselves, so the commit cost and the thread hand-off are paid once per batch, not per request.
The queue is bounded twice: `insert` refuses at once (`Overloaded`) past `max_pending` waiting
events, and while the oldest one has waited longer than `max_wait_s` (the writer is behind: the
process or PostgreSQL is short of CPU, so any fixed count would still mean long waits). An event
whose request gave up waiting (its deadline passed) is not inserted at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine

from conversation_events.errors import PermanentError
from conversation_events.persistence.db import in_transaction, translate_errors
from conversation_events.persistence.events import InsertOutcome, NewEvent, insert_events
from conversation_events_api.batching import BatchQueue
from conversation_events_api.overload import Overloaded

log = logging.getLogger(__name__)


class EventWriter:
    def __init__(
        self,
        engine: Engine,
        *,
        batch_size: int,
        concurrency: int,
        max_pending: int = 1000,
        max_wait_s: float = 0.25,
        window_s: float = 0.0,
    ) -> None:
        self._engine = engine
        self._batch_size = batch_size
        self._window = window_s
        self._concurrency = concurrency
        self._max_wait = max_wait_s
        # (event, its waiter, when it was queued on the loop's clock)
        self._pending: BatchQueue[tuple[NewEvent, asyncio.Future[InsertOutcome], float]] = (
            BatchQueue(max_pending)
        )
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="event-writer")
        self._loops: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._run(), name="event-writer") for _ in range(self._concurrency)
        ]

    async def stop(self) -> None:
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def insert(self, event: NewEvent) -> InsertOutcome:
        """Store one event durably; raises `RetryableError` when PostgreSQL is unavailable and
        `Overloaded` when too many events already wait."""
        loop = asyncio.get_running_loop()
        oldest = self._pending.oldest()
        if oldest is not None and loop.time() - oldest[2] > self._max_wait:
            raise Overloaded(f"insert queue behind by more than {self._max_wait:g} s")
        [future] = self._queue([event])
        return await future

    def insert_all(self, items: Sequence[NewEvent]) -> list[asyncio.Future[InsertOutcome]]:
        """Queue `items` for storing, all or none (`Overloaded` past `max_pending`); one waiter
        each, which fails with `RetryableError` when its batch could not be stored. They may be
        stored in several batches, each committed on its own.

        The oldest wait is no bound here: the rows of a batch request wait for each other by
        design (its last ones for the batches before them), and the request is answered only
        once all are stored, so their number (and the batch requests in flight) bound it.
        """
        return self._queue(items)

    def _queue(self, items: Sequence[NewEvent]) -> list[asyncio.Future[InsertOutcome]]:
        loop = asyncio.get_running_loop()
        now = loop.time()
        futures: list[asyncio.Future[InsertOutcome]] = [loop.create_future() for _ in items]
        if not self._pending.put_all(
            [(event, future, now) for event, future in zip(items, futures, strict=True)]
        ):
            raise Overloaded("insert queue full")
        return futures

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # A cancelled waiter answered 503 already; its client retries (idempotently).
            taken = await self._pending.take(self._batch_size, self._window)
            batch = [i for i in taken if not i[1].done()]
            if not batch:
                continue
            items = [event for event, _, _ in batch]
            try:
                outcomes = await loop.run_in_executor(self._executor, self._insert, items)
            except Exception as exc:  # every waiter learns why its event was not stored
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future, _), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    def _insert(self, items: list[NewEvent]) -> list[InsertOutcome | BaseException]:
        try:
            return list(self._insert_batch(items))
        except PermanentError:
            if len(items) == 1:
                raise
        # One bad row must not fail its neighbours: store them one by one.
        log.warning(
            "batch insert failed permanently; retrying row by row", extra={"rows": len(items)}
        )
        return [self._insert_one(item) for item in items]

    def _insert_batch(self, items: list[NewEvent]) -> list[InsertOutcome]:
        # Safe to redo: a row the first try committed is recognised by its id (CREATED).
        with translate_errors():
            return in_transaction(self._engine, lambda conn: insert_events(conn, items))

    def _insert_one(self, item: NewEvent) -> InsertOutcome | BaseException:
        try:
            return self._insert_batch([item])[0]
        except PermanentError as exc:
            return exc
