"""Log normalisation, speaker classification and topic choice."""

from __future__ import annotations

import dataclasses

import pytest

from conversation_events.domain.conversation import (
    Message,
    Speaker,
    classify_speaker,
    is_scored_bot_type,
    normalise_log,
    topic_for,
)

#: Characters (as the log names them) and whom each one is.
SPEAKERS = {
    Speaker.USER: ["USER", "user", "User", "user_1", "END_USER"],
    Speaker.BOT: ["BOT", "Bot", "PIKA", "pika", "assistant", "", "US ER"],
}


@pytest.mark.parametrize(
    ("character", "expected"),
    [(character, speaker) for speaker, names in SPEAKERS.items() for character in names],
)
def test_classify_speaker(character: str, expected: Speaker) -> None:
    assert classify_speaker(character) is expected


def test_classify_speaker_non_string_is_bot() -> None:
    assert classify_speaker(None) is Speaker.BOT  # type: ignore[arg-type]


def test_speaker_values_are_their_names() -> None:
    assert Speaker.USER == "USER"
    assert Speaker.BOT == "BOT"


def test_message_is_frozen() -> None:
    message = Message(Speaker.USER, "hi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.content = "changed"  # type: ignore[misc]


def test_normalise_log_strips_and_classifies() -> None:
    log = [
        {"character": "BOT", "content": "  Hello!  ", "timestamp": "2024-05-01T10:00:00Z"},
        {"character": "user_1", "content": "\tHi Pika\n"},
        {"character": "PIKA", "content": "How are you?"},
    ]
    assert normalise_log(log) == (
        Message(Speaker.BOT, "Hello!"),
        Message(Speaker.USER, "Hi Pika"),
        Message(Speaker.BOT, "How are you?"),
    )


def test_normalise_log_drops_empty_and_whitespace_content() -> None:
    log = [
        {"character": "USER", "content": ""},
        {"character": "BOT", "content": "   "},
        {"character": "USER", "content": "\n\t"},
        {"character": "USER", "content": "real"},
        {"character": "BOT", "content": "\u3000"},  # ideographic space
    ]
    assert normalise_log(log) == (Message(Speaker.USER, "real"),)


def test_normalise_log_keeps_order_and_ignores_timestamps() -> None:
    log = [
        {"character": "USER", "content": "second", "timestamp": "2024-05-01T10:00:02Z"},
        {"character": "BOT", "content": "first", "timestamp": "2024-05-01T10:00:01Z"},
    ]
    assert [m.content for m in normalise_log(log)] == ["second", "first"]


def test_normalise_log_empty() -> None:
    assert normalise_log([]) == ()


def test_normalise_log_tolerates_malformed_items() -> None:
    log = [
        {"character": "USER"},  # no content
        {"character": "USER", "content": None},
        {"character": "USER", "content": 42},
        {"content": "no character"},
        {"character": None, "content": "null character"},
        "not a mapping",
        {"character": "USER", "content": "kept"},
    ]
    assert normalise_log(log) == (  # type: ignore[arg-type]
        Message(Speaker.BOT, "no character"),
        Message(Speaker.BOT, "null character"),
        Message(Speaker.USER, "kept"),
    )


def test_normalise_log_accepts_any_iterable() -> None:
    items = ({"character": "USER", "content": str(i)} for i in range(3))
    assert [m.content for m in normalise_log(items)] == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("agent_tag", "bot_type", "bot_id", "expected"),
    [
        ("math", "TALK", "bot-1", "math"),
        (None, "TALK", "bot-1", "TALK"),
        ("", "TALK", "bot-1", "TALK"),
        ("   ", "TALK", "bot-1", "TALK"),
        (None, None, "bot-1", "bot-1"),
        ("", "", "bot-1", "bot-1"),
        (None, "  ", "bot-1", "bot-1"),
        (" math ", None, "bot-1", "math"),
    ],
)
def test_topic_for(agent_tag: str | None, bot_type: str | None, bot_id: str, expected: str) -> None:
    assert topic_for(agent_tag, bot_type, bot_id) == expected


@pytest.mark.parametrize(
    ("bot_type", "scored"),
    [
        ("NEXT_LESSON", False),
        ("next_lesson", False),
        (" NEXT_LESSON ", False),
        ("TALK", True),
        ("GREETING", True),
        ("GAME_ACTIVITY", True),
        (None, True),
        ("", True),
    ],
)
def test_is_scored_bot_type(bot_type: str | None, scored: bool) -> None:
    assert is_scored_bot_type(bot_type) is scored
