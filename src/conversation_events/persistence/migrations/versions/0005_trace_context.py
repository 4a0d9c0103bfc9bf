"""The trace context an event was accepted under, so every publish of it can carry it.

Revision ID: 0005
Revises: 0004

Expands only: one nullable column, which the previous release neither reads nor writes (its
rows keep NULL: their messages carry no trace context). Adding a nullable column without a
default changes only the catalogue: no table rewrite, the write lock is held for an instant.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("conversation_events", sa.Column("trace_context", JSONB, nullable=True))


def downgrade() -> None:
    op.drop_column("conversation_events", "trace_context")
