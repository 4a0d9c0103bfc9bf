"""The message body: ids only. The database is the source of truth for the conversation.

The body is versioned (`version`, major.minor) and typed (the AMQP `type` property,
`MESSAGE_TYPE`); docs/asyncapi.yaml describes it. A minor version only adds optional fields:
readers ignore fields they do not know. A major version is a breaking change: a reader
refuses a major it does not read, as a permanent error (the worker dead-letters it), rather
than guessing. A body without `version` is 1.0 (written before the field existed).

1.1 added `tenant`, the tenant the conversation and user ids belong to; a body without it
(1.0) belongs to the default tenant.

The trace context travels beside the body, as the AMQP headers `traceparent` and `tracestate`
(W3C Trace Context): every publish of an event carries the context the event was accepted
under, which the outbox row keeps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from conversation_events.access import DEFAULT_TENANT
from conversation_events.errors import PermanentError

CONTENT_TYPE = "application/json"
#: The AMQP `type` property of every event message.
MESSAGE_TYPE = "conversation_events.event_accepted"
#: The version this code writes; it reads every 1.x.
SCHEMA_VERSION = "1.1"
_READS_MAJOR = 1
#: The AMQP headers that carry an event's trace context.
TRACE_HEADERS = ("traceparent", "tracestate")


@dataclass(frozen=True, slots=True)
class EventMessage:
    event_id: str
    conversation_id: str
    user_id: str
    bot_id: str
    enqueued_at: datetime
    tenant: str = DEFAULT_TENANT
    #: W3C trace context headers of the event (not part of the body); None when untraced.
    trace_context: Mapping[str, str] | None = None

    def headers(self) -> dict[str, Any] | None:
        """The AMQP headers of the message: its trace context, when it has one."""
        if not self.trace_context:
            return None
        return {k: v for k, v in self.trace_context.items() if k in TRACE_HEADERS}

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "version": SCHEMA_VERSION,
                "event_id": self.event_id,
                "tenant": self.tenant,
                "conversation_id": self.conversation_id,
                "user_id": self.user_id,
                "bot_id": self.bot_id,
                "enqueued_at": self.enqueued_at.isoformat(),
            }
        )

    @classmethod
    def from_bytes(cls, body: bytes) -> EventMessage:
        """Parse a message body; malformed or of an unknown major version: `PermanentError`."""
        try:
            data: dict[str, Any] = orjson.loads(body)
            if not isinstance(data, dict):
                raise TypeError(f"a JSON object is expected, not {type(data).__name__}")
            version = str(data.get("version", "1.0"))
            major = version.split(".", 1)[0]
            if major != str(_READS_MAJOR):
                raise PermanentError(
                    f"message version {version[:20]!r} is not supported: this worker reads "
                    f"{_READS_MAJOR}.x"
                )
            return cls(
                event_id=str(data["event_id"]),
                conversation_id=str(data["conversation_id"]),
                user_id=str(data["user_id"]),
                bot_id=str(data["bot_id"]),
                enqueued_at=datetime.fromisoformat(data["enqueued_at"]),
                tenant=str(data.get("tenant", DEFAULT_TENANT)),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise PermanentError(f"malformed message body: {exc}") from exc

    @classmethod
    def now(
        cls,
        event_id: str,
        conversation_id: str,
        user_id: str,
        bot_id: str,
        *,
        tenant: str = DEFAULT_TENANT,
        trace_context: Mapping[str, str] | None = None,
    ) -> EventMessage:
        return cls(
            event_id, conversation_id, user_id, bot_id, datetime.now(UTC), tenant, trace_context
        )

    @classmethod
    def announcing(cls, row: Mapping[Any, Any]) -> EventMessage:
        """The message for a stored event (a ``conversation_events`` row), stamped now, with
        the trace context the event was accepted under."""
        return cls.now(
            str(row["id"]),
            row["conversation_id"],
            row["user_id"],
            row["bot_id"],
            tenant=row["tenant"],
            trace_context=row.get("trace_context"),
        )
