"""Purge runs: what each retention purge did, for the metrics of the processes that stay up.

Revision ID: 0006
Revises: 0005

Expands only: a new, small table (one row per run, the purge deletes rows older than 90 days).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from conversation_events.persistence.migration_columns import written_at

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "purge_runs",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        written_at("finished_at"),
        sa.Column("seconds", sa.Double, nullable=False),
        sa.Column("content_dropped", sa.Integer, nullable=False),
        sa.Column("events_deleted", sa.Integer, nullable=False),
        sa.Column("batches", sa.Integer, nullable=False),
    )
    op.create_index("ix_purge_runs_finished_at", "purge_runs", ["finished_at"])


def downgrade() -> None:
    op.drop_table("purge_runs")
