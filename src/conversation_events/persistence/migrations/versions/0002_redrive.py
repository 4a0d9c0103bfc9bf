"""Re-drive by age: a not-before instant for retries, one index over unfinished events.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _index_by_age(name: str, where: str) -> None:
    """A partial index of the events matching `where`, oldest first."""
    op.create_index(name, "conversation_events", ["created_at"], postgresql_where=sa.text(where))


def upgrade() -> None:
    # A retried event waits in PostgreSQL, not on a worker thread: the relay republishes it
    # once this instant has passed.
    op.add_column(
        "conversation_events", sa.Column("not_before", sa.DateTime(timezone=True), nullable=True)
    )
    # Serves the relay (unconfirmed, or published long ago and still not started) and the
    # oldest-unfinished gauge; replaces the index of never-confirmed rows only.
    _index_by_age("ix_conversation_events_unfinished", "status IN ('PENDING', 'PROCESSING')")
    op.drop_index("ix_conversation_events_unpublished", table_name="conversation_events")


def downgrade() -> None:
    _index_by_age(
        "ix_conversation_events_unpublished", "status = 'PENDING' AND published_at IS NULL"
    )
    op.drop_index("ix_conversation_events_unfinished", table_name="conversation_events")
    op.drop_column("conversation_events", "not_before")
