"""Tenants and API keys: conversation and user ids are unique within their tenant.

Revision ID: 0003
Revises: 0002

Every existing row belongs to the `default` tenant (the column's default), which the bootstrap
keys from `CE_API_KEYS` act in, so a single-client deployment keeps working unchanged.

Not rolling-compatible with the release before: its inserts name the old unique keys
(`ON CONFLICT (conversation_id)`, `ON CONFLICT (user_id)`), which this migration replaces, so
they fail until its pods are replaced. See docs/operations.md ("Upgrading to tenants").
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from conversation_events.persistence.migration_columns import written_at

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "conversation_events",
        sa.Column("tenant", sa.String(63), nullable=False, server_default="default"),
    )
    op.create_unique_constraint(
        "uq_conversation_events_tenant_conversation_id",
        "conversation_events",
        ["tenant", "conversation_id"],
    )
    op.drop_constraint(
        "uq_conversation_events_conversation_id", "conversation_events", type_="unique"
    )
    op.create_index(
        "ix_conversation_events_tenant_user",
        "conversation_events",
        ["tenant", "user_id", "end_time"],
    )
    op.drop_index("ix_conversation_events_user", table_name="conversation_events")

    op.add_column(
        "friendship_status",
        sa.Column("tenant", sa.String(63), nullable=False, server_default="default"),
    )
    op.drop_constraint("friendship_status_pkey", "friendship_status", type_="primary")
    op.create_primary_key("friendship_status_pkey", "friendship_status", ["tenant", "user_id"])

    op.create_table(
        "api_keys",
        sa.Column("id", postgresql.UUID(as_uuid=False), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.String(16)), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("key_prefix", sa.String(16), nullable=False),
        written_at("created_at"),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_index(
        "uq_api_keys_live_name",
        "api_keys",
        ["tenant", "name"],
        unique=True,
        postgresql_where=sa.text("revoked_at IS NULL"),
    )


def downgrade() -> None:
    # Fails, as it should, once two tenants share a conversation id or a user id.
    op.drop_table("api_keys")
    op.drop_constraint("friendship_status_pkey", "friendship_status", type_="primary")
    op.create_primary_key("friendship_status_pkey", "friendship_status", ["user_id"])
    op.drop_column("friendship_status", "tenant")
    op.create_index("ix_conversation_events_user", "conversation_events", ["user_id", "end_time"])
    op.drop_index("ix_conversation_events_tenant_user", table_name="conversation_events")
    op.create_unique_constraint(
        "uq_conversation_events_conversation_id", "conversation_events", ["conversation_id"]
    )
    op.drop_constraint(
        "uq_conversation_events_tenant_conversation_id", "conversation_events", type_="unique"
    )
    op.drop_column("conversation_events", "tenant")
