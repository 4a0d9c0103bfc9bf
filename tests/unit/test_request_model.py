"""The accept routes' request model: the canonical form behind the content hash (which decides
duplicate against conflict for every event ever stored), and the instants of messages."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from conversation_events_api.schemas import ConversationEndRequest

#: A body and the hash and stored log its event had before messages became typed dicts and the
#: log was serialised once: a re-send of an event stored then must stay a duplicate.
STORED_BODY: dict[str, Any] = {
    "conversation_id": "conv-1",
    "user_id": "user-1",
    "bot_id": "bot-1",
    "bot_name": "Pika",
    "agent_tag": "animals",
    "start_time": "2026-03-10T17:00:00+07:00",
    "end_time": "2026-03-10T10:05:00.250Z",
    "conversation_logs": [
        {"character": "USER", "content": "Chào Pika!", "timestamp": "2026-03-10T10:00:00Z", "x": 1},
        {"character": "PIKA", "content": "Hello!", "timestamp": "2026-03-10T05:31:00.000001-04:30"},
        {"character": "USER", "content": "no time"},
    ],
    "metadata": {"session_emotion": "happy", "new_memories_count": 2, "model": "gpt"},
    "client_version": "1.2",
}
STORED_HASH = "3bc77c02ede413a27dff615a505fba892c01913b08310a7123ee4dfeeec909b7"
STORED_LOG = [
    {"character": "USER", "content": "Chào Pika!", "timestamp": "2026-03-10T10:00:00+00:00"},
    {"character": "PIKA", "content": "Hello!", "timestamp": "2026-03-10T10:01:00.000001+00:00"},
    {"character": "USER", "content": "no time", "timestamp": None},
]


def event_of(body: dict[str, Any], *, as_json: bool = True) -> Any:
    if as_json:
        return ConversationEndRequest.model_validate_json(orjson.dumps(body)).to_event()
    return ConversationEndRequest.model_validate(body).to_event()


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "python"])
def test_an_event_stored_before_keeps_its_hash_and_log(as_json: bool) -> None:
    event = event_of(STORED_BODY, as_json=as_json)
    assert event.content_hash == STORED_HASH
    assert orjson.loads(orjson.dumps(event.conversation_log)) == STORED_LOG
    assert event.metadata == {
        "session_emotion": "happy",
        "user_initiated_questions": None,
        "new_memories_count": 2,
    }


def reference_hash(body: dict[str, Any]) -> str:
    """The documented canonical form, built by hand: declared fields only, aliases resolved,
    every instant as UTC `isoformat()`, messages with exactly character, content, timestamp."""

    def utc(text: str) -> str:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).isoformat()

    log = body["conversation_log"] if "conversation_log" in body else body["conversation_logs"]
    canonical = {
        "conversation_id": body["conversation_id"],
        "user_id": body["user_id"],
        "bot_id": body["bot_id"],
        "bot_name": body.get("bot_name"),
        "bot_type": body.get("bot_type"),
        "agent_tag": body.get("agent_tag"),
        "start_time": utc(body["start_time"]),
        "end_time": utc(body["end_time"]),
        "conversation_log": [
            {
                "character": m["character"],
                "content": m["content"],
                "timestamp": utc(m["timestamp"]) if m.get("timestamp") is not None else None,
            }
            for m in log
        ],
        "metadata": None
        if body.get("metadata") is None
        else {
            "session_emotion": None,
            "user_initiated_questions": None,
            "new_memories_count": None,
            **body["metadata"],
        },
    }
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()


BASE = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
offsets = st.sampled_from(
    [timedelta(0), timedelta(hours=7), timedelta(hours=-4, minutes=-30), timedelta(hours=23)]
)


@st.composite
def instants(draw: st.DrawFn) -> str:
    moment = BASE + timedelta(microseconds=draw(st.integers(0, 86_400_000_000)))
    offset = draw(offsets)
    text = moment.astimezone(timezone(offset)).isoformat()
    return text.replace("+00:00", "Z") if draw(st.booleans()) else text


#: Text PostgreSQL can store (no NUL, no unpaired surrogate), as valid bodies carry.
texts = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20)
messages = st.fixed_dictionaries(
    {"character": st.sampled_from(["USER", "PIKA"]), "content": texts},
    optional={"timestamp": st.one_of(st.none(), instants()), "extra": st.integers(0, 9)},
)


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(instants())
    end = (datetime.fromisoformat(start.replace("Z", "+00:00")) + timedelta(minutes=5)).isoformat()
    body: dict[str, Any] = {
        "conversation_id": "c",
        "user_id": "u",
        "bot_id": "b",
        "start_time": start,
        "end_time": end,
        draw(st.sampled_from(["conversation_log", "conversation_logs"])): draw(
            st.lists(messages, max_size=5)
        ),
    }
    optional = {
        "bot_name": texts,
        "agent_tag": texts,
        "metadata": st.fixed_dictionaries(
            {}, optional={"new_memories_count": st.integers(0, 9), "model": texts}
        ),
        "unknown": st.integers(0, 9),
    }
    for key, values in optional.items():
        if draw(st.booleans()):
            body[key] = draw(values)
    return body


@settings(max_examples=200, deadline=None)
@given(bodies(), st.booleans())
def test_the_hash_is_the_documented_canonical_form(body: dict[str, Any], as_json: bool) -> None:
    assert event_of(body, as_json=as_json).content_hash == reference_hash(body)


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "python"])
@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", 1700000000, "10:00"]
)
def test_a_message_instant_is_refused_at_its_place(value: Any, as_json: bool) -> None:
    body = {**STORED_BODY, "conversation_logs": [dict(m) for m in STORED_BODY["conversation_logs"]]}
    body["conversation_logs"][1]["timestamp"] = value
    with pytest.raises(ValidationError) as failed:
        event_of(body, as_json=as_json)
    assert [e["loc"] for e in failed.value.errors()] == [("conversation_logs", 1, "timestamp")]


@pytest.mark.parametrize("field", ["status", "event_id", "processed_at"])
def test_server_owned_fields_are_refused_and_unknown_ones_ignored(field: str) -> None:
    with pytest.raises(ValidationError, match=f"server-owned fields cannot be set: {field}"):
        event_of({**STORED_BODY, field: "x"})
    assert event_of({**STORED_BODY, "client_build": "x"}).content_hash == STORED_HASH
