"""The retention purge: drop finished events' content, then delete old finished events.

Each call handles at most `limit` rows in the caller's transaction, taking only rows nobody
holds (`SKIP LOCKED`): a worker or relay never waits for the purge, and the purge never waits
for them (a skipped row is purged by a later pass). Unfinished (`PENDING`, `PROCESSING`) and
`FAILED` events are never touched: their content is needed until they are resolved.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection, RowMapping, func, text

from conversation_events.persistence.tables import purge_runs

_DROP_CONTENT = text(
    """
    UPDATE conversation_events
    SET conversation_log = NULL, metadata = NULL, content_purged_at = now()
    WHERE id IN (
        SELECT id FROM conversation_events
        WHERE status IN ('PROCESSED', 'SKIPPED') AND conversation_log IS NOT NULL
          AND processed_at < now() - make_interval(days => :days)
        ORDER BY processed_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    """
)
_DELETE_EVENTS = text(
    """
    DELETE FROM conversation_events
    WHERE id IN (
        SELECT id FROM conversation_events
        WHERE status IN ('PROCESSED', 'SKIPPED')
          AND processed_at < now() - make_interval(days => :days)
        ORDER BY processed_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    """
)


def drop_content(conn: Connection, older_than_days: int, limit: int) -> int:
    """Drop the log and metadata of up to `limit` events finished `older_than_days` ago."""
    return int(conn.execute(_DROP_CONTENT, {"days": older_than_days, "limit": limit}).rowcount)


def delete_events(conn: Connection, older_than_days: int, limit: int) -> int:
    """Delete up to `limit` events finished `older_than_days` ago."""
    return int(conn.execute(_DELETE_EVENTS, {"days": older_than_days, "limit": limit}).rowcount)


#: How long the record of a purge run is kept.
RUNS_KEPT_DAYS = 90


def record_run(
    conn: Connection, *, seconds: float, content_dropped: int, events_deleted: int, batches: int
) -> None:
    """Record a finished purge run (and forget runs older than RUNS_KEPT_DAYS)."""
    conn.execute(
        purge_runs.insert().values(
            seconds=seconds,
            content_dropped=content_dropped,
            events_deleted=events_deleted,
            batches=batches,
        )
    )
    conn.execute(
        purge_runs.delete().where(
            purge_runs.c.finished_at < func.now() - timedelta(days=RUNS_KEPT_DAYS)
        )
    )


def last_run(conn: Connection) -> RowMapping | None:
    """The latest recorded purge run (finished_at, seconds, counts), or None before the first."""
    return (
        conn.execute(purge_runs.select().order_by(purge_runs.c.finished_at.desc()).limit(1))
        .mappings()
        .first()
    )
