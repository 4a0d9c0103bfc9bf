"""Pure domain rules: log normalisation, conversation analysis, scoring and friendship.

Nothing in this package does I/O or reads the clock or settings (an import-linter contract
in pyproject.toml keeps persistence, messaging and settings out); callers pass in "now",
the timezone and the weights. The submodules are the public interface; the most used names
are re-exported here.
"""

from conversation_events.domain.conversation import (
    Message,
    Speaker,
    classify_speaker,
    count_turns,
    is_scored_bot_type,
    normalise_log,
    topic_for,
)
from conversation_events.domain.emotions import Emotion, classify_emotion
from conversation_events.domain.friendship import (
    FriendshipStatus,
    Interaction,
    Level,
    TopicMetrics,
    apply_interaction,
    level_for_score,
    topic_level,
)
from conversation_events.domain.questions import count_user_questions, is_question
from conversation_events.domain.scoring import (
    DEFAULT_WEIGHTS,
    SCORING_VERSION,
    ScoreResult,
    ScoringWeights,
    score_conversation,
)

__all__ = [
    "DEFAULT_WEIGHTS",
    "SCORING_VERSION",
    "Emotion",
    "FriendshipStatus",
    "Interaction",
    "Level",
    "Message",
    "ScoreResult",
    "ScoringWeights",
    "Speaker",
    "TopicMetrics",
    "apply_interaction",
    "classify_emotion",
    "classify_speaker",
    "count_turns",
    "count_user_questions",
    "is_question",
    "is_scored_bot_type",
    "level_for_score",
    "normalise_log",
    "score_conversation",
    "topic_for",
    "topic_level",
]
