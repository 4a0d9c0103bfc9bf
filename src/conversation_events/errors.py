"""The project's error tree.

Client-library exceptions (SQLAlchemy, pika, aio-pika, kubernetes) are translated into these at
the edge, so callers decide on one question only: can this succeed if tried again later?
"""


class ConversationEventsError(Exception):
    """Base of every error this project raises on purpose."""


class RetryableError(ConversationEventsError):
    """Transient: the same operation may succeed later (database or broker unreachable, timeout)."""


class PermanentError(ConversationEventsError):
    """Will fail again however often it is retried (unknown event, corrupt row, bad data)."""


class DatabaseUnavailable(RetryableError):
    """PostgreSQL could not be reached or dropped the connection."""


class BrokerUnavailable(RetryableError):
    """RabbitMQ could not be reached, dropped the connection, or did not confirm a publish."""


class EventNotFound(PermanentError):
    """A message names an event that is not in the database."""


class ConflictingEvent(ConversationEventsError):
    """The conversation id is already stored with different content."""

    def __init__(self, conversation_id: str, event_id: str) -> None:
        super().__init__(f"conversation {conversation_id!r} already exists with other content")
        self.conversation_id = conversation_id
        self.event_id = event_id
