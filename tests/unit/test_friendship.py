"""Friendship levels, topic levels, streaks and applying a scored conversation."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conversation_events.domain.emotions import Emotion
from conversation_events.domain.friendship import (
    FriendshipStatus,
    Interaction,
    Level,
    TopicMetrics,
    apply_interaction,
    level_for_score,
    next_streak,
    topic_level,
    topic_metrics_from_json,
    topic_metrics_to_json,
)
from conversation_events.domain.scoring import ScoreResult

HCM = ZoneInfo("Asia/Ho_Chi_Minh")  # UTC+7 all year
NEW_YORK = ZoneInfo("America/New_York")
P1, P2, P3 = Level.PHASE1_STRANGER, Level.PHASE2_ACQUAINTANCE, Level.PHASE3_FRIEND


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def score(change: float, turns: int = 0, emotion: Emotion = Emotion.NEUTRAL) -> ScoreResult:
    return ScoreResult(
        change=change, turns=turns, questions=0, emotion=emotion, new_memories=0, details={}
    )


def interaction(
    end_time: datetime,
    change: float = 0.0,
    *,
    topic: str = "math",
    bot_id: str = "bot-1",
    turns: int = 0,
    emotion: Emotion = Emotion.NEUTRAL,
) -> Interaction:
    return Interaction(
        end_time=end_time, topic=topic, bot_id=bot_id, score=score(change, turns, emotion)
    )


def status_with(score_value: float, **kwargs: object) -> FriendshipStatus:
    return FriendshipStatus(
        user_id="u1",
        friendship_score=score_value,
        friendship_level=level_for_score(score_value),
        streak_day=kwargs.pop("streak_day", 0),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


def apply_all(
    status: FriendshipStatus, *items: Interaction, zone: tzinfo = HCM
) -> FriendshipStatus:
    for item in items:
        status = apply_interaction(status, item, zone)
    return status


def new_user_after(*ends: str, zone: tzinfo = HCM) -> FriendshipStatus:
    """A new user's status after plain conversations ending at these UTC instants, in order."""
    plain = (interaction(utc(end)) for end in ends)
    return apply_all(FriendshipStatus.new("u1"), *plain, zone=zone)


# ------------------------------------------------------------------------------------------
# Levels
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "level"),
    [
        (0, P1),
        (499, P1),
        (499.5, P1),
        (499.999, P1),
        (500, P2),
        (500.0, P2),
        (1500, P2),
        (2999, P2),
        (2999.5, P2),
        (2999.999, P2),
        (3000, P3),
        (3000.0, P3),
        (1_000_000, P3),
    ],
)
def test_level_for_score(value: float, level: Level) -> None:
    assert level_for_score(value) is level


def test_level_values_equal_names_and_rank_orders_them() -> None:
    assert [level.value for level in Level] == [level.name for level in Level]
    assert [level.rank for level in Level] == [1, 2, 3]


@pytest.mark.parametrize(
    ("topic_score", "user", "expected"),
    [
        # user PHASE1: topics stay PHASE1 whatever their score
        (0, P1, P1),
        (49, P1, P1),
        (50, P1, P1),
        (149, P1, P1),
        (150, P1, P1),
        (10_000, P1, P1),
        # user PHASE2: topics reach PHASE2 from 50, never PHASE3
        (49, P2, P1),
        (49.9, P2, P1),
        (50, P2, P2),
        (149, P2, P2),
        (150, P2, P2),
        (10_000, P2, P2),
        # user PHASE3: PHASE2 from 50, PHASE3 from 150
        (49, P3, P1),
        (50, P3, P2),
        (149, P3, P2),
        (149.9, P3, P2),
        (150, P3, P3),
        (10_000, P3, P3),
    ],
)
def test_topic_level(topic_score: float, user: Level, expected: Level) -> None:
    assert topic_level(topic_score, user) is expected


def test_topic_level_accepts_the_string_value_of_a_level() -> None:
    assert topic_level(200, "PHASE3_FRIEND") is P3  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# Values and JSON
# ------------------------------------------------------------------------------------------


def test_new_status() -> None:
    status = FriendshipStatus.new("u1")
    assert status.user_id == "u1"
    assert status.friendship_score == 0
    assert status.friendship_level is P1
    assert status.streak_day == 0
    assert status.last_interaction_date is None
    assert status.last_interaction_at is None
    assert status.last_emotion is None
    assert dict(status.topic_metrics) == {}


def test_status_coerces_database_values() -> None:
    from decimal import Decimal

    status = FriendshipStatus(
        user_id="u1",
        friendship_score=Decimal("12.5"),  # type: ignore[arg-type]
        friendship_level="PHASE2_ACQUAINTANCE",  # type: ignore[arg-type]
        streak_day=1,
        last_emotion="happy",  # type: ignore[arg-type]
    )
    assert status.friendship_score == 12.5 and isinstance(status.friendship_score, float)
    assert status.friendship_level is P2
    assert status.last_emotion is Emotion.HAPPY


def test_status_topic_metrics_are_read_only_copies() -> None:
    topics = {"math": TopicMetrics(score=1)}
    status = status_with(0, topic_metrics=topics)
    topics["art"] = TopicMetrics()
    assert set(status.topic_metrics) == {"math"}
    with pytest.raises(TypeError):
        status.topic_metrics["x"] = TopicMetrics()  # type: ignore[index]


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError, match="end_time"):
        interaction(datetime(2024, 5, 1, 12, 0))
    with pytest.raises(ValueError, match="last_interaction_at"):
        status_with(0, last_interaction_at=datetime(2024, 5, 1, 12, 0))


def test_topic_metrics_agents_sorted_and_unique() -> None:
    metrics = TopicMetrics(agents_used=("b", "a", "b", "c"))
    assert metrics.agents_used == ("a", "b", "c")


def test_topic_metrics_json_round_trip() -> None:
    metrics = TopicMetrics(
        score=62.5,
        turns=14,
        last_date=date(2024, 5, 2),
        agents_used=("pika", "bot-2"),
        friendship_level=P2,
    )
    data = metrics.to_json()
    assert data == {
        "score": 62.5,
        "turns": 14,
        "last_date": "2024-05-02",
        "agents_used": ["bot-2", "pika"],
        "friendship_level": "PHASE2_ACQUAINTANCE",
    }
    assert TopicMetrics.from_json(data) == metrics


def test_topic_metrics_from_json_tolerates_missing_keys() -> None:
    assert TopicMetrics.from_json({}) == TopicMetrics(
        score=0.0, turns=0, last_date=None, agents_used=(), friendship_level=P1
    )
    assert TopicMetrics.from_json({"score": 7}) == TopicMetrics(score=7.0)


def test_topic_metrics_from_json_tolerates_bad_values() -> None:
    data = {
        "score": "lots",
        "turns": True,
        "last_date": "yesterday",
        "agents_used": "pika",
        "friendship_level": "BEST_FRIENDS",
    }
    assert TopicMetrics.from_json(data) == TopicMetrics()
    assert TopicMetrics.from_json({"turns": -3, "agents_used": ["a", 5, None]}) == TopicMetrics(
        agents_used=("a",)
    )
    assert TopicMetrics.from_json({"score": float("inf")}).score == 0.0
    assert TopicMetrics.from_json({"score": 10**400}).score == 0.0
    assert TopicMetrics.from_json("garbage") == TopicMetrics()  # type: ignore[arg-type]


def test_topic_metrics_from_json_accepts_a_datetime_string() -> None:
    metrics = TopicMetrics.from_json({"last_date": "2024-05-02T10:00:00+07:00"})
    assert metrics.last_date == date(2024, 5, 2)


def test_topic_metrics_mapping_json_round_trip() -> None:
    topics = {"math": TopicMetrics(score=3, agents_used=("b",)), "art": TopicMetrics(turns=2)}
    data = topic_metrics_to_json(topics)
    assert list(data) == ["art", "math"]
    assert topic_metrics_from_json(data) == topics
    assert topic_metrics_from_json(None) == {}
    assert topic_metrics_from_json([]) == {}  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# Streaks
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("streak", "last", "today", "expected"),
    [
        (0, None, date(2024, 5, 1), 1),
        (4, date(2024, 5, 1), date(2024, 5, 1), 4),
        (4, date(2024, 5, 1), date(2024, 5, 2), 5),
        (4, date(2024, 5, 1), date(2024, 5, 3), 1),
        (4, date(2024, 5, 1), date(2024, 6, 1), 1),
        (4, date(2024, 2, 28), date(2024, 2, 29), 5),  # leap day
        (4, date(2023, 12, 31), date(2024, 1, 1), 5),
        (4, date(2024, 5, 2), date(2024, 5, 1), 4),  # earlier day (timezone changed)
        (0, date(2024, 5, 1), date(2024, 5, 1), 1),  # a stored 0 with a date is repaired
    ],
)
def test_next_streak(streak: int, last: date | None, today: date, expected: int) -> None:
    assert next_streak(streak, last, today) == expected


def test_first_interaction() -> None:
    end = utc("2024-05-01T03:00:00")
    result = apply_interaction(
        FriendshipStatus.new("u1"),
        interaction(end, 18, turns=4, emotion=Emotion.HAPPY),
        HCM,
    )
    assert result.user_id == "u1"
    assert result.friendship_score == 18
    assert result.friendship_level is P1
    assert result.streak_day == 1
    assert result.last_interaction_date == date(2024, 5, 1)
    assert result.last_interaction_at == end
    assert result.last_emotion is Emotion.HAPPY
    assert dict(result.topic_metrics) == {
        "math": TopicMetrics(
            score=18,
            turns=4,
            last_date=date(2024, 5, 1),
            agents_used=("bot-1",),
            friendship_level=P1,
        )
    }


def test_apply_does_not_mutate_its_input() -> None:
    before = FriendshipStatus.new("u1")
    apply_interaction(before, interaction(utc("2024-05-01T03:00:00"), 10), HCM)
    assert before == FriendshipStatus.new("u1")


def test_streak_midnight_in_ho_chi_minh() -> None:
    # 16:59:59Z is 23:59:59 in Ho Chi Minh City; 17:00:00Z is 00:00:00 the next day.
    day_one = apply_all(FriendshipStatus.new("u1"), interaction(utc("2024-05-01T16:59:59")))
    assert day_one.last_interaction_date == date(2024, 5, 1)
    day_two = apply_all(day_one, interaction(utc("2024-05-01T17:00:00")))
    assert day_two.streak_day == 2
    assert day_two.last_interaction_date == date(2024, 5, 2)


def test_same_local_day_across_a_utc_midnight() -> None:
    # 17:00Z on May 1 and 16:59Z on May 2 are both May 2 in Ho Chi Minh City.
    first = apply_all(FriendshipStatus.new("u1"), interaction(utc("2024-05-01T17:00:00")))
    second = apply_all(first, interaction(utc("2024-05-02T16:59:00")))
    assert second.streak_day == 1
    assert second.last_interaction_date == date(2024, 5, 2)
    # The same two instants in UTC are two consecutive days.
    in_utc = new_user_after("2024-05-01T17:00:00", "2024-05-02T16:59:00", zone=UTC)
    assert in_utc.streak_day == 2


def test_streak_same_day_unchanged_then_next_day_then_gap() -> None:
    status = status_with(
        100,
        streak_day=5,
        last_interaction_date=date(2024, 5, 1),
        last_interaction_at=utc("2024-05-01T02:00:00"),
    )
    same_day = apply_all(status, interaction(utc("2024-05-01T10:00:00")))
    assert same_day.streak_day == 5
    next_day = apply_all(same_day, interaction(utc("2024-05-02T10:00:00")))
    assert next_day.streak_day == 6
    # May 2 -> May 4 local: one day without a conversation resets the streak.
    after_gap = apply_all(next_day, interaction(utc("2024-05-04T01:00:00")))
    assert after_gap.streak_day == 1
    assert after_gap.last_interaction_date == date(2024, 5, 4)


def test_gap_is_measured_in_local_days_not_hours() -> None:
    # 47 hours apart but only one local day apart: 00:30 May 1 -> 23:30 May 2 local.
    status = new_user_after("2024-04-30T17:30:00", "2024-05-02T16:30:00")
    assert status.streak_day == 2
    # 25 hours apart but two local days apart: 23:30 May 1 -> 00:30 May 3 local.
    status = new_user_after("2024-05-01T16:30:00", "2024-05-02T17:30:00")
    assert status.streak_day == 1


def test_streak_across_dst_in_new_york() -> None:
    # 2024-03-10 is a 23-hour day in New York (clocks jump from 02:00 EST to 03:00 EDT).
    eve = utc("2024-03-10T04:59:00")  # 23:59 EST on March 9
    dst_day_start = utc("2024-03-10T05:00:00")  # 00:00 EST on March 10
    dst_day_end = utc("2024-03-11T03:59:00")  # 23:59 EDT on March 10
    next_day = utc("2024-03-11T04:00:00")  # 00:00 EDT on March 11
    status = apply_all(FriendshipStatus.new("u1"), interaction(eve), zone=NEW_YORK)
    status = apply_all(status, interaction(dst_day_start), zone=NEW_YORK)
    assert (status.streak_day, status.last_interaction_date) == (2, date(2024, 3, 10))
    status = apply_all(status, interaction(dst_day_end), zone=NEW_YORK)
    assert (status.streak_day, status.last_interaction_date) == (2, date(2024, 3, 10))
    status = apply_all(status, interaction(next_day), zone=NEW_YORK)
    assert (status.streak_day, status.last_interaction_date) == (3, date(2024, 3, 11))


def test_streak_across_the_25_hour_day_in_new_york() -> None:
    # 2024-11-03 lasts 25 hours in New York: 04:00Z is 00:00 EDT, 04:59Z next day is 23:59 EST.
    status = new_user_after("2024-11-03T04:00:00", "2024-11-04T04:59:00", zone=NEW_YORK)
    assert (status.streak_day, status.last_interaction_date) == (1, date(2024, 11, 3))
    status = apply_all(status, interaction(utc("2024-11-04T05:00:00")), zone=NEW_YORK)
    assert (status.streak_day, status.last_interaction_date) == (2, date(2024, 11, 4))


def test_end_time_offset_does_not_matter_only_the_instant() -> None:
    plus_seven = datetime(2024, 5, 2, 0, 30, tzinfo=timezone(timedelta(hours=7)))
    minus_five = plus_seven.astimezone(timezone(timedelta(hours=-5)))
    a = apply_all(FriendshipStatus.new("u1"), interaction(plus_seven))
    b = apply_all(FriendshipStatus.new("u1"), interaction(minus_five))
    assert a.last_interaction_date == b.last_interaction_date == date(2024, 5, 2)


# ------------------------------------------------------------------------------------------
# Late and out-of-order conversations
# ------------------------------------------------------------------------------------------


def test_late_conversation_changes_scores_but_not_recency() -> None:
    last_at = utc("2024-05-03T05:00:00")
    status = status_with(
        100,
        streak_day=3,
        last_interaction_date=date(2024, 5, 3),
        last_interaction_at=last_at,
        last_emotion=Emotion.HAPPY,
    )
    late = interaction(
        utc("2024-05-01T05:00:00"), 20, topic="art", bot_id="bot-9", turns=3, emotion=Emotion.SAD
    )
    result = apply_interaction(status, late, HCM)
    assert result.friendship_score == 120
    assert result.streak_day == 3
    assert result.last_interaction_date == date(2024, 5, 3)
    assert result.last_interaction_at == last_at
    assert result.last_emotion is Emotion.HAPPY
    art = result.topic_metrics["art"]
    assert (art.score, art.turns, art.last_date, art.agents_used) == (
        20,
        3,
        date(2024, 5, 1),
        ("bot-9",),
    )


def test_late_conversation_one_second_earlier() -> None:
    last_at = utc("2024-05-03T05:00:00")
    status = status_with(
        0, streak_day=2, last_interaction_date=date(2024, 5, 3), last_interaction_at=last_at
    )
    result = apply_interaction(
        status, interaction(last_at - timedelta(seconds=1), emotion=Emotion.ANGRY), HCM
    )
    assert result.last_interaction_at == last_at
    assert result.last_emotion is None


def test_conversation_at_the_same_instant_is_not_late() -> None:
    last_at = utc("2024-05-03T05:00:00")
    status = status_with(
        0,
        streak_day=2,
        last_interaction_date=date(2024, 5, 3),
        last_interaction_at=last_at,
        last_emotion=Emotion.HAPPY,
    )
    result = apply_interaction(status, interaction(last_at, emotion=Emotion.SAD), HCM)
    assert result.last_emotion is Emotion.SAD
    assert result.streak_day == 2


def test_late_event_does_not_move_topic_last_date_back() -> None:
    status = apply_all(
        FriendshipStatus.new("u1"),
        interaction(utc("2024-05-05T05:00:00"), 1),
        interaction(utc("2024-05-02T05:00:00"), 1),
    )
    assert status.topic_metrics["math"].last_date == date(2024, 5, 5)
    assert status.last_interaction_date == date(2024, 5, 5)


def test_late_event_does_not_repair_a_broken_streak() -> None:
    # Processing order May 1, May 3 (gap: reset), then the late May 2.
    status = new_user_after("2024-05-01T05:00:00", "2024-05-03T05:00:00", "2024-05-02T05:00:00")
    assert status.streak_day == 1
    assert status.last_interaction_date == date(2024, 5, 3)


def test_timezone_change_moving_the_day_backwards_keeps_the_streak() -> None:
    # Stored under UTC+7 as May 2; the next event is later in time but May 1 in New York.
    status = status_with(
        0,
        streak_day=4,
        last_interaction_date=date(2024, 5, 2),
        last_interaction_at=utc("2024-05-01T18:00:00"),
    )
    result = apply_interaction(status, interaction(utc("2024-05-01T20:00:00")), NEW_YORK)
    assert result.streak_day == 4
    assert result.last_interaction_date == date(2024, 5, 2)


# ------------------------------------------------------------------------------------------
# Scores, levels and topics
# ------------------------------------------------------------------------------------------


def test_score_floor_at_zero() -> None:
    status = apply_all(status_with(10), interaction(utc("2024-05-01T05:00:00"), -25))
    assert status.friendship_score == 0
    assert status.topic_metrics["math"].score == 0
    again = apply_all(status, interaction(utc("2024-05-01T06:00:00"), 5))
    assert again.friendship_score == 5  # the floor forgets the debt


@pytest.mark.parametrize(
    ("start", "change", "level"),
    [
        (499, 0.5, P1),
        (499, 1, P2),
        (499.5, 0.5, P2),
        (500, -0.5, P1),
        (2999, 0.5, P2),
        (2999, 1, P3),
        (2999.5, 0.5, P3),
        (3000, -0.5, P2),
        (3010, -3010, P1),
    ],
)
def test_level_follows_the_new_score(start: float, change: float, level: Level) -> None:
    status = apply_all(status_with(start), interaction(utc("2024-05-01T05:00:00"), change))
    assert status.friendship_score == max(0, start + change)
    assert status.friendship_level is level


def test_topic_accumulates() -> None:
    status = apply_all(
        FriendshipStatus.new("u1"),
        interaction(utc("2024-05-01T05:00:00"), 10, bot_id="pika", turns=4),
        interaction(utc("2024-05-02T05:00:00"), 5.5, bot_id="bot-2", turns=3),
        interaction(utc("2024-05-02T06:00:00"), 1, bot_id="pika", turns=1),
        interaction(utc("2024-05-02T07:00:00"), 7, topic="art", bot_id="pika", turns=2),
    )
    math_topic = status.topic_metrics["math"]
    assert math_topic.score == 16.5
    assert math_topic.turns == 8
    assert math_topic.last_date == date(2024, 5, 2)
    assert math_topic.agents_used == ("bot-2", "pika")
    art = status.topic_metrics["art"]
    assert (art.score, art.turns, art.agents_used) == (7, 2, ("pika",))
    assert status.friendship_score == 23.5


@pytest.mark.parametrize(
    ("user_score", "topic_before", "change", "expected"),
    [
        # user PHASE2 throughout (600 + change stays in 500..2999)
        (600, 40, 9, P1),  # topic 49
        (600, 40, 10, P2),  # topic 50
        (600, 140, 10, P2),  # topic 150, capped by the user
        # user PHASE3 throughout
        (4000, 40, 9, P1),
        (4000, 40, 10, P2),
        (4000, 140, 9, P2),  # topic 149
        (4000, 140, 10, P3),  # topic 150
        # user PHASE1 throughout
        (100, 40, 10, P1),
        (100, 140, 10, P1),
    ],
)
def test_topic_level_after_apply(
    user_score: float, topic_before: float, change: float, expected: Level
) -> None:
    status = status_with(user_score, topic_metrics={"math": TopicMetrics(score=topic_before)})
    result = apply_interaction(status, interaction(utc("2024-05-01T05:00:00"), change), HCM)
    assert result.topic_metrics["math"].score == topic_before + change
    assert result.topic_metrics["math"].friendship_level is expected


def test_topic_level_uses_the_new_user_level() -> None:
    # The user crosses 3000 with this very conversation; the topic crosses 150 with it too.
    status = status_with(2990, topic_metrics={"math": TopicMetrics(score=145, friendship_level=P2)})
    result = apply_interaction(status, interaction(utc("2024-05-01T05:00:00"), 10), HCM)
    assert result.friendship_level is P3
    assert result.topic_metrics["math"].friendship_level is P3


def test_other_topics_are_recapped_when_the_user_level_changes() -> None:
    topics = {
        "math": TopicMetrics(score=400, friendship_level=P3),
        "art": TopicMetrics(score=60, friendship_level=P2),
        "music": TopicMetrics(score=10, friendship_level=P1),
    }
    status = status_with(3005, topic_metrics=topics)
    # A bad conversation on "music" drops the user to PHASE2.
    dropped = apply_interaction(
        status, interaction(utc("2024-05-01T05:00:00"), -10, topic="music"), HCM
    )
    assert dropped.friendship_level is P2
    assert {k: v.friendship_level for k, v in dropped.topic_metrics.items()} == {
        "math": P2,
        "art": P2,
        "music": P1,
    }
    # Back over 3000: topics past 150 are lifted again.
    lifted = apply_interaction(
        dropped, interaction(utc("2024-05-01T06:00:00"), 20, topic="music"), HCM
    )
    assert lifted.friendship_level is P3
    assert lifted.topic_metrics["math"].friendship_level is P3
    assert lifted.topic_metrics["art"].friendship_level is P2
    # Untouched topics keep their numbers.
    assert lifted.topic_metrics["math"].score == 400
    assert lifted.topic_metrics["math"].turns == 0


def test_apply_is_deterministic() -> None:
    items = [
        interaction(utc("2024-05-01T05:00:00"), 12, turns=2, emotion=Emotion.HAPPY),
        interaction(utc("2024-05-02T05:00:00"), -3, topic="art", bot_id="b2"),
    ]
    first = apply_all(FriendshipStatus.new("u1"), *items)
    for _ in range(5):
        assert apply_all(FriendshipStatus.new("u1"), *items) == first


# ------------------------------------------------------------------------------------------
# Properties
# ------------------------------------------------------------------------------------------

BASE = utc("2024-01-01T00:00:00")
emotions = st.sampled_from(list(Emotion))
interactions = st.builds(
    interaction,
    st.integers(min_value=0, max_value=60 * 24 * 20).map(lambda m: BASE + timedelta(minutes=m)),
    st.floats(min_value=-200, max_value=400, allow_nan=False),
    topic=st.sampled_from(["math", "art", "music"]),
    bot_id=st.sampled_from(["pika", "bot-2", "bot-3"]),
    turns=st.integers(min_value=0, max_value=30),
    emotion=emotions,
)


@settings(deadline=None)
@given(st.lists(interactions, max_size=25), st.sampled_from([HCM, NEW_YORK, UTC]))
def test_invariants_hold_after_any_sequence(items: list[Interaction], zone: tzinfo) -> None:
    status = FriendshipStatus.new("u1")
    for item in items:
        status = apply_interaction(status, item, zone)
        assert status.friendship_score >= 0
        assert status.friendship_level is level_for_score(status.friendship_score)
        assert status.streak_day >= 1
        for metrics in status.topic_metrics.values():
            assert metrics.score >= 0
            assert metrics.friendship_level is topic_level(metrics.score, status.friendship_level)
            assert metrics.friendship_level.rank <= status.friendship_level.rank
    if items:
        assert status.last_interaction_at == max(i.end_time for i in items)
        assert (
            status.last_interaction_date == max(i.end_time for i in items).astimezone(zone).date()
        )


@settings(deadline=None)
@given(
    st.lists(interactions, min_size=1, max_size=15, unique_by=lambda i: i.end_time), st.randoms()
)
def test_recency_and_totals_do_not_depend_on_arrival_order(
    items: list[Interaction], rnd: random.Random
) -> None:
    shuffled = list(items)
    rnd.shuffle(shuffled)
    chronological = sorted(items, key=lambda i: i.end_time)
    a = apply_all(FriendshipStatus.new("u1"), *chronological)
    b = apply_all(FriendshipStatus.new("u1"), *shuffled)
    assert a.last_interaction_at == b.last_interaction_at
    assert a.last_interaction_date == b.last_interaction_date
    assert a.last_emotion is b.last_emotion is chronological[-1].score.emotion
    assert set(a.topic_metrics) == set(b.topic_metrics)
    for topic in a.topic_metrics:
        assert a.topic_metrics[topic].turns == b.topic_metrics[topic].turns
        assert a.topic_metrics[topic].agents_used == b.topic_metrics[topic].agents_used
        assert a.topic_metrics[topic].last_date == b.topic_metrics[topic].last_date


@settings(deadline=None)
@given(
    st.lists(
        st.floats(min_value=0, max_value=500, allow_nan=False).map(lambda c: round(c, 1)),
        min_size=1,
        max_size=15,
    ),
    st.randoms(),
)
def test_non_negative_changes_sum_in_any_order(changes: list[float], rnd: random.Random) -> None:
    items = [interaction(BASE + timedelta(hours=i), c) for i, c in enumerate(changes)]
    rnd.shuffle(items)
    status = apply_all(FriendshipStatus.new("u1"), *items)
    assert status.friendship_score == pytest.approx(sum(changes))


@settings(deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=60 * 24 * 12), min_size=1, max_size=30))
def test_chronological_streak_counts_consecutive_local_days(minutes: list[int]) -> None:
    times = sorted(BASE + timedelta(minutes=m) for m in minutes)
    status = apply_all(FriendshipStatus.new("u1"), *(interaction(t) for t in times))
    days = sorted({t.astimezone(HCM).date() for t in times})
    expected = 1
    while expected < len(days) and days[-expected - 1] == days[-expected] - timedelta(days=1):
        expected += 1
    assert status.streak_day == expected
