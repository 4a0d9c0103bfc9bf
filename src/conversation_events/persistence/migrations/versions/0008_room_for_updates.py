"""Room on each page for the rows that every event rewrites: `friendship_status`, `topic_metrics`.

Revision ID: 0008
Revises: 0007

Every processed event rewrites its user's status row and its topic's row. With pages packed
full (the default fill factor, 100), the new version of a row never fits beside the old one:
PostgreSQL writes it to another page and adds an entry for it to every index of the table. A
fill factor of 80 leaves a fifth of each page free, so the rewrite stays on its page as a
heap-only tuple (no index entry, the old version pruned in place): the status and topic
updates no longer grow or touch the primary keys, which are the largest part of these tables
once users number in the hundreds of thousands.

Changes storage settings only, with a brief lock of each table and no rewrite: pages written
from now on keep the room; existing full pages gain it as their rows move out.
Downgrade: back to PostgreSQL's default.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

#: Percent of each page that inserts fill; the rest is kept for updated versions of its rows.
FILL_FACTOR = 80
TABLES = ("friendship_status", "topic_metrics")


def upgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {FILL_FACTOR})")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
