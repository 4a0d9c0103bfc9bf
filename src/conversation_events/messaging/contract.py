"""The message body: ids only. The database is the source of truth for the conversation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from conversation_events.errors import PermanentError

CONTENT_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class EventMessage:
    event_id: str
    conversation_id: str
    user_id: str
    bot_id: str
    enqueued_at: datetime

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "event_id": self.event_id,
                "conversation_id": self.conversation_id,
                "user_id": self.user_id,
                "bot_id": self.bot_id,
                "enqueued_at": self.enqueued_at.isoformat(),
            }
        )

    @classmethod
    def from_bytes(cls, body: bytes) -> EventMessage:
        """Parse a message body; anything malformed is a permanent error (dead-letter it)."""
        try:
            data: dict[str, Any] = orjson.loads(body)
            return cls(
                event_id=str(data["event_id"]),
                conversation_id=str(data["conversation_id"]),
                user_id=str(data["user_id"]),
                bot_id=str(data["bot_id"]),
                enqueued_at=datetime.fromisoformat(data["enqueued_at"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise PermanentError(f"malformed message body: {exc}") from exc

    @classmethod
    def now(cls, event_id: str, conversation_id: str, user_id: str, bot_id: str) -> EventMessage:
        return cls(event_id, conversation_id, user_id, bot_id, datetime.now(UTC))
