"""What the baselines share with each other and our API: the database engine and the row."""

from __future__ import annotations

import os
import uuid

from sqlalchemy.engine import Engine

from conversation_events.persistence.db import make_engine
from conversation_events.persistence.events import NewEvent, content_hash
from conversation_events_api.schemas import ConversationEndRequest


def new_event(request: ConversationEndRequest) -> NewEvent:
    """The event row for `request`, with a fresh id and the content hash of its canonical form."""
    canonical = request.canonical()
    return NewEvent(
        id=str(uuid.uuid4()),
        conversation_id=request.conversation_id,
        user_id=request.user_id,
        bot_id=request.bot_id,
        bot_name=request.bot_name,
        bot_type=request.bot_type,
        agent_tag=request.agent_tag,
        start_time=request.start_time,
        end_time=request.end_time,
        conversation_log=canonical["conversation_log"],
        metadata=canonical["metadata"],
        content_hash=content_hash(canonical),
    )


def engine(application_name: str, pool_size: int) -> Engine:
    """An engine on `BENCH_DATABASE_URL` with our processes' connect and statement timeouts."""
    return make_engine(
        os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1/postgres"),
        pool_size=pool_size,
        connect_timeout_s=3,
        statement_timeout_ms=10_000,
        application_name=application_name,
    )
