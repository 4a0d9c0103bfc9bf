"""The friendship-score change of one conversation, with its breakdown (SPEC section 3).

``change = per_turn × turns + per_question × questions + emotion_bonus[emotion]
+ per_memory × new_memories``

Upstream metadata (``session_emotion``, ``user_initiated_questions``, ``new_memories_count``)
overrides our own analysis when it is present and valid. The function never raises on bad
metadata: an invalid value is ignored, the analysis (or default) is used instead, and the
breakdown says so. A conversation that reached the worker must always be scorable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from conversation_events.domain.conversation import Message, count_turns
from conversation_events.domain.emotions import Emotion, classify_emotion
from conversation_events.domain.questions import count_user_questions

__all__ = [
    "DEFAULT_EMOTION_BONUS",
    "DEFAULT_WEIGHTS",
    "SCORING_VERSION",
    "ScoreResult",
    "ScoringWeights",
    "score_conversation",
]

# Bump when the formula or a default weight changes; it is stored with every result so old
# scores stay explainable.
SCORING_VERSION = 1

DEFAULT_EMOTION_BONUS: Mapping[str, float] = MappingProxyType(
    {
        Emotion.INTERESTING.value: 15.0,
        Emotion.HAPPY.value: 10.0,
        Emotion.NEUTRAL.value: 0.0,
        Emotion.SAD.value: -5.0,
        Emotion.ANGRY.value: -10.0,
        Emotion.BORING.value: -15.0,
    }
)

# Where an input came from, as recorded in the breakdown.
#: The upstream metadata keys scoring reads: the only ones stored (data minimisation).
SCORED_METADATA_KEYS = ("session_emotion", "user_initiated_questions", "new_memories_count")
SOURCE_METADATA = "metadata"
SOURCE_ANALYSIS = "analysis"
SOURCE_DEFAULT = "default"


def _default_emotion_bonus() -> Mapping[str, float]:
    return DEFAULT_EMOTION_BONUS


@dataclass(frozen=True, slots=True)
class ScoringWeights:
    """The weights of the formula, versioned.

    ``emotion_bonus`` is keyed by emotion value (``"happy"``, ...); an emotion missing from
    it earns 0 and an unknown key is rejected, so a typo in configuration fails at start-up
    rather than silently scoring 0. The mapping is copied into a read-only view.
    """

    version: int = SCORING_VERSION
    per_turn: float = 0.5
    per_question: float = 3.0
    per_memory: float = 5.0
    emotion_bonus: Mapping[str, float] = field(default_factory=_default_emotion_bonus)

    def __post_init__(self) -> None:
        known = {emotion.value for emotion in Emotion}
        unknown = sorted(str(key) for key in self.emotion_bonus if key not in known)
        if unknown:
            raise ValueError(f"unknown emotions in emotion_bonus: {', '.join(unknown)}")
        values = [self.per_turn, self.per_question, self.per_memory, *self.emotion_bonus.values()]
        if not all(math.isfinite(value) for value in values):
            raise ValueError("scoring weights must be finite numbers")
        frozen = MappingProxyType({key: float(v) for key, v in self.emotion_bonus.items()})
        object.__setattr__(self, "emotion_bonus", frozen)

    def bonus_for(self, emotion: Emotion) -> float:
        """The emotion bonus of ``emotion`` (0 when the mapping leaves it out)."""
        return self.emotion_bonus.get(emotion.value, 0.0)

    def to_json(self) -> dict[str, Any]:
        """The weights as a JSON-serialisable dict (recorded in every breakdown)."""
        return {
            "version": self.version,
            "per_turn": self.per_turn,
            "per_question": self.per_question,
            "per_memory": self.per_memory,
            "emotion_bonus": {e.value: self.bonus_for(e) for e in Emotion},
        }


DEFAULT_WEIGHTS = ScoringWeights()


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """The outcome of scoring one conversation.

    ``details`` is the JSON-serialisable breakdown stored with the event: ``inputs`` (each
    with its ``value`` and ``source``: ``metadata``, ``analysis`` or ``default``),
    ``components``, ``change``, ``scoring_version``, ``weights``, ``message_count``, and
    ``ignored_metadata`` (key, value, reason) when a metadata value was rejected.
    """

    change: float
    turns: int
    questions: int
    emotion: Emotion
    new_memories: int
    details: dict[str, Any]


#: Larger counts are unusable: no conversation holds that many questions or memories, and a
#: count near the float range (1e308) would make the score change infinite.
MAX_METADATA_COUNT = 1_000_000


def _count_from_metadata(value: Any) -> int | None:
    """A non-negative integer count up to `MAX_METADATA_COUNT`, or None when unusable.

    Integral floats (``3.0``) are accepted because JSON does not distinguish them from
    integers; booleans are not counts even though Python treats them as ints.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value <= MAX_METADATA_COUNT:
        return value
    return None


def _emotion_from_metadata(value: Any) -> Emotion | None:
    """The emotion named by ``value`` (case and surrounding space ignored), or None."""
    if isinstance(value, Emotion):
        return value
    if not isinstance(value, str):
        return None
    try:
        return Emotion(value.strip().casefold())
    except ValueError:
        return None


def _json_safe(value: Any) -> Any:
    # Rejected metadata goes into the breakdown, which must stay serialisable whatever the
    # client sent; anything but a plain scalar is recorded by its repr, truncated.
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return repr(value)[:200]


def score_conversation(
    messages: Sequence[Message],
    metadata: Mapping[str, Any] | None,
    weights: ScoringWeights = DEFAULT_WEIGHTS,
) -> ScoreResult:
    """Score one normalised conversation; deterministic, no I/O.

    Turns always come from :func:`count_turns`. Questions, emotion and new memories come
    from ``metadata`` when the key is present, not None and valid; otherwise questions and
    emotion come from the analysis of the user's messages and new memories default to 0.
    """
    meta: Mapping[str, Any] = metadata if isinstance(metadata, Mapping) else {}
    ignored: list[dict[str, Any]] = []

    def rejected(key: str, reason: str) -> None:
        ignored.append({"key": key, "value": _json_safe(meta[key]), "reason": reason})

    def from_metadata(key: str, parse: Callable[[Any], Any], reason: str) -> Any:
        """The parsed upstream value, or None when absent or refused (then recorded)."""
        if meta.get(key) is None:
            return None
        value = parse(meta[key])
        if value is None:
            rejected(key, reason)
        return value

    turns = count_turns(messages)

    questions: int | None = from_metadata(
        "user_initiated_questions", _count_from_metadata, "not a non-negative integer"
    )
    questions_source = SOURCE_METADATA if questions is not None else SOURCE_ANALYSIS
    if questions is None:
        questions = count_user_questions(messages)

    emotion: Emotion | None = from_metadata(
        "session_emotion", _emotion_from_metadata, "unknown emotion"
    )
    emotion_source = SOURCE_METADATA if emotion is not None else SOURCE_ANALYSIS
    if emotion is None:
        emotion = classify_emotion(messages)

    memories: int | None = from_metadata(
        "new_memories_count", _count_from_metadata, "not a non-negative integer"
    )
    memories_source = SOURCE_METADATA if memories is not None else SOURCE_DEFAULT
    if memories is None:
        memories = 0

    components = {
        "turns_points": weights.per_turn * turns,
        "questions_points": weights.per_question * questions,
        "emotion_bonus": weights.bonus_for(emotion),
        "memories_points": weights.per_memory * memories,
    }
    change = sum(components.values())

    inputs: dict[str, Any] = {
        "turns": {"value": turns, "source": SOURCE_ANALYSIS},
        "user_initiated_questions": {"value": questions, "source": questions_source},
        "session_emotion": {"value": emotion.value, "source": emotion_source},
        "new_memories_count": {"value": memories, "source": memories_source},
    }
    details: dict[str, Any] = {
        "scoring_version": weights.version,
        "inputs": inputs,
        "components": components,
        "change": change,
        "weights": weights.to_json(),
        "message_count": len(messages),
    }
    if ignored:
        details["ignored_metadata"] = ignored
    return ScoreResult(
        change=change,
        turns=turns,
        questions=questions,
        emotion=emotion,
        new_memories=memories,
        details=details,
    )
