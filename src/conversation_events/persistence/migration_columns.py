"""Column definitions that several migrations write alike.

Applied migrations call these, so what one emits must never change: a fresh database would get
another schema than an upgraded one. `tables.py` does not use them, on purpose: the migration
checks (`scripts/lint`, `tests/integration/test_migrations.py`) compare the migrated schema with
it, and so catch such a change.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa


def written_at(name: str) -> sa.Column[datetime]:
    """``<name> timestamptz NOT NULL DEFAULT now()``: when the row was written."""
    return sa.Column(
        name, sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
    )
