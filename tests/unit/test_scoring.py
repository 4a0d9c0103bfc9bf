"""The scoring formula, metadata overrides and the breakdown."""

from __future__ import annotations

import json
import math
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests import spec

from conversation_events.domain.conversation import Message, Speaker
from conversation_events.domain.emotions import Emotion
from conversation_events.domain.scoring import (
    DEFAULT_WEIGHTS,
    SCORING_VERSION,
    ScoringWeights,
    score_conversation,
)

U = Speaker.USER
B = Speaker.BOT

# Four turns, two user questions, a happy user.
CONVERSATION = (
    Message(B, "Hi! What did you do today?"),
    Message(U, "I played football, it was fun"),
    Message(B, "Great! Who did you play with?"),
    Message(U, "My friends. Do you like football?"),
    Message(B, "I love it."),
    Message(U, "Why is the ball round"),
    Message(B, "So it rolls well."),
    Message(U, "Haha ok"),
)


def test_scoring_version_is_one() -> None:
    assert SCORING_VERSION == 1
    assert DEFAULT_WEIGHTS.version == 1


def test_default_weights_match_the_spec() -> None:
    assert DEFAULT_WEIGHTS.per_turn == spec.PER_TURN == 0.5
    assert DEFAULT_WEIGHTS.per_question == spec.PER_QUESTION == 3.0
    assert DEFAULT_WEIGHTS.per_memory == spec.PER_MEMORY == 5.0
    assert dict(DEFAULT_WEIGHTS.emotion_bonus) == spec.EMOTION_BONUS


def test_analysis_only() -> None:
    result = score_conversation(CONVERSATION, None)
    assert result.turns == 4
    assert result.questions == 2
    assert result.emotion is Emotion.HAPPY
    assert result.new_memories == 0
    # 0.5 × 4 + 3 × 2 + 10 + 5 × 0
    assert result.change == 18.0
    inputs = result.details["inputs"]
    assert inputs["turns"] == {"value": 4, "source": "analysis"}
    assert inputs["user_initiated_questions"] == {"value": 2, "source": "analysis"}
    assert inputs["session_emotion"] == {"value": "happy", "source": "analysis"}
    assert inputs["new_memories_count"] == {"value": 0, "source": "default"}
    assert result.details["components"] == {
        "turns_points": 2.0,
        "questions_points": 6.0,
        "emotion_bonus": 10.0,
        "memories_points": 0.0,
    }
    assert result.details["change"] == 18.0
    assert result.details["scoring_version"] == 1
    assert result.details["message_count"] == 8
    assert "ignored_metadata" not in result.details


def test_metadata_overrides_analysis() -> None:
    metadata = {"session_emotion": "boring", "user_initiated_questions": 7, "new_memories_count": 2}
    result = score_conversation(CONVERSATION, metadata)
    assert (result.turns, result.questions, result.emotion, result.new_memories) == (
        4,
        7,
        Emotion.BORING,
        2,
    )
    # 0.5 × 4 + 3 × 7 - 15 + 5 × 2
    assert result.change == 18.0
    inputs = result.details["inputs"]
    assert inputs["turns"]["source"] == "analysis"  # turns never come from metadata
    assert inputs["user_initiated_questions"] == {"value": 7, "source": "metadata"}
    assert inputs["session_emotion"] == {"value": "boring", "source": "metadata"}
    assert inputs["new_memories_count"] == {"value": 2, "source": "metadata"}


def test_metadata_zero_is_present_not_absent() -> None:
    metadata = {"user_initiated_questions": 0, "session_emotion": "neutral"}
    result = score_conversation(CONVERSATION, metadata)
    assert result.questions == 0
    assert result.emotion is Emotion.NEUTRAL
    assert result.change == 2.0
    assert result.details["inputs"]["user_initiated_questions"]["source"] == "metadata"


def test_metadata_none_values_fall_back_to_analysis() -> None:
    metadata = {
        "session_emotion": None,
        "user_initiated_questions": None,
        "new_memories_count": None,
    }
    result = score_conversation(CONVERSATION, metadata)
    assert result == score_conversation(CONVERSATION, None)
    assert "ignored_metadata" not in result.details


def test_metadata_partial_override() -> None:
    result = score_conversation(CONVERSATION, {"session_emotion": "sad"})
    assert result.questions == 2
    assert result.emotion is Emotion.SAD
    assert result.change == 0.5 * 4 + 3 * 2 - 5
    assert result.details["inputs"]["user_initiated_questions"]["source"] == "analysis"
    assert result.details["inputs"]["session_emotion"]["source"] == "metadata"


def test_metadata_unrelated_keys_are_ignored() -> None:
    result = score_conversation(CONVERSATION, {"topic": "football", "mood": "angry"})
    assert result == score_conversation(CONVERSATION, {})


@pytest.mark.parametrize("value", ["HAPPY", " Happy ", "happy", Emotion.HAPPY])
def test_metadata_emotion_is_case_insensitive(value: Any) -> None:
    result = score_conversation([], {"session_emotion": value})
    assert result.emotion is Emotion.HAPPY
    assert result.details["inputs"]["session_emotion"] == {"value": "happy", "source": "metadata"}


@pytest.mark.parametrize("value", ["ecstatic", "", 3, ["happy"], {"x": 1}])
def test_unknown_metadata_emotion_falls_back_to_analysis(value: Any) -> None:
    result = score_conversation(CONVERSATION, {"session_emotion": value})
    assert result.emotion is Emotion.HAPPY
    assert result.details["inputs"]["session_emotion"] == {"value": "happy", "source": "analysis"}
    [ignored] = result.details["ignored_metadata"]
    assert ignored["key"] == "session_emotion"
    assert ignored["reason"] == "unknown emotion"
    json.dumps(result.details)


@pytest.mark.parametrize(
    "value", [-1, -0.5, 1.5, "3", True, False, float("nan"), float("inf"), [2], {"n": 2}]
)
def test_invalid_question_count_is_treated_as_absent(value: Any) -> None:
    result = score_conversation(CONVERSATION, {"user_initiated_questions": value})
    assert result.questions == 2
    assert result.details["inputs"]["user_initiated_questions"]["source"] == "analysis"
    [ignored] = result.details["ignored_metadata"]
    assert ignored["key"] == "user_initiated_questions"
    json.dumps(result.details, allow_nan=False)


@pytest.mark.parametrize("value", [-3, 2.5, "1", True])
def test_invalid_memory_count_defaults_to_zero(value: Any) -> None:
    result = score_conversation(CONVERSATION, {"new_memories_count": value})
    assert result.new_memories == 0
    assert result.details["inputs"]["new_memories_count"] == {"value": 0, "source": "default"}
    assert [i["key"] for i in result.details["ignored_metadata"]] == ["new_memories_count"]


def test_integral_float_counts_are_accepted() -> None:
    result = score_conversation([], {"user_initiated_questions": 3.0, "new_memories_count": 2.0})
    assert (result.questions, result.new_memories) == (3, 2)
    assert isinstance(result.questions, int)
    assert result.change == 3 * 3 + 5 * 2


def test_several_rejections_are_all_recorded() -> None:
    metadata = {"session_emotion": "meh", "user_initiated_questions": -1, "new_memories_count": "x"}
    result = score_conversation([], metadata)
    assert [i["key"] for i in result.details["ignored_metadata"]] == [
        "user_initiated_questions",
        "session_emotion",
        "new_memories_count",
    ]
    assert result.change == 0.0


def test_metadata_that_is_not_a_mapping_is_ignored() -> None:
    result = score_conversation(CONVERSATION, "not a mapping")  # type: ignore[arg-type]
    assert result == score_conversation(CONVERSATION, None)


def test_empty_log() -> None:
    result = score_conversation([], None)
    assert (result.turns, result.questions, result.emotion, result.new_memories) == (
        0,
        0,
        Emotion.NEUTRAL,
        0,
    )
    assert result.change == 0.0
    assert result.details["message_count"] == 0


@pytest.mark.parametrize(
    ("emotion", "bonus"),
    [
        ("interesting", 15.0),
        ("happy", 10.0),
        ("neutral", 0.0),
        ("sad", -5.0),
        ("angry", -10.0),
        ("boring", -15.0),
    ],
)
def test_each_emotion_bonus(emotion: str, bonus: float) -> None:
    result = score_conversation([], {"session_emotion": emotion})
    assert result.change == bonus
    assert result.details["components"]["emotion_bonus"] == bonus


def test_change_can_be_negative() -> None:
    messages = [Message(U, "This is so boring"), Message(B, "Oh no")]
    result = score_conversation(messages, None)
    assert result.emotion is Emotion.BORING
    assert result.change == 0.5 - 15


def test_bot_questions_and_emotions_do_not_count() -> None:
    messages = [Message(B, "Are you happy? Haha fun!"), Message(U, "ok")]
    result = score_conversation(messages, None)
    assert (result.questions, result.emotion, result.change) == (0, Emotion.NEUTRAL, 0.5)


def test_custom_weights_and_version_are_used_and_recorded() -> None:
    weights = ScoringWeights(
        version=2,
        per_turn=1.0,
        per_question=2.0,
        per_memory=10.0,
        emotion_bonus={"happy": 20.0},
    )
    result = score_conversation(CONVERSATION, {"new_memories_count": 1}, weights)
    assert result.change == 4 * 1.0 + 2 * 2.0 + 20.0 + 10.0
    assert result.details["scoring_version"] == 2
    assert result.details["weights"]["per_turn"] == 1.0
    # Emotions left out of the mapping earn nothing.
    assert result.details["weights"]["emotion_bonus"]["boring"] == 0.0
    boring = score_conversation([], {"session_emotion": "boring"}, weights)
    assert boring.change == 0.0


def test_weights_reject_unknown_emotions() -> None:
    with pytest.raises(ValueError, match="hapy"):
        ScoringWeights(emotion_bonus={"hapy": 10.0})


def test_weights_reject_non_finite_values() -> None:
    with pytest.raises(ValueError, match="finite"):
        ScoringWeights(per_turn=float("nan"))


def test_weights_copy_the_bonus_mapping() -> None:
    bonus = {"happy": 1.0}
    weights = ScoringWeights(emotion_bonus=bonus)
    bonus["happy"] = 1000.0
    assert weights.emotion_bonus["happy"] == 1.0
    assert isinstance(weights.emotion_bonus, MappingProxyType)
    with pytest.raises(TypeError):
        weights.emotion_bonus["happy"] = 5.0  # type: ignore[index]


def test_details_are_json_serialisable_and_complete() -> None:
    result = score_conversation(CONVERSATION, {"session_emotion": "interesting"})
    round_tripped = json.loads(json.dumps(result.details, allow_nan=False))
    assert round_tripped == result.details
    assert set(round_tripped) >= {"scoring_version", "inputs", "components", "change", "weights"}
    assert round_tripped["weights"] == {
        "version": 1,
        "per_turn": 0.5,
        "per_question": 3.0,
        "per_memory": 5.0,
        "emotion_bonus": spec.EMOTION_BONUS,
    }
    assert math.isclose(sum(round_tripped["components"].values()), round_tripped["change"])


def test_scoring_is_deterministic() -> None:
    first = score_conversation(CONVERSATION, {"new_memories_count": 3})
    for _ in range(10):
        assert score_conversation(CONVERSATION, {"new_memories_count": 3}) == first


metadata_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=50),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from([e.value for e in Emotion]),
    st.lists(st.integers(), max_size=2),
)
messages_strategy = st.lists(
    st.builds(Message, st.sampled_from([U, B]), st.text(min_size=1, max_size=40)), max_size=20
)


@given(
    messages_strategy,
    st.dictionaries(
        st.sampled_from(["session_emotion", "user_initiated_questions", "new_memories_count"]),
        metadata_values,
    ),
)
def test_any_metadata_scores_without_raising(
    messages: list[Message], metadata: dict[str, Any]
) -> None:
    result = score_conversation(messages, metadata)
    details = json.loads(json.dumps(result.details, allow_nan=False))
    # The result is the formula applied to the inputs it reports.
    expected = (
        0.5 * result.turns
        + 3.0 * result.questions
        + DEFAULT_WEIGHTS.emotion_bonus[result.emotion.value]
        + 5.0 * result.new_memories
    )
    assert result.change == pytest.approx(expected)
    assert result.questions >= 0 and result.new_memories >= 0
    assert result.turns <= len(messages) // 2
    assert details["inputs"]["session_emotion"]["value"] == result.emotion.value
    # Sources never claim metadata for a value that was rejected.
    for ignored in details.get("ignored_metadata", []):
        key = ignored["key"]
        assert details["inputs"][key]["source"] != "metadata"
