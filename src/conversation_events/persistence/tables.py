"""Table definitions. The schema itself is owned by the Alembic migrations next to this file."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Double,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from conversation_events.access import DEFAULT_TENANT

metadata = MetaData()


class EventStatus(StrEnum):
    """Where an event is in its life: stored, being processed, or done one of three ways."""

    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    PROCESSED = "PROCESSED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


TERMINAL_STATUSES = (EventStatus.PROCESSED, EventStatus.SKIPPED, EventStatus.FAILED)

if TYPE_CHECKING:
    EventStatusValue = str
else:
    #: The values as a ``Literal``, for HTTP schemas that list them inline (OpenAPI, 422s).
    EventStatusValue = Literal[tuple(s.value for s in EventStatus)]

events = Table(
    "conversation_events",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    # Conversation and user ids are the client's, so they are unique only within a tenant.
    Column("tenant", String(63), nullable=False, server_default=DEFAULT_TENANT),
    Column("conversation_id", String(255), nullable=False),
    Column("user_id", String(255), nullable=False),
    Column("bot_id", String(255), nullable=False),
    Column("bot_name", Text),
    Column("bot_type", Text),
    Column("agent_tag", Text),
    Column("start_time", DateTime(timezone=True), nullable=False),
    Column("end_time", DateTime(timezone=True), nullable=False),
    # The content: NULL once dropped (CE_RETENTION_CONTENT_DAYS after processing), when
    # `content_purged_at` says so; the hash and the results stay.
    Column("conversation_log", JSONB),
    Column("metadata", JSONB),
    Column("content_purged_at", DateTime(timezone=True)),
    # sha256 of the canonical request: tells an idempotent re-send from a conflicting one.
    Column("content_hash", String(64), nullable=False),
    Column("status", String(16), nullable=False, server_default=EventStatus.PENDING.value),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    # Set when the broker confirmed the message; the relay republishes rows where it is NULL,
    # and any unfinished row whose last publish is older than its re-drive horizon.
    Column("published_at", DateTime(timezone=True)),
    # While PROCESSING: after this instant the relay may hand the event to another worker.
    Column("lease_until", DateTime(timezone=True)),
    # A retry's earliest instant: the relay republishes a failed attempt's event after it.
    Column("not_before", DateTime(timezone=True)),
    Column("processed_at", DateTime(timezone=True)),
    # W3C trace context (`traceparent`, `tracestate`) of the request that accepted the event,
    # carried by every publish of it; NULL when tracing was off.
    Column("trace_context", JSONB),
    Column("friendship_score_change", Double),
    Column("new_friendship_level", String(32)),
    Column("score_calculation_details", JSONB),
    Column("scoring_version", Integer),
    UniqueConstraint(
        "tenant", "conversation_id", name="uq_conversation_events_tenant_conversation_id"
    ),
    CheckConstraint(
        "status IN ('PENDING', 'PROCESSING', 'PROCESSED', 'FAILED', 'SKIPPED')",
        name="ck_conversation_events_status",
    ),
    CheckConstraint("end_time >= start_time", name="ck_conversation_events_time_order"),
    Index(
        "ix_conversation_events_unfinished",
        "created_at",
        postgresql_where=text("status IN ('PENDING', 'PROCESSING')"),
    ),
    Index(
        "ix_conversation_events_leases",
        "lease_until",
        postgresql_where=text("status = 'PROCESSING'"),
    ),
    Index(
        "ix_conversation_events_failed",
        "created_at",
        postgresql_where=text("status = 'FAILED'"),
    ),
    Index("ix_conversation_events_tenant_user", "tenant", "user_id", "end_time"),
    # The retention purge: finished events whose content is still kept, and finished events.
    Index(
        "ix_conversation_events_content_kept",
        "processed_at",
        postgresql_where=text(
            "status IN ('PROCESSED', 'SKIPPED') AND conversation_log IS NOT NULL"
        ),
    ),
    Index(
        "ix_conversation_events_finished",
        "processed_at",
        postgresql_where=text("status IN ('PROCESSED', 'SKIPPED')"),
    ),
)

# Rewritten by every event of the user: pages keep a fifth free for that (migration 0008).
friendship_status = Table(
    "friendship_status",
    metadata,
    Column("tenant", String(63), primary_key=True, server_default=DEFAULT_TENANT),
    Column("user_id", String(255), primary_key=True),
    Column("friendship_score", Double, nullable=False, server_default=text("0")),
    Column("friendship_level", String(32), nullable=False),
    Column("streak_day", Integer, nullable=False, server_default=text("0")),
    Column("last_interaction_date", Date),
    Column("last_interaction_at", DateTime(timezone=True)),
    Column("last_emotion", String(16)),
    # Empty since migration 0007 (topics are rows of `topic_metrics`), except where a worker of
    # the release before wrote during the rollout: the next worker adds that to the rows.
    Column("topic_metrics", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)

# One row per topic of a user: an event reads and writes only its own topic's row (with a fifth
# of each page free, as `friendship_status`). The topic's level is not stored: it follows from
# `score` and the user's level (`domain.topic_level`).
topic_metrics = Table(
    "topic_metrics",
    metadata,
    Column("tenant", String(63), primary_key=True),
    Column("user_id", String(255), primary_key=True),
    Column("topic", Text, primary_key=True),
    Column("score", Double, nullable=False, server_default=text("0")),
    Column("turns", Integer, nullable=False, server_default=text("0")),
    Column("last_date", Date),
    Column("agents_used", ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    ForeignKeyConstraint(
        ["tenant", "user_id"],
        ["friendship_status.tenant", "friendship_status.user_id"],
        name="fk_topic_metrics_status",
        ondelete="CASCADE",
    ),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    # What logs and metrics carry instead of the key; unique among a tenant's live keys.
    Column("name", String(100), nullable=False),
    Column("tenant", String(63), nullable=False),
    Column("scopes", ARRAY(String(16)), nullable=False),
    # sha256 (hex) of the key: the key itself is shown once, at creation, and never stored.
    Column("key_hash", String(64), nullable=False),
    # The key's first characters, so an operator can tell which key a leaked one is.
    Column("key_prefix", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("revoked_at", DateTime(timezone=True)),
    UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    Index(
        "uq_api_keys_live_name",
        "tenant",
        "name",
        unique=True,
        postgresql_where=text("revoked_at IS NULL"),
    ),
)

# Erased users: a re-sent old conversation or a late message must not bring one back. Only a
# pseudonymous digest of (tenant, user id) is kept (`access.subject_hash`), not the id.
user_erasures = Table(
    "user_erasures",
    metadata,
    Column("subject", String(64), primary_key=True),
    Column("erased_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)

# One row per retention purge run (a short-lived CronJob pod): the API processes read the last
# one for their metrics. No ids, no content; rows older than 90 days are deleted by the purge.
purge_runs = Table(
    "purge_runs",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("finished_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("seconds", Double, nullable=False),
    Column("content_dropped", Integer, nullable=False),
    Column("events_deleted", Integer, nullable=False),
    Column("batches", Integer, nullable=False),
    Index("ix_purge_runs_finished_at", "finished_at"),
)
