"""Events (the outbox and their results) and per-user friendship status.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from conversation_events.persistence.migration_columns import written_at

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversation_events",
        sa.Column("id", postgresql.UUID(as_uuid=False), primary_key=True),
        sa.Column("conversation_id", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("bot_id", sa.String(255), nullable=False),
        sa.Column("bot_name", sa.Text()),
        sa.Column("bot_type", sa.Text()),
        sa.Column("agent_tag", sa.Text()),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("conversation_log", postgresql.JSONB(), nullable=False),
        sa.Column("metadata", postgresql.JSONB()),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="PENDING"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("last_error", sa.Text()),
        written_at("created_at"),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("processed_at", sa.DateTime(timezone=True)),
        sa.Column("friendship_score_change", sa.Double()),
        sa.Column("new_friendship_level", sa.String(32)),
        sa.Column("score_calculation_details", postgresql.JSONB()),
        sa.Column("scoring_version", sa.Integer()),
        sa.UniqueConstraint("conversation_id", name="uq_conversation_events_conversation_id"),
        sa.CheckConstraint(
            "status IN ('PENDING', 'PROCESSING', 'PROCESSED', 'FAILED', 'SKIPPED')",
            name="ck_conversation_events_status",
        ),
        sa.CheckConstraint("end_time >= start_time", name="ck_conversation_events_time_order"),
    )
    op.create_index(
        "ix_conversation_events_unpublished",
        "conversation_events",
        ["created_at"],
        postgresql_where=sa.text("status = 'PENDING' AND published_at IS NULL"),
    )
    op.create_index(
        "ix_conversation_events_leases",
        "conversation_events",
        ["lease_until"],
        postgresql_where=sa.text("status = 'PROCESSING'"),
    )
    op.create_index(
        "ix_conversation_events_failed",
        "conversation_events",
        ["created_at"],
        postgresql_where=sa.text("status = 'FAILED'"),
    )
    op.create_index("ix_conversation_events_user", "conversation_events", ["user_id", "end_time"])
    op.create_table(
        "friendship_status",
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("friendship_score", sa.Double(), nullable=False, server_default=sa.text("0")),
        sa.Column("friendship_level", sa.String(32), nullable=False),
        sa.Column("streak_day", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("last_interaction_date", sa.Date()),
        sa.Column("last_interaction_at", sa.DateTime(timezone=True)),
        sa.Column("last_emotion", sa.String(16)),
        sa.Column(
            "topic_metrics",
            postgresql.JSONB(),
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
        written_at("updated_at"),
    )


def downgrade() -> None:
    op.drop_table("friendship_status")
    op.drop_table("conversation_events")
