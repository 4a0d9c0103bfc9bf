"""What the baselines share: the database engine (the row is the API's own, `to_event`)."""

from __future__ import annotations

import os

from sqlalchemy.engine import Engine

from conversation_events.persistence.db import make_engine


def engine(application_name: str, pool_size: int) -> Engine:
    """An engine on `BENCH_DATABASE_URL` with our processes' connect and statement timeouts."""
    return make_engine(
        os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1/postgres"),
        pool_size=pool_size,
        connect_timeout_s=3,
        statement_timeout_ms=10_000,
        application_name=application_name,
    )
