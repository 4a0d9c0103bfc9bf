"""Request bodies for tests."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

# Re-exported: the tests that build bodies here score them with the one oracle.
from tests.spec import expected_change as expected_change


def conversation(
    *,
    conversation_id: str | None = None,
    user_id: str | None = None,
    bot_id: str = "bot-1",
    end_time: datetime | None = None,
    emotion: str | None = "happy",
    questions: int | None = 1,
    memories: int | None = 0,
    messages: int = 6,
    **fields: Any,
) -> dict[str, Any]:
    """A valid conversation; metadata pins the scoring inputs so the change is predictable."""
    end = end_time or datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    log = []
    for i in range(messages):
        speaker = "USER" if i % 2 == 0 else "PIKA"
        log.append({"character": speaker, "content": f"message {i}", "timestamp": end.isoformat()})
    metadata = {
        k: v
        for k, v in {
            "session_emotion": emotion,
            "user_initiated_questions": questions,
            "new_memories_count": memories,
        }.items()
        if v is not None
    }
    body: dict[str, Any] = {
        "conversation_id": conversation_id or f"conv-{uuid.uuid4().hex}",
        "user_id": user_id or f"user-{uuid.uuid4().hex[:12]}",
        "bot_id": bot_id,
        "bot_name": "Pika",
        "bot_type": "TALK",
        "agent_tag": "animals",
        "start_time": (end - timedelta(minutes=5)).isoformat(),
        "end_time": end.isoformat(),
        "conversation_log": log,
        "metadata": metadata or None,
    }
    body.update(fields)
    return body


def conversations_for(
    users: list[str], count: int, *, seed: int, max_messages: int = 12
) -> list[dict[str, Any]]:
    """`count` bodies spread over `users`, with emotions that never lower a score: the score
    floor never applies, so each user's score must be the plain sum of its events' changes."""
    rng = random.Random(seed)
    return [
        conversation(
            user_id=rng.choice(users),
            emotion=rng.choice(["happy", "interesting", "neutral"]),
            questions=rng.randint(0, 3),
            memories=rng.randint(0, 2),
            messages=rng.randint(0, max_messages),
        )
        for _ in range(count)
    ]
