"""`/v1/friendship`: a user's friendship status with the bot."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException, status

from conversation_events.domain.friendship import FriendshipStatus
from conversation_events.persistence import friendship as friendship_repo
from conversation_events.persistence.db import in_transaction, translate_errors
from conversation_events_api.deps import PathId, Reader, State
from conversation_events_api.overload import within
from conversation_events_api.schemas import NO_KEY, FriendshipView, error_responses

router = APIRouter(prefix="/v1/friendship", tags=["friendship"])


@router.get(
    "/status/{user_id}",
    responses=error_responses(
        {
            401: NO_KEY,
            403: "The key lacks the `read` scope.",
            404: "The user has no friendship status yet.",
            503: "PostgreSQL unreachable or past the request deadline, or overloaded.",
        }
    ),
    summary="Friendship score, level, streak and per-topic metrics of a user",
)
async def friendship_status(user_id: PathId, state: State, principal: Reader) -> FriendshipView:
    """Needs the `read` scope; another tenant's user of the same id is unknown (404)."""

    def load() -> FriendshipStatus | None:
        with translate_errors():
            return in_transaction(
                state.engine,
                lambda conn: friendship_repo.get_status(conn, principal.tenant, user_id),
            )

    found = await within(state.settings.request_timeout_s, asyncio.to_thread(load), "the read")
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no friendship status for user_id")
    return FriendshipView.model_validate(view(found))


def view(found: FriendshipStatus) -> dict[str, Any]:
    return {
        "user_id": found.user_id,
        "friendship_score": found.friendship_score,
        "friendship_level": found.friendship_level.value,
        "streak_day": found.streak_day,
        "last_interaction_date": found.last_interaction_date,
        "last_emotion": None if found.last_emotion is None else found.last_emotion.value,
        "topic_metrics": {k: v.to_json() for k, v in found.topic_metrics.items()},
    }
