"""The scaler's second input: events stored in PostgreSQL and not yet in the queue.

Every accepted event is committed first and published after; while the publishers keep up
that gap is a few milliseconds of events, but an API short of CPU, a broker refusing
publishes or a relay catching up after an outage leave the waiting work in the database,
where the queue's depth does not show it. :class:`WithOutbox` adds that count to each queue
observation, so the workers are scaled for the work that is about to arrive too.

The count runs in a read-only transaction on a pool of one connection, bounded by the
engine's statement timeout and deadline. When it fails the queue observation is used alone
(counted in ``outbox_errors``): the database being unreachable must not blind the scaler to
the queue, which the workers can still drain.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Protocol

from prometheus_client import Counter
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from conversation_events.persistence.events import count_unpublished
from conversation_events_scaler.decision import Observation

log = logging.getLogger(__name__)


class QueueSource(Protocol):
    def read(self) -> Observation: ...

    def close(self) -> None: ...


class WithOutbox:
    """A queue source whose observations also carry the unpublished events (``unpublished``).

    ``limit`` bounds the count: past ``max_replicas × target_per_replica`` the decision is the
    maximum anyway, so counting further would only cost the database more.
    """

    def __init__(
        self, queue: QueueSource, engine: Engine, *, limit: int, errors: Counter | None = None
    ) -> None:
        self.queue = queue
        self._engine = engine
        self._limit = max(1, limit)
        self._errors = errors
        self._failing = False

    def read(self) -> Observation:
        """The queue's observation (its failures propagate) with the outbox count, when the
        database answers."""
        observation = self.queue.read()
        try:
            with self._engine.connect().execution_options(postgresql_readonly=True) as conn:
                unpublished = count_unpublished(conn, self._limit)
        except SQLAlchemyError as exc:
            if self._errors is not None:
                self._errors.inc()
            if not self._failing:
                log.warning(
                    "could not count the unpublished events; scaling on the queue alone",
                    extra={"error": str(exc).splitlines()[0][:200]},
                )
            self._failing = True
            return observation
        if self._failing:
            log.info("counting the unpublished events again", extra={"unpublished": unpublished})
        self._failing = False
        return replace(observation, unpublished=unpublished)

    def close(self) -> None:
        self.queue.close()
        self._engine.dispose()
