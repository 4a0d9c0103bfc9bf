"""What the single and the batch accept routes share beyond the request model and the writer:
the limit on a conversation's messages, and announcing a stored event."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conversation_events.messaging.contract import EventMessage
from conversation_events.persistence.events import NewEvent
from conversation_events_api.publisher import Publisher
from conversation_events_api.schemas import ConversationEndRequest


def too_many_messages(
    payload: ConversationEndRequest, limit: int, loc: Sequence[str | int] = ("body",)
) -> list[dict[str, Any]] | None:
    """The field error of a conversation with more than `limit` messages (at `loc`), or None."""
    if len(payload.conversation_log) <= limit:
        return None
    return [
        {
            "loc": [*loc, "conversation_log"],
            "msg": f"at most {limit} messages",
            "type": "too_long",
        }
    ]


def announce(publisher: Publisher, event: NewEvent) -> None:
    """Queue the message of a newly stored event for publishing (never blocks)."""
    publisher.submit(
        EventMessage.now(
            event.id,
            event.conversation_id,
            event.user_id,
            event.bot_id,
            tenant=event.tenant,
            trace_context=event.trace_context,
        )
    )
