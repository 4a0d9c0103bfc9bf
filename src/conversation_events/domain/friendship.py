"""A user's friendship status and how one scored conversation changes it (SPEC section 4).

Everything here is a value: :func:`apply_interaction` takes the current status, the
interaction and the timezone that defines "a day", and returns the new status. The caller
(the worker) loads and locks the status row, applies, and stores the result in the same
transaction that marks the event processed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, tzinfo
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from conversation_events.domain.emotions import Emotion
from conversation_events.domain.scoring import ScoreResult

__all__ = [
    "PHASE2_SCORE",
    "PHASE3_SCORE",
    "TOPIC_PHASE2_SCORE",
    "TOPIC_PHASE3_SCORE",
    "FriendshipStatus",
    "Interaction",
    "Level",
    "TopicMetrics",
    "apply_interaction",
    "level_for_score",
    "local_date",
    "next_streak",
    "topic_level",
    "topic_metrics_from_json",
    "topic_metrics_to_json",
]

# Thresholds of SPEC section 4 (inclusive lower bounds).
PHASE2_SCORE = 500.0
PHASE3_SCORE = 3000.0
TOPIC_PHASE2_SCORE = 50.0
TOPIC_PHASE3_SCORE = 150.0


class Level(StrEnum):
    """Friendship phases, ordered by :attr:`rank`."""

    PHASE1_STRANGER = "PHASE1_STRANGER"
    PHASE2_ACQUAINTANCE = "PHASE2_ACQUAINTANCE"
    PHASE3_FRIEND = "PHASE3_FRIEND"

    @property
    def rank(self) -> int:
        """1, 2 or 3; compare levels by rank, never by their string values."""
        return _RANKS[self]


_RANKS = {Level.PHASE1_STRANGER: 1, Level.PHASE2_ACQUAINTANCE: 2, Level.PHASE3_FRIEND: 3}


def level_for_score(score: float) -> Level:
    """The user's level: PHASE1 below 500, PHASE2 from 500 below 3000, PHASE3 from 3000."""
    if score >= PHASE3_SCORE:
        return Level.PHASE3_FRIEND
    if score >= PHASE2_SCORE:
        return Level.PHASE2_ACQUAINTANCE
    return Level.PHASE1_STRANGER  # also for NaN, which compares false to everything


def topic_level(topic_score: float, user_level: Level) -> Level:
    """A topic's level: PHASE1 below 50; PHASE2 from 50 if the user is at least PHASE2;
    PHASE3 from 150 if the user is PHASE3. A topic never outranks its user."""
    user_level = Level(user_level)
    if topic_score >= TOPIC_PHASE3_SCORE and user_level is Level.PHASE3_FRIEND:
        return Level.PHASE3_FRIEND
    if topic_score >= TOPIC_PHASE2_SCORE and user_level.rank >= Level.PHASE2_ACQUAINTANCE.rank:
        return Level.PHASE2_ACQUAINTANCE
    return Level.PHASE1_STRANGER


def _parse_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).date()
    except ValueError:
        return None


def _number(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return default
    return number if math.isfinite(number) else default


@dataclass(frozen=True, slots=True)
class TopicMetrics:
    """What the user and the bots of one topic have built up.

    ``agents_used`` is kept sorted and without duplicates whatever order it is given in, so
    equal metrics serialise identically.
    """

    score: float = 0.0
    turns: int = 0
    last_date: date | None = None
    agents_used: tuple[str, ...] = ()
    friendship_level: Level = Level.PHASE1_STRANGER

    def __post_init__(self) -> None:
        object.__setattr__(self, "agents_used", tuple(sorted(set(self.agents_used))))

    def adding(
        self, change: float, turns: int, day: date | None, agents: tuple[str, ...]
    ) -> TopicMetrics:
        """These metrics with a contribution added: the score floored at 0 like the user's (a
        topic cannot owe friendship), the turns summed, the later day, the agents joined."""
        return replace(
            self,
            score=max(0.0, self.score + change),
            turns=self.turns + turns,
            last_date=max((d for d in (self.last_date, day) if d is not None), default=None),
            agents_used=(*self.agents_used, *agents),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict; ``last_date`` as an ISO date or None."""
        return {
            "score": self.score,
            "turns": self.turns,
            "last_date": self.last_date.isoformat() if self.last_date else None,
            "agents_used": list(self.agents_used),
            "friendship_level": self.friendship_level.value,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TopicMetrics:
        """Read :meth:`to_json` output back; missing or malformed fields take defaults.

        Tolerant on purpose: stored JSON written by an older version must never stop the
        worker from applying the next conversation.
        """
        if not isinstance(data, Mapping):
            return cls()
        turns = data.get("turns")
        agents = data.get("agents_used")
        raw_level = data.get("friendship_level")
        level = Level.PHASE1_STRANGER
        if isinstance(raw_level, str) and raw_level in Level.__members__:
            level = Level(raw_level)
        return cls(
            score=_number(data.get("score"), 0.0),
            turns=max(turns, 0) if isinstance(turns, int) and not isinstance(turns, bool) else 0,
            last_date=_parse_date(data.get("last_date")),
            agents_used=tuple(a for a in agents if isinstance(a, str))
            if isinstance(agents, list | tuple)
            else (),
            friendship_level=level,
        )


def topic_metrics_to_json(metrics: Mapping[str, TopicMetrics]) -> dict[str, Any]:
    """``{topic: metrics.to_json()}``, topics sorted for stable output."""
    return {topic: metrics[topic].to_json() for topic in sorted(metrics)}


def topic_metrics_from_json(data: Mapping[str, Any] | None) -> dict[str, TopicMetrics]:
    """Inverse of :func:`topic_metrics_to_json`; a missing or malformed document is empty."""
    if not isinstance(data, Mapping):
        return {}
    return {str(topic): TopicMetrics.from_json(value) for topic, value in data.items()}


def _empty_topics() -> Mapping[str, TopicMetrics]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class FriendshipStatus:
    """One user's friendship status.

    ``friendship_score`` is coerced to float and ``friendship_level`` and ``last_emotion``
    from their string values; ``topic_metrics`` is copied into a read-only mapping.
    """

    user_id: str
    friendship_score: float
    friendship_level: Level
    streak_day: int
    last_interaction_date: date | None = None
    last_interaction_at: datetime | None = None
    last_emotion: Emotion | None = None
    topic_metrics: Mapping[str, TopicMetrics] = field(default_factory=_empty_topics)

    def __post_init__(self) -> None:
        _require_aware(self.last_interaction_at, "last_interaction_at")
        # Coerced so that a database row (a Decimal score, string enums) can be passed as is.
        object.__setattr__(self, "friendship_score", float(self.friendship_score))
        object.__setattr__(self, "friendship_level", Level(self.friendship_level))
        if self.last_emotion is not None:
            object.__setattr__(self, "last_emotion", Emotion(self.last_emotion))
        object.__setattr__(self, "topic_metrics", MappingProxyType(dict(self.topic_metrics)))

    @classmethod
    def new(cls, user_id: str) -> FriendshipStatus:
        """The status of a user who has had no scored conversation yet."""
        return cls(
            user_id=user_id,
            friendship_score=0.0,
            friendship_level=Level.PHASE1_STRANGER,
            streak_day=0,
        )


@dataclass(frozen=True, slots=True)
class Interaction:
    """What one scored conversation contributes to its user's status."""

    end_time: datetime
    topic: str
    bot_id: str
    score: ScoreResult

    def __post_init__(self) -> None:
        _require_aware(self.end_time, "end_time")


def _require_aware(value: datetime | None, name: str) -> None:
    # A naive datetime has no calendar day in the configured zone; guessing one would
    # silently shift streaks, so it is a programming error.
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def local_date(instant: datetime, zone: tzinfo) -> date:
    """The calendar day of an aware ``instant`` in ``zone``."""
    return instant.astimezone(zone).date()


def next_streak(streak_day: int, last_date: date | None, today: date) -> int:
    """The streak after an interaction on ``today`` (a local calendar day).

    No previous day: 1. Same day: unchanged (at least 1). The next day: +1. A gap of more
    than one day: 1. A day *before* the last one (possible only if the configured timezone
    changed between events) is treated like the same day: we cannot tell, so nothing moves.
    """
    if last_date is None:
        return 1
    if today <= last_date:
        return max(streak_day, 1)
    if today - last_date == timedelta(days=1):
        return streak_day + 1
    return 1


def apply_interaction(
    status: FriendshipStatus, interaction: Interaction, zone: tzinfo
) -> FriendshipStatus:
    """The status after one scored conversation. Pure: the caller supplies the timezone.

    * ``friendship_score = max(0, score + change)``; the level follows the new score.
    * Streak, ``last_interaction_date``, ``last_interaction_at`` and ``last_emotion`` move
      only for a conversation that ended no earlier than ``last_interaction_at``; a late
      (out-of-order) conversation still changes scores and topic metrics. The streak is
      therefore computed in processing order: a late event does not repair a gap.
    * The conversation's topic: ``score += change`` floored at 0 like the user's score (a
      topic cannot owe friendship), ``turns += turns``, ``last_date`` = the later of the two
      days, the bot id added to ``agents_used``.
    * Every topic's level in ``status`` is recomputed from its score and the user's *new*
      level: a user who drops to PHASE1 caps all topics, and one who reaches PHASE3 lifts
      topics already past 150. (The worker passes a status holding only the topics of the
      events at hand; levels are not stored, the status's reader computes them the same way.)
    """
    change = interaction.score.change
    score = max(0.0, status.friendship_score + change)
    level = level_for_score(score)
    day = local_date(interaction.end_time, zone)

    late = (
        status.last_interaction_at is not None and interaction.end_time < status.last_interaction_at
    )
    moved = status  # a late conversation leaves the streak and the last-interaction fields
    if not late:
        previous_day = status.last_interaction_date
        moved = replace(
            status,
            streak_day=next_streak(status.streak_day, previous_day, day),
            last_interaction_date=day if previous_day is None else max(previous_day, day),
            last_interaction_at=interaction.end_time,
            last_emotion=interaction.score.emotion,
        )

    current = status.topic_metrics.get(interaction.topic, TopicMetrics())
    updated = current.adding(change, interaction.score.turns, day, (interaction.bot_id,))
    topics = {**status.topic_metrics, interaction.topic: updated}
    topics = {
        name: replace(metrics, friendship_level=topic_level(metrics.score, level))
        for name, metrics in sorted(topics.items())
    }
    return replace(moved, friendship_score=score, friendship_level=level, topic_metrics=topics)
