"""Structured JSON logging with request and event ids carried in context variables.

With tracing on, a record written inside a span also names it (`trace_id`, `span_id`).
"""

from __future__ import annotations

import contextvars
import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from conversation_events import telemetry

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
event_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("event_id", default=None)
#: The name of the API key a request acts with (never the key itself).
key_name: contextvars.ContextVar[str | None] = contextvars.ContextVar("key_name", default=None)

_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context ids and `extra=` fields."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, var in (("request_id", request_id), ("event_id", event_id), ("key", key_name)):
            value = var.get()
            if value is not None:
                payload[key] = value
        ids = telemetry.current_ids()
        if ids is not None:
            payload["trace_id"], payload["span_id"] = ids
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(payload, default=str).decode()


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record to stderr as JSON; idempotent."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Client libraries log every reconnect attempt at INFO/WARNING with stack traces; our own
    # code logs those events once, with context.
    for noisy in ("pika", "aio_pika", "aiormq", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
