"""The session emotion of a conversation: a lexicon classifier over the user's messages.

Cues are words, phrases, emoticons and emoji listed per emotion in ``lexicons/en.toml``,
``lexicons/vi.toml`` and ``lexicons/symbols.toml``, plus laughter ("haha", "kkk", "lol").
A negated cue is dropped. The classifier prefers a miss to a false hit: a guessed emotion
moves a friendship score that upstream metadata, when present, would have set anyway.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from conversation_events.domain.conversation import Message, Speaker
from conversation_events.domain.text import LEXICONS, fold, lexicon

__all__ = ["Emotion", "EmotionValue", "classify_emotion", "emotion_signals"]


class Emotion(StrEnum):
    """The session emotions of SPEC section 3."""

    INTERESTING = "interesting"
    HAPPY = "happy"
    NEUTRAL = "neutral"
    SAD = "sad"
    ANGRY = "angry"
    BORING = "boring"


if TYPE_CHECKING:
    EmotionValue = str
else:
    #: The values as a ``Literal``, for HTTP schemas that list them inline (OpenAPI, 422s).
    EmotionValue = Literal[tuple(e.value for e in Emotion)]

# Not ":" ":)" is a cue, and a colon rarely separates feelings.
_CLAUSE_SPLIT_RE = re.compile(r"[.!?\u2026\u3002\uff01\uff1f;,\n\uff0c]+")
# The lexicon files' sections besides the emotions themselves.
_NOT_CUES = "not_cues"
_NEGATORS = "negators"


def _build_lexicon() -> dict[tuple[str, ...], Emotion | None]:
    """Phrase -> emotion, matched longest first on word tokens.

    ``None`` marks a phrase that looks like a cue but is not one ("vui lòng" is "please",
    "tức là" is "that is", "buồn ngủ" is "sleepy"); matching it consumes the words so that
    the shorter cue inside does not fire.
    """
    built: dict[tuple[str, ...], Emotion | None] = {}
    for name in LEXICONS:
        for section, entries in lexicon(name)["emotions"].items():
            if section == _NEGATORS:
                continue
            emotion = None if section == _NOT_CUES else Emotion(section)
            for phrase in entries:
                key = tuple(fold(phrase).split())
                if key in built:
                    raise ValueError(f"phrase {phrase!r} listed twice in the emotion lexicons")
                built[key] = emotion
    return built


_LEXICON = _build_lexicon()
# First word -> lengths of the phrases it starts, longest first: most words start none, and
# are then passed over with one lookup.
_PHRASE_LENGTHS: dict[str, tuple[int, ...]] = {
    first: tuple(sorted({len(key) for key in _LEXICON if key[0] == first}, reverse=True))
    for first in {key[0] for key in _LEXICON}
}
# Laughter in any length: haha, hahaha, hihi, hehe, kkk (Vietnamese), lol, lmao.
_LAUGHTER_RE = re.compile(r"(?:ha){2,}h?|(?:hi){2,}|(?:he){2,}|k{3,}|lo+l|lmao")
_EMOTION_TOKEN_RE = re.compile(
    r"\w+(?:'\w+)*"
    r"|[:;]-?[()dp]"
    r"|<3"
    r"|[\U0001F300-\U0001FAFF\u2600-\u27BF]"
)
_EMOTION_NEGATORS = frozenset(
    word for name in LEXICONS for word in lexicon(name)["emotions"].get(_NEGATORS, ())
)
# How far back a negator reaches: "not very happy", "không thấy vui lắm", "don't feel sad".
_NEGATION_WINDOW = 3


def _clause_signals(tokens: Sequence[str]) -> list[Emotion]:
    found: list[Emotion] = []
    i = 0
    count = len(tokens)
    while i < count:
        token = tokens[i]
        for size in _PHRASE_LENGTHS.get(token, ()):
            key = tuple(tokens[i : i + size])
            if len(key) == size and key in _LEXICON:
                emotion = _LEXICON[key]
                break
        else:
            size = 1
            # Every laughter pattern starts with h, k or l.
            laughs = token[:1] in "hkl" and _LAUGHTER_RE.fullmatch(token) is not None
            emotion = Emotion.HAPPY if laughs else None
        if emotion is not None:
            window = tokens[max(0, i - _NEGATION_WINDOW) : i]
            # A negated cue is dropped, not inverted: "not happy" is not evidence of any one
            # of the other five emotions.
            if not any(token in _EMOTION_NEGATORS for token in window):
                found.append(emotion)
        i += size
    return found


def emotion_signals(text: str) -> list[Emotion]:
    """The emotion cues found in one message, in order (the evidence behind the classifier).

    Phrases match on whole words, longest first ("buồn cười", "funny", is happy although
    "buồn" alone is sad); a cue with a negator up to three words before it in the same
    clause is ignored.
    """
    if not isinstance(text, str):
        return []
    signals: list[Emotion] = []
    for clause in _CLAUSE_SPLIT_RE.split(fold(text)):
        signals.extend(_clause_signals(_EMOTION_TOKEN_RE.findall(clause)))
    return signals


def classify_emotion(messages: Sequence[Message]) -> Emotion:
    """The session emotion of the user's messages (bot messages are ignored).

    Counts the cues of :func:`emotion_signals` over every user message; the emotion with
    strictly the most cues wins. No cue, or a tie for the most, gives ``NEUTRAL``: a mixed
    session should neither earn nor lose friendship on a guess.
    """
    counts: Counter[Emotion] = Counter()
    for message in messages:
        if message.speaker == Speaker.USER:
            counts.update(emotion_signals(message.content))
    if not counts:
        return Emotion.NEUTRAL
    ranked = counts.most_common(2)
    if len(ranked) == 2 and ranked[0][1] == ranked[1][1]:
        return Emotion.NEUTRAL
    return ranked[0][0]
