"""What the publisher's recorded confirms change in the outbox, against a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text
from tests.support.payloads import conversation
from tests.support.pipeline import store

from conversation_events.persistence.events import (
    claim_many,
    mark_published,
    record_failure,
    take_due,
)


@pytest.fixture
def new_event(engine: Engine) -> Iterator[Callable[[], str]]:
    """Stores a conversation's event; deleted afterwards, so that no API test's relay finds it
    unpublished in the session's database and republishes it to that test's queue."""
    ids: list[str] = []

    def create() -> str:
        ids.append(store(engine, conversation()))
        return ids[-1]

    yield create
    with engine.begin() as conn:
        conn.execute(
            text("DELETE FROM conversation_events WHERE id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": ids},
        )


def row(engine: Engine, event_id: str) -> dict[str, Any]:
    """The event's status, `published_at` and row version (`xmin` changes with every write)."""
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT status, published_at, xmin::text AS version FROM conversation_events "
                "WHERE id = :id"
            ),
            {"id": event_id},
        ).one()
    return dict(found._mapping)


def test_a_confirm_recorded_after_the_worker_claimed_the_event_rewrites_nothing(
    engine: Engine, new_event: Callable[[], str]
) -> None:
    event_id = new_event()
    with engine.begin() as conn:
        claim_many(conn, [event_id], lease_s=60)
    claimed = row(engine, event_id)
    assert claimed["status"] == "PROCESSING"
    assert claimed["published_at"] is not None  # its message reached a worker

    with engine.begin() as conn:
        mark_published(conn, [event_id])  # the publisher's confirm, recorded late

    assert row(engine, event_id) == claimed  # the same row version: nothing written


def test_a_confirm_recorded_late_leaves_the_first_publish_marked(
    engine: Engine, new_event: Callable[[], str]
) -> None:
    event_id = new_event()
    assert row(engine, event_id)["published_at"] is None
    with engine.begin() as conn:
        mark_published(conn, [event_id])
    marked = row(engine, event_id)
    assert marked["published_at"] is not None

    with engine.begin() as conn:
        claim_many(conn, [event_id], lease_s=60)
    assert row(engine, event_id)["published_at"] == marked["published_at"]  # kept, not restamped


def test_a_late_confirm_does_not_hide_a_retry_from_the_relay(
    engine: Engine, new_event: Callable[[], str]
) -> None:
    """The worker failed the event before the publisher recorded its first confirm: the retry
    goes back to PENDING unpublished, and that stale confirm must not mark it published (the
    relay would then wait a whole re-drive horizon instead of the retry's delay)."""
    event_id = new_event()
    with engine.begin() as conn:
        claim_many(conn, [event_id], lease_s=60)
        record_failure(
            conn, event_id, "scoring timed out", permanent=False, max_attempts=5, retry_in_s=0
        )

    with engine.begin() as conn:
        mark_published(conn, [event_id])

    assert row(engine, event_id)["published_at"] is None
    with engine.begin() as conn:
        due = take_due(conn, unconfirmed_after_s=0, redrive_after_s=3600, limit=10_000)
    assert event_id in {str(r["id"]) for r in due}
