"""A user's friendship status as the API reports it (SPEC section 4).

Each test has its own user. Events that must apply in a given order are sent one at a time,
each awaited until PROCESSED, because the order of processing is what the rules speak of.
Local days are in Asia/Ho_Chi_Minh (UTC+7): 17:00Z is local midnight, so 16:59Z and 17:01Z
of the same UTC date fall on two local days.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from typing import Any

import pytest

from tests.e2e.helpers import (
    LEVELS,
    Api,
    conversation,
    expected_change,
    local_day,
    unique,
    utc,
)

pytestmark = pytest.mark.e2e


def rank(level: str) -> int:
    return LEVELS.index(level) + 1


def assert_topics_never_outrank(status: dict) -> None:
    for name, topic in status["topic_metrics"].items():
        assert rank(topic["friendship_level"]) <= rank(status["friendship_level"]), name


# --- score ---------------------------------------------------------------------------------------


def test_score_is_the_sum_of_changes(api: Api) -> None:
    user = unique("user")
    bodies = [
        conversation(
            user_id=user,
            end=utc(2026, 3, 10, 3 + i),
            turns=i,
            emotion=emotion,
            questions=i % 3,
            memories=i % 2,
        )
        for i, emotion in enumerate(["happy", "interesting", "neutral", "sad", "happy"])
    ]
    changes = [api.process(body)["friendship_score_change"] for body in bodies]
    assert changes == [expected_change(b) for b in bodies]
    status = api.status(user)
    assert status["user_id"] == user
    assert status["friendship_score"] == sum(changes)
    assert status["friendship_level"] == "PHASE1_STRANGER"

    # Re-sending a processed conversation is answered 202 and applies nothing again: a later
    # event of the same user sees the score without a second copy.
    assert api.accept(bodies[0]) == api.event(bodies[0]["conversation_id"]).json()["event_id"]
    marker = conversation(user_id=user, end=utc(2026, 3, 10, 20), turns=1)
    api.process(marker)
    status = api.status(user)
    assert status["friendship_score"] == sum(changes) + 0.5


def test_score_never_goes_below_zero(api: Api) -> None:
    user = unique("user")
    api.process(conversation(user_id=user, end=utc(2026, 3, 10, 1), turns=2, emotion="happy"))
    assert api.status(user)["friendship_score"] == 11.0
    api.process(conversation(user_id=user, end=utc(2026, 3, 10, 2), turns=0, emotion="boring"))
    assert api.status(user)["friendship_score"] == 0.0  # 11 - 15
    api.process(conversation(user_id=user, end=utc(2026, 3, 10, 3), turns=0, emotion="angry"))
    assert api.status(user)["friendship_score"] == 0.0  # no debt
    view = api.process(
        conversation(user_id=user, end=utc(2026, 3, 10, 4), turns=0, emotion="interesting")
    )
    assert view["friendship_score_change"] == 15.0
    status = api.status(user)
    assert status["friendship_score"] == 15.0  # 0 + 15, not 11 - 15 - 10 + 15
    assert status["last_emotion"] == "interesting"


def test_first_conversation_can_be_negative_and_still_floors(api: Api) -> None:
    user = unique("user")
    view = api.process(conversation(user_id=user, turns=1, emotion="boring"))
    assert view["friendship_score_change"] == -14.5
    status = api.status(user)
    assert status["friendship_score"] == 0.0
    assert status["streak_day"] == 1


# --- levels ------------------------------------------------------------------------------------


def test_levels_change_at_500_and_3000(api: Api) -> None:
    """With an empty log and neutral emotion the change is exactly 5 × new memories."""
    user = unique("user")

    def send(memories: int, hour: int) -> dict:
        body = conversation(user_id=user, end=utc(2026, 3, 10, hour), turns=0, memories=memories)
        view = api.process(body)
        assert view["friendship_score_change"] == 5 * memories
        return view

    assert send(99, 1)["new_friendship_level"] == "PHASE1_STRANGER"  # 495
    assert api.status(user)["friendship_level"] == "PHASE1_STRANGER"
    assert send(1, 2)["new_friendship_level"] == "PHASE2_ACQUAINTANCE"  # 500: inclusive
    assert send(499, 3)["new_friendship_level"] == "PHASE2_ACQUAINTANCE"  # 2995
    assert send(1, 4)["new_friendship_level"] == "PHASE3_FRIEND"  # 3000: inclusive
    status = api.status(user)
    assert (status["friendship_score"], status["friendship_level"]) == (3000.0, "PHASE3_FRIEND")


def test_a_level_is_lost_when_the_score_drops(api: Api) -> None:
    user = unique("user")
    api.process(conversation(user_id=user, end=utc(2026, 3, 10, 1), turns=0, memories=100))
    view = api.process(conversation(user_id=user, end=utc(2026, 3, 10, 2), turns=0, emotion="sad"))
    assert view["new_friendship_level"] == "PHASE1_STRANGER"  # 495
    assert api.status(user)["friendship_score"] == 495.0


# --- topics --------------------------------------------------------------------------------------


def test_topic_metrics_accumulate_per_agent_tag(api: Api) -> None:
    user = unique("user")

    def in_topic(tag: str, bot: str, end: datetime, turns: int, **fields: Any) -> dict:
        return conversation(user_id=user, end=end, turns=turns, agent_tag=tag, bot_id=bot, **fields)

    first = in_topic("space", "bot-a", utc(2026, 3, 10, 1), 2, memories=1)
    second = in_topic("space", "bot-b", utc(2026, 3, 11, 1), 3, emotion="happy")
    third = in_topic("music", "bot-a", utc(2026, 3, 11, 2), 1)
    for body in (first, second, third):
        api.process(body)
    topics = api.status(user)["topic_metrics"]
    assert set(topics) == {"space", "music"}
    space = topics["space"]
    assert space["score"] == expected_change(first) + expected_change(second)
    assert space["turns"] == 5
    assert sorted(space["agents_used"]) == ["bot-a", "bot-b"]
    assert space["last_date"] == "2026-03-11"
    assert topics["music"] == {
        "score": 0.5,
        "turns": 1,
        "last_date": "2026-03-11",
        "agents_used": ["bot-a"],
        "friendship_level": "PHASE1_STRANGER",
    }


def test_topic_falls_back_to_bot_type_then_bot_id(api: Api) -> None:
    user = unique("user")
    api.process(
        conversation(
            user_id=user, agent_tag=None, bot_type="GAME_ACTIVITY", end=utc(2026, 3, 10, 1)
        )
    )
    api.process(
        conversation(
            user_id=user, agent_tag=None, bot_type=None, bot_id="bot-solo", end=utc(2026, 3, 10, 2)
        )
    )
    assert set(api.status(user)["topic_metrics"]) == {
        "GAME_ACTIVITY",
        "bot-solo",
    }


def test_topic_levels_are_capped_by_the_user_level(api: Api) -> None:
    user = unique("user")

    def send(topic: str, memories: int, hour: int) -> dict:
        body = conversation(
            user_id=user, end=utc(2026, 3, 10, hour), turns=0, memories=memories, agent_tag=topic
        )
        api.process(body)
        status = api.status(user)
        assert_topics_never_outrank(status)
        return status

    # Topic at 60 (≥ 50) while the user is a stranger (60 < 500): capped at PHASE1.
    status = send("dinosaurs", 12, 1)
    assert status["friendship_level"] == "PHASE1_STRANGER"
    assert status["topic_metrics"]["dinosaurs"]["friendship_level"] == "PHASE1_STRANGER"

    # Topic at 160 (≥ 150) and the user reaches PHASE2 (560): the topic is PHASE2, not PHASE3.
    status = send("dinosaurs", 20, 2)
    assert status["friendship_level"] == "PHASE1_STRANGER"  # 160
    status = send("oceans", 80, 3)  # user 560
    assert status["friendship_level"] == "PHASE2_ACQUAINTANCE"
    assert status["topic_metrics"]["oceans"]["friendship_level"] == "PHASE2_ACQUAINTANCE"
    status = send("dinosaurs", 0, 4)
    assert status["topic_metrics"]["dinosaurs"]["score"] == 160.0
    assert status["topic_metrics"]["dinosaurs"]["friendship_level"] == "PHASE2_ACQUAINTANCE"

    # A topic below 50 stays PHASE1 whatever the user's level.
    status = send("weather", 9, 5)  # 45
    assert status["topic_metrics"]["weather"]["friendship_level"] == "PHASE1_STRANGER"

    # The user reaches PHASE3 (≥ 3000): a topic from 150 is PHASE3.
    status = send("oceans", 500, 6)  # user 3105
    assert status["friendship_level"] == "PHASE3_FRIEND"
    assert status["topic_metrics"]["oceans"]["friendship_level"] == "PHASE3_FRIEND"
    status = send("dinosaurs", 0, 7)
    assert status["topic_metrics"]["dinosaurs"]["friendship_level"] == "PHASE3_FRIEND"
    assert status["topic_metrics"]["weather"]["friendship_level"] == "PHASE1_STRANGER"


# --- streak and late events ------------------------------------------------------------------


def test_streak_counts_local_days_across_utc_midnight_boundaries(api: Api) -> None:
    user = unique("user")

    def send(end: datetime, emotion: str = "neutral") -> dict:
        api.process(conversation(user_id=user, end=end, emotion=emotion))
        status = api.status(user)
        return status

    status = send(utc(2026, 4, 1, 16, 59))  # local 2026-04-01 23:59
    assert (status["streak_day"], status["last_interaction_date"]) == (1, "2026-04-01")
    status = send(utc(2026, 4, 1, 17, 1))  # two minutes later: local 2026-04-02 00:01
    assert (status["streak_day"], status["last_interaction_date"]) == (2, "2026-04-02")
    status = send(utc(2026, 4, 2, 16, 58))  # another UTC day, the same local day
    assert (status["streak_day"], status["last_interaction_date"]) == (2, "2026-04-02")
    status = send(utc(2026, 4, 2, 17, 0))  # exactly local midnight: 2026-04-03
    assert (status["streak_day"], status["last_interaction_date"]) == (3, "2026-04-03")
    status = send(utc(2026, 4, 4, 17, 30))  # local 2026-04-05: a day was missed
    assert (status["streak_day"], status["last_interaction_date"]) == (1, "2026-04-05")
    status = send(utc(2026, 4, 5, 23, 0), emotion="happy")  # local 2026-04-06
    assert (status["streak_day"], status["last_interaction_date"]) == (2, "2026-04-06")
    assert status["last_emotion"] == "happy"


def test_offsets_in_the_request_do_not_change_the_local_day(api: Api) -> None:
    user = unique("user")
    api.process(conversation(user_id=user, end=utc(2026, 4, 1, 12)))  # local 04-01 19:00
    body = conversation(user_id=user)
    body["start_time"] = "2026-04-01T18:00:00-05:00"  # = 2026-04-01T23:00Z, local 04-02 06:00
    body["end_time"] = "2026-04-01T18:30:00-05:00"
    api.process(body)
    status = api.status(user)
    assert (status["streak_day"], status["last_interaction_date"]) == (2, "2026-04-02")


def test_a_late_event_scores_but_moves_neither_streak_nor_last_interaction(api: Api) -> None:
    user = unique("user")
    api.process(conversation(user_id=user, end=utc(2026, 5, 10, 2), emotion="happy"))
    api.process(conversation(user_id=user, end=utc(2026, 5, 11, 2), emotion="interesting"))
    before = api.status(user)
    assert (before["streak_day"], before["last_interaction_date"]) == (2, "2026-05-11")

    late = conversation(
        user_id=user, end=utc(2026, 5, 5, 2), emotion="sad", memories=4, agent_tag="late-topic"
    )
    view = api.process(late)
    after = api.status(user)
    assert after["friendship_score"] == before["friendship_score"] + view["friendship_score_change"]
    assert after["streak_day"] == 2
    assert after["last_interaction_date"] == "2026-05-11"
    assert after["last_emotion"] == "interesting"
    assert after["topic_metrics"]["late-topic"]["last_date"] == "2026-05-05"  # topics still learn

    # An earlier moment of the same last day is late too: nothing moves but the score.
    same_day = conversation(user_id=user, end=utc(2026, 5, 11, 1), emotion="angry")
    api.process(same_day)
    status = api.status(user)
    assert (status["streak_day"], status["last_emotion"]) == (2, "interesting")


def test_out_of_order_days_keep_the_latest_day(api: Api) -> None:
    user = unique("user")
    days = [date(2026, 6, d) for d in (3, 1, 4, 2)]
    for day in days:
        api.process(conversation(user_id=user, end=utc(day.year, day.month, day.day, 5)))
    status = api.status(user)
    assert status["last_interaction_date"] == "2026-06-04"
    # Processed as 3 → (1: late) → 4 (+1) → (2: late): the streak counts 3 and 4 only.
    assert status["streak_day"] == 2


# --- concurrency ------------------------------------------------------------------------------


def test_concurrent_events_of_one_user_all_apply(api: Api) -> None:
    user = unique("user")
    rng = random.Random(4)
    bodies = [
        conversation(
            user_id=user,
            end=utc(2026, 7, 1 + i % 20, rng.randint(0, 23)),
            turns=rng.randint(0, 6),
            emotion=rng.choice(["happy", "interesting", "neutral"]),
            questions=rng.randint(0, 3),
            memories=rng.randint(0, 3),
            agent_tag=rng.choice(["space", "music", "animals"]),
        )
        for i in range(60)
    ]
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(api.post, bodies))
    assert [r.status_code for r in responses] == [202] * len(bodies)

    views = [api.wait_done(b["conversation_id"]) for b in bodies]
    assert {v["status"] for v in views} == {"PROCESSED"}
    changes = [v["friendship_score_change"] for v in views]
    assert changes == [expected_change(b) for b in bodies]

    status = api.status(user)
    assert status["friendship_score"] == pytest.approx(sum(changes), abs=1e-9)
    topics = status["topic_metrics"]
    assert sum(t["turns"] for t in topics.values()) == sum(
        len(b["conversation_log"]) // 2 for b in bodies
    )
    assert sum(t["score"] for t in topics.values()) == pytest.approx(sum(changes), abs=1e-9)
    latest = max(datetime.fromisoformat(b["end_time"]) for b in bodies)
    assert status["last_interaction_date"] == local_day(latest).isoformat()
