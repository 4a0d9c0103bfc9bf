"""Conversation logs as the domain sees them: who spoke, what they said, and the topic.

The HTTP layer validates the request; this module turns the stored log into a tuple of
:class:`Message` values that the analysis and scoring functions work on. It never raises on
odd items (a missing key, a non-string content): the worker must be able to score any log
that reached the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "NOT_SCORED_BOT_TYPES",
    "Message",
    "Speaker",
    "classify_speaker",
    "count_turns",
    "is_scored_bot_type",
    "normalise_log",
    "topic_for",
]

# Conversations of these bot types are stored but not scored (SPEC section 3): a lesson
# hand-over is not a conversation with the buddy.
NOT_SCORED_BOT_TYPES: frozenset[str] = frozenset({"NEXT_LESSON"})


class Speaker(StrEnum):
    """Who said a message: the user or the bot (any persona)."""

    USER = "USER"
    BOT = "BOT"


@dataclass(frozen=True, slots=True)
class Message:
    """One non-empty, stripped utterance of a conversation."""

    speaker: Speaker
    content: str


def classify_speaker(character: str) -> Speaker:
    """Map a log's ``character`` field to a :class:`Speaker`.

    A name containing ``USER`` in any case (``"USER"``, ``"user_1"``) is the user; everything
    else (``"BOT"``, ``"PIKA"``, ``"assistant"``, an empty name) is the bot. The platform only
    ever has one human per conversation, so "not the user" is the safe default.
    """
    if not isinstance(character, str):
        return Speaker.BOT
    return Speaker.USER if "user" in character.casefold() else Speaker.BOT


def normalise_log(items: Iterable[Mapping[str, Any]]) -> tuple[Message, ...]:
    """Turn raw log items (``{"character", "content", "timestamp"?}``) into messages.

    Contents are stripped; items whose content is missing, not a string, or blank after
    stripping are dropped (an empty bubble is not a turn). Order is preserved and the
    optional ``timestamp`` is ignored: the log's order is the conversation's order.
    """
    messages: list[Message] = []
    for item in items:
        # The dict check first: every stored log item is one, and it is far cheaper than the
        # abstract Mapping check.
        if not isinstance(item, dict) and not isinstance(item, Mapping):
            continue
        content = item.get("content")
        if not isinstance(content, str):
            continue
        text = content.strip()
        if not text:
            continue
        character = item.get("character")
        speaker = classify_speaker(character if isinstance(character, str) else "")
        messages.append(Message(speaker=speaker, content=text))
    return tuple(messages)


def count_turns(messages: Sequence[Message]) -> int:
    """Count exchanges with the SPEC's walk.

    Starting at ``i = 0``: when messages ``i`` and ``i + 1`` come from different speakers,
    count one turn and move on by two; otherwise move on by one. Each turn consumes two
    messages, so the result is at most ``len(messages) // 2`` (reached by a strictly
    alternating log) and 0 for a log with fewer than two messages or a single speaker.
    """
    turns = 0
    i = 0
    while i + 1 < len(messages):
        if messages[i].speaker != messages[i + 1].speaker:
            turns += 1
            i += 2
        else:
            i += 1
    return turns


def _present(value: str | None) -> str | None:
    if value is None:
        return None
    stripped = value.strip()
    return stripped or None


def topic_for(agent_tag: str | None, bot_type: str | None, bot_id: str) -> str:
    """The topic a conversation counts toward: ``agent_tag``, else ``bot_type``, else ``bot_id``.

    Empty and whitespace-only values count as absent, and the chosen value is stripped, so
    ``" math "`` and ``"math"`` feed the same topic.
    """
    return _present(agent_tag) or _present(bot_type) or bot_id.strip() or bot_id


def is_scored_bot_type(bot_type: str | None) -> bool:
    """False for bot types whose conversations are stored but not scored (``NEXT_LESSON``).

    Compared case-insensitively after stripping, because upstream spelling is not enforced.
    """
    if bot_type is None:
        return True
    return bot_type.strip().upper() not in NOT_SCORED_BOT_TYPES
