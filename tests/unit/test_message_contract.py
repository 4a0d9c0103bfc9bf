"""The AMQP message contract: what a writer sends, what a reader accepts and refuses."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import yaml

from conversation_events.access import DEFAULT_TENANT
from conversation_events.errors import PermanentError
from conversation_events.messaging.contract import MESSAGE_TYPE, SCHEMA_VERSION, EventMessage

ASYNCAPI = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
MESSAGE = EventMessage("e-1", "c-1", "u-1", "pika", datetime(2026, 12, 1, 9, 30, tzinfo=UTC))


def body(**changes: object) -> bytes:
    data = orjson.loads(MESSAGE.to_bytes())
    data.update(changes)
    return orjson.dumps({k: v for k, v in data.items() if v is not None})


def test_a_message_round_trips_with_its_version() -> None:
    assert orjson.loads(MESSAGE.to_bytes())["version"] == SCHEMA_VERSION == "1.1"
    assert EventMessage.from_bytes(MESSAGE.to_bytes()) == MESSAGE


def test_a_later_minor_version_with_unknown_fields_is_read() -> None:
    later = body(version="1.7", priority="high", trace={"id": 1})
    assert EventMessage.from_bytes(later) == MESSAGE


def test_a_message_written_before_the_version_field_is_1_0() -> None:
    assert EventMessage.from_bytes(body(version=None)) == MESSAGE


def test_a_1_0_message_without_a_tenant_is_the_default_tenant() -> None:
    acme = EventMessage.now("e-1", "c-1", "u-1", "pika", tenant="acme")
    assert EventMessage.from_bytes(acme.to_bytes()).tenant == "acme"
    assert EventMessage.from_bytes(body(version="1.0", tenant=None)).tenant == "default"


@pytest.mark.parametrize("version", ["2.0", "0.9", "10.1", "", "x"])
def test_an_unknown_major_version_is_refused_with_a_clear_error(version: str) -> None:
    with pytest.raises(PermanentError, match=re.escape("is not supported: this worker reads 1.x")):
        EventMessage.from_bytes(body(version=version))


@pytest.mark.parametrize(
    "raw", [b"garbage", b"[]", b'"text"', b'{"version": "1.0"}', b'{"event_id": 1}']
)
def test_malformed_bodies_are_permanent_errors(raw: bytes) -> None:
    with pytest.raises(PermanentError):
        EventMessage.from_bytes(raw)


def test_the_asyncapi_document_describes_the_message_as_written() -> None:
    doc = yaml.safe_load(ASYNCAPI.read_text())
    message = doc["components"]["messages"]["EventAccepted"]
    assert message["name"] == MESSAGE_TYPE
    schema = message["payload"]
    written = orjson.loads(MESSAGE.to_bytes())
    assert set(written) == set(schema["properties"])
    assert set(schema["required"]) == set(written) - {"version", "tenant"}
    assert schema["properties"]["tenant"]["default"] == DEFAULT_TENANT
    assert schema["properties"]["version"]["default"] == "1.0"  # what an absent version means
    assert schema["properties"]["version"]["examples"] == [SCHEMA_VERSION]
    assert doc["info"]["version"] == f"{SCHEMA_VERSION}.0"
    assert message["bindings"]["amqp"]["messageType"] == MESSAGE_TYPE


def test_a_stored_event_is_announced_with_its_ids_and_tenant() -> None:
    event_id = uuid.uuid4()
    log = [{"character": "USER", "content": "hi"}]
    ids = {"conversation_id": "c-9", "user_id": "u-9", "bot_id": "pika", "tenant": "acme"}
    before = datetime.now(UTC)
    message = EventMessage.announcing({"id": event_id, **ids, "conversation_log": log})
    assert message.event_id == str(event_id)
    assert (message.conversation_id, message.user_id, message.bot_id, message.tenant) == (
        "c-9", "u-9", "pika", "acme"
    )  # fmt: skip
    assert before <= message.enqueued_at <= datetime.now(UTC)
    assert b"hi" not in message.to_bytes()  # ids only: the content stays in the database
