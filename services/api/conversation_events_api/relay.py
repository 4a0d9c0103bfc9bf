"""Outbox relay: re-drives every unfinished event whose message may be missing.

Each pass recovers expired `PROCESSING` leases, then republishes `PENDING` events the broker has
not confirmed within a short delay and, whatever `published_at` says, events published longer
ago than the re-drive horizon and still not started (a message can be returned, dead-lettered,
purged or lost with a node; its event cannot), and retries whose `not_before` has passed. It
also measures the age of the oldest unfinished event and reads the last retention purge's
record (the purge itself is a short-lived job, gone before any scrape).

Safe with several API processes: rows are taken with `FOR UPDATE SKIP LOCKED`, so each pass of
each process works on different events. The lock is held until the confirms are recorded.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping

from conversation_events.errors import ConversationEventsError
from conversation_events.messaging.contract import EventMessage
from conversation_events.persistence import events as event_repo
from conversation_events.persistence import retention
from conversation_events.persistence.db import translate_errors
from conversation_events_api import metrics
from conversation_events_api.publisher import Publisher

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Relay:
    """A pass every `interval_s` (at once again while passes find full batches)."""

    engine: Engine
    publisher: Publisher
    _: KW_ONLY
    interval_s: float
    #: Unconfirmed publishes younger than this are left to the publisher.
    delay_s: float
    redrive_after_s: float
    batch_size: int
    # One thread keeps each pass's connection (and its row locks) on one thread.
    _executor: ThreadPoolExecutor = field(init=False, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="relay")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def _loop(self) -> None:
        while True:
            try:
                full = await self.run_once()
            except ConversationEventsError as exc:
                log.warning("relay pass failed", extra={"error": str(exc)})
                full = False
            except Exception:
                log.exception("relay pass crashed")
                full = False
            if not full:
                await asyncio.sleep(self.interval_s)

    async def run_once(self) -> bool:
        """One pass; returns True when it hit the batch size (more work is waiting)."""
        loop = asyncio.get_running_loop()
        released, oldest, purge = await loop.run_in_executor(self._executor, self._release_leases)
        metrics.OLDEST_UNFINISHED.set(oldest)
        if purge is not None:
            metrics.PURGE_LAST_RUN.set(purge["finished_at"].timestamp())
            metrics.PURGE_LAST_SECONDS.set(purge["seconds"])
            for action in ("content_dropped", "events_deleted"):
                metrics.PURGE_LAST_ROWS.labels(action).set(purge[action])
        if released:
            metrics.LEASES_RELEASED.inc(released)
            log.warning("expired leases released", extra={"count": released})
        if not self.publisher.connected or self.publisher.behind:
            # While this process's publisher has a backlog, the oldest unpublished rows are
            # most likely in it: republishing them too would only double the broker's work
            # (and hold their row locks, which workers wait for) when the process is busiest.
            return False
        conn: Connection = await loop.run_in_executor(self._executor, self.engine.connect)
        try:
            rows = await loop.run_in_executor(self._executor, self._take, conn)
            if not rows:
                return False
            messages = [EventMessage.announcing(r) for r in rows]
            confirmed = await self.publisher.publish_now(messages, source="relay")
            await loop.run_in_executor(self._executor, self._finish, conn, confirmed)
            metrics.RELAY_REPUBLISHED.inc(len(confirmed))
            metrics.PUBLISHED.labels("relay").inc(len(confirmed))
            log.info("relay republished events", extra={"count": len(confirmed)})
            return len(rows) >= self.batch_size
        except ConversationEventsError:
            await loop.run_in_executor(self._executor, conn.rollback)
            raise
        finally:
            await loop.run_in_executor(self._executor, conn.close)

    def _release_leases(self) -> tuple[int, float, RowMapping | None]:
        """Release expired leases; returns their count, the oldest unfinished event's age and
        the last purge run."""
        with translate_errors(), self.engine.begin() as conn:
            released = len(event_repo.release_expired_leases(conn, self.batch_size))
            return released, event_repo.oldest_unfinished_age_s(conn), retention.last_run(conn)

    def _take(self, conn: Connection) -> list[dict[str, Any]]:
        with translate_errors():
            conn.begin()
            rows = event_repo.take_due(
                conn,
                unconfirmed_after_s=self.delay_s,
                redrive_after_s=self.redrive_after_s,
                limit=self.batch_size,
            )
            return [dict(r) for r in rows]

    def _finish(self, conn: Connection, confirmed: list[str]) -> None:
        with translate_errors():
            event_repo.mark_republished(conn, confirmed)
            conn.commit()
