"""The dependency-free SPEC facts the black-box suite uses are the product's own."""

from __future__ import annotations

from tests import spec

from conversation_events.domain.emotions import Emotion
from conversation_events.domain.friendship import Level
from conversation_events.persistence.tables import TERMINAL_STATUSES


def test_emotions_levels_and_terminal_statuses_agree_with_the_product() -> None:
    assert set(spec.EMOTION_BONUS) == {e.value for e in Emotion}
    assert tuple(level.value for level in Level) == spec.LEVELS
    assert {status.value for status in TERMINAL_STATUSES} == spec.TERMINAL
