"""The SPEC's numbers, written down once for every test tier: the scoring oracle.

Dependency-free on purpose (the standard library only, nothing of the product): the black-box
e2e suite imports it as well as the unit, integration and chaos tests, so the expected score
of a conversation is computed one way everywhere, independently of the code under test.
"""

from __future__ import annotations

from typing import Any

#: SPEC section 3, scoring version 1: points per turn, per user question, per new memory.
PER_TURN = 0.5
PER_QUESTION = 3.0
PER_MEMORY = 5.0
#: SPEC section 3: the emotion bonus of scoring version 1.
EMOTION_BONUS = {
    "interesting": 15.0,
    "happy": 10.0,
    "neutral": 0.0,
    "sad": -5.0,
    "angry": -10.0,
    "boring": -15.0,
}
#: The friendship levels, lowest first.
LEVELS = ("PHASE1_STRANGER", "PHASE2_ACQUAINTANCE", "PHASE3_FRIEND")
#: Event statuses after which nothing more happens to an event.
TERMINAL = frozenset({"PROCESSED", "SKIPPED", "FAILED"})


def expected_change(body: dict[str, Any]) -> float:
    """SPEC section 3 for a body whose log alternates speakers and whose metadata is complete."""
    turns = sum(1 for item in body["conversation_log"] if item["content"].strip()) // 2
    meta = body["metadata"]
    return float(
        PER_TURN * turns
        + PER_QUESTION * meta["user_initiated_questions"]
        + EMOTION_BONUS[meta["session_emotion"]]
        + PER_MEMORY * meta["new_memories_count"]
    )
