"""The retention purge: drop finished events' content, then delete old finished events.

Each call handles at most `limit` rows in the caller's transaction, taking only rows nobody
holds (`SKIP LOCKED`): a worker or relay never waits for the purge, and the purge never waits
for them (a skipped row is purged by a later pass). Unfinished (`PENDING`, `PROCESSING`) and
`FAILED` events are never touched: their content is needed until they are resolved.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

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
