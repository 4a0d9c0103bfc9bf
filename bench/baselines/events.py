"""The row the baselines store for a request: the same one our API stores."""

from __future__ import annotations

import uuid

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
