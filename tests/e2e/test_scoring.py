"""Processing to PROCESSED or SKIPPED, and the score breakdown (SPEC section 3)."""

from __future__ import annotations

import pytest

from tests.e2e.helpers import EMOTION_BONUS, Api, conversation, expected_change, log

pytestmark = pytest.mark.e2e


def test_processed_event_reports_change_level_and_breakdown(api: Api) -> None:
    body = conversation(turns=3, emotion="happy", questions=2, memories=1)
    event_id = api.accept(body)
    view = api.wait_done(body["conversation_id"])

    assert view["status"] == "PROCESSED"
    assert view["event_id"] == event_id
    assert view["user_id"] == body["user_id"]
    assert view["bot_id"] == body["bot_id"]
    assert view["attempts"] >= 1
    assert view["last_error"] is None
    assert view["processed_at"] and view["created_at"]
    # 0.5 × 3 turns + 3 × 2 questions + 10 (happy) + 5 × 1 memory
    assert view["friendship_score_change"] == 22.5 == expected_change(body)
    assert view["new_friendship_level"] == "PHASE1_STRANGER"

    details = view["score_calculation_details"]
    assert details["scoring_version"] == 1
    assert details["change"] == 22.5
    assert details["inputs"] == {
        "turns": {"value": 3, "source": "analysis"},
        "user_initiated_questions": {"value": 2, "source": "metadata"},
        "session_emotion": {"value": "happy", "source": "metadata"},
        "new_memories_count": {"value": 1, "source": "metadata"},
    }
    assert details["components"] == {
        "turns_points": 1.5,
        "questions_points": 6.0,
        "emotion_bonus": 10.0,
        "memories_points": 5.0,
    }
    assert sum(details["components"].values()) == details["change"]
    assert details["message_count"] == 6


@pytest.mark.parametrize("emotion", sorted(EMOTION_BONUS))
def test_every_emotion_earns_its_bonus(api: Api, emotion: str) -> None:
    body = conversation(turns=2, emotion=emotion, questions=1, memories=0)
    view = api.process(body)
    assert view["friendship_score_change"] == 1.0 + 3.0 + EMOTION_BONUS[emotion]
    assert (
        view["score_calculation_details"]["components"]["emotion_bonus"] == (EMOTION_BONUS[emotion])
    )


def test_without_metadata_the_log_is_analysed(api: Api) -> None:
    body = conversation(emotion=None, questions=None, memories=None, turns=0)
    body["conversation_log"] = log(
        ("USER", "Do you like cats?"),
        ("PIKA", "Yes, I do."),
        ("user_1", "I have a cat at home."),
        ("assistant", "Nice."),
        ("USER", "Where do cats sleep?"),
        ("BOT", "Anywhere warm."),
    )
    view = api.process(body)
    inputs = view["score_calculation_details"]["inputs"]
    assert inputs["turns"] == {"value": 3, "source": "analysis"}
    assert inputs["user_initiated_questions"] == {"value": 2, "source": "analysis"}
    assert inputs["session_emotion"]["source"] == "analysis"
    assert inputs["session_emotion"]["value"] in EMOTION_BONUS
    assert inputs["new_memories_count"]["value"] == 0
    assert inputs["new_memories_count"]["source"] != "metadata"
    assert view["friendship_score_change"] == (
        1.5 + 6 + EMOTION_BONUS[inputs["session_emotion"]["value"]]
    )


def test_metadata_overrides_the_analysis(api: Api) -> None:
    body = conversation(turns=0, emotion="boring", questions=0, memories=0)
    body["conversation_log"] = log(
        ("USER", "Why is the sky blue?"),
        ("PIKA", "Because of the air."),
    )
    view = api.process(body)
    inputs = view["score_calculation_details"]["inputs"]
    assert inputs["user_initiated_questions"] == {"value": 0, "source": "metadata"}
    assert inputs["session_emotion"] == {"value": "boring", "source": "metadata"}
    assert view["friendship_score_change"] == 0.5 - 15


def test_speakers_and_empty_messages_follow_the_rules(api: Api) -> None:
    """Characters containing USER are the user, anything else the bot; empty contents drop out.

    Kept: USER "hi", user_2 "again", PIKA "yes" → the walk counts one turn (user, user: step
    one; user, bot: a turn). Counting the blank bot message would make it two.
    """
    body = conversation(turns=0)
    body["conversation_log"] = log(
        ("USER", "hi"),
        ("BOT", "   "),
        ("user_2", "again"),
        ("PIKA", "yes"),
        ("Pika", ""),
    )
    view = api.process(body)
    details = view["score_calculation_details"]
    assert details["inputs"]["turns"]["value"] == 1
    assert details["message_count"] == 3
    assert view["friendship_score_change"] == 0.5


def test_turns_follow_the_pairing_walk(api: Api) -> None:
    # U U B B U B: (U,U) step 1; (U,B) turn, step 2; (B,U) turn, step 2; end → 2 turns.
    body = conversation(turns=0)
    speakers = ["USER", "USER", "PIKA", "PIKA", "USER", "PIKA"]
    body["conversation_log"] = [
        {"character": s, "content": f"message {i}"} for i, s in enumerate(speakers)
    ]
    view = api.process(body)
    assert view["score_calculation_details"]["inputs"]["turns"]["value"] == 2
    assert view["friendship_score_change"] == 1.0


@pytest.mark.parametrize("bot_type", ["NEXT_LESSON", "next_lesson"])
def test_next_lesson_is_stored_but_skipped(api: Api, bot_type: str) -> None:
    body = conversation(bot_type=bot_type, memories=10, emotion="happy")
    api.accept(body)
    view = api.wait_done(body["conversation_id"])
    assert view["status"] == "SKIPPED"
    assert view["friendship_score_change"] is None
    assert view["new_friendship_level"] is None
    assert api.friendship(body["user_id"]) is None  # nothing scored, no status created


def test_skipped_event_leaves_an_existing_status_alone(api: Api) -> None:
    first = conversation(memories=2)
    api.process(first)
    before = api.friendship(first["user_id"])
    skipped = conversation(user_id=first["user_id"], bot_type="NEXT_LESSON", memories=50)
    api.accept(skipped)
    assert api.wait_done(skipped["conversation_id"])["status"] == "SKIPPED"
    assert api.friendship(first["user_id"]) == before
