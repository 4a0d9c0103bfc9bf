"""Topic metrics in rows of their own: one per (tenant, user, topic).

Revision ID: 0007
Revises: 0006

Before, a user's topics were one JSON document in `friendship_status.topic_metrics`, read,
parsed, re-levelled and rewritten whole by every event: a user with 1,000 topics paid for
1,000 topics per conversation. Now an event reads and writes only its own topic's row, and a
topic's level is computed when the status is read (it follows from the topic's score and the
user's level, so it is not stored).

Upgrade: creates `topic_metrics`, copies every topic out of the documents (under a share lock
of `friendship_status`, so no worker changes a document meanwhile) and empties them. The
column stays (dropped one release later): a worker of the previous release that still runs
during the rollout writes its topics there again, starting from an empty document, and a
worker of this release adds such a document to the rows the next time it processes that user
(`persistence/friendship.py`).

Downgrade: writes every user's topics back into the document, with levels, and drops the table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from conversation_events.persistence.migration_columns import written_at

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Tolerant like `TopicMetrics.from_json`: a malformed field takes its default.
_COPY = """
    INSERT INTO topic_metrics (tenant, user_id, topic, score, turns, last_date, agents_used)
    SELECT f.tenant, f.user_id, t.key,
        CASE WHEN jsonb_typeof(t.value -> 'score') = 'number'
            THEN greatest((t.value ->> 'score')::double precision, 0) ELSE 0 END,
        CASE WHEN (t.value ->> 'turns') ~ '^[0-9]{1,9}$' THEN (t.value ->> 'turns')::integer
            ELSE 0 END,
        CASE WHEN (t.value ->> 'last_date') ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}'
            THEN left(t.value ->> 'last_date', 10)::date END,
        CASE WHEN jsonb_typeof(t.value -> 'agents_used') = 'array' THEN ARRAY(
            SELECT DISTINCT a.value #>> '{}'
            FROM jsonb_array_elements(t.value -> 'agents_used') AS a
            WHERE jsonb_typeof(a.value) = 'string' ORDER BY 1) ELSE '{}' END
    FROM friendship_status AS f, jsonb_each(f.topic_metrics) AS t
    WHERE jsonb_typeof(f.topic_metrics) = 'object'
"""

# The levels of SPEC section 4, as `domain.friendship.topic_level` computes them.
_BACK = """
    UPDATE friendship_status AS f SET topic_metrics = d.doc
    FROM (
        SELECT t.tenant, t.user_id, jsonb_object_agg(t.topic, jsonb_build_object(
            'score', t.score, 'turns', t.turns, 'last_date', t.last_date,
            'agents_used', to_jsonb(t.agents_used),
            'friendship_level', CASE
                WHEN t.score >= 150 AND s.friendship_level = 'PHASE3_FRIEND' THEN 'PHASE3_FRIEND'
                WHEN t.score >= 50 AND s.friendship_level <> 'PHASE1_STRANGER'
                    THEN 'PHASE2_ACQUAINTANCE'
                ELSE 'PHASE1_STRANGER' END)) AS doc
        FROM topic_metrics AS t
        JOIN friendship_status AS s USING (tenant, user_id)
        GROUP BY t.tenant, t.user_id
    ) AS d
    WHERE f.tenant = d.tenant AND f.user_id = d.user_id
"""


def upgrade() -> None:
    op.create_table(
        "topic_metrics",
        sa.Column("tenant", sa.String(63), primary_key=True),
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("score", sa.Double, nullable=False, server_default=sa.text("0")),
        sa.Column("turns", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("last_date", sa.Date),
        sa.Column(
            "agents_used",
            sa.ARRAY(sa.Text),
            nullable=False,
            server_default=sa.text("'{}'::text[]"),
        ),
        written_at("updated_at"),
        sa.ForeignKeyConstraint(
            ["tenant", "user_id"],
            ["friendship_status.tenant", "friendship_status.user_id"],
            name="fk_topic_metrics_status",
            ondelete="CASCADE",
        ),
    )
    op.execute("LOCK TABLE friendship_status IN SHARE ROW EXCLUSIVE MODE")
    op.execute(_COPY)
    op.execute("UPDATE friendship_status SET topic_metrics = '{}' WHERE topic_metrics <> '{}'")


def downgrade() -> None:
    op.execute("LOCK TABLE friendship_status IN SHARE ROW EXCLUSIVE MODE")
    op.execute(_BACK)
    op.drop_table("topic_metrics")
