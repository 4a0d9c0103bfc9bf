"""Retention and erasure: content can be dropped, erased users leave a pseudonymous tombstone.

Revision ID: 0004
Revises: 0003

Expands only: a nullable column, a constraint relaxed (`conversation_log` may be NULL once
its content is dropped), two partial indexes for the purge, a new table. The indexes are built
inside the migration's transaction, which blocks writes to the table while they build: on a
large table, create them beforehand with `CREATE INDEX CONCURRENTLY` under the same names
(`--sql 0003:0004` prints them); this migration then skips them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from conversation_events.persistence.migration_columns import written_at

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_FINISHED = "status IN ('PROCESSED', 'SKIPPED')"


def upgrade() -> None:
    op.alter_column("conversation_events", "conversation_log", nullable=True)
    op.add_column(
        "conversation_events",
        sa.Column("content_purged_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_conversation_events_content_kept",
        "conversation_events",
        ["processed_at"],
        postgresql_where=sa.text(f"{_FINISHED} AND conversation_log IS NOT NULL"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_conversation_events_finished",
        "conversation_events",
        ["processed_at"],
        postgresql_where=sa.text(_FINISHED),
        if_not_exists=True,
    )
    op.create_table(
        "user_erasures",
        sa.Column("subject", sa.String(64), primary_key=True),
        written_at("erased_at"),
    )


def downgrade() -> None:
    op.drop_table("user_erasures")
    op.drop_index("ix_conversation_events_finished", table_name="conversation_events")
    op.drop_index("ix_conversation_events_content_kept", table_name="conversation_events")
    op.drop_column("conversation_events", "content_purged_at")
    # Rows whose content was dropped get an empty log back: NOT NULL holds again.
    op.execute(
        "UPDATE conversation_events SET conversation_log = '[]'::jsonb"
        " WHERE conversation_log IS NULL"
    )
    op.alter_column("conversation_events", "conversation_log", nullable=False)
