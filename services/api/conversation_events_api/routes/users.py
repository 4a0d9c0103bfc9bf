"""`/v1/users/{user_id}`: erase everything stored about a user, or export it (`admin` scope).

Both act within the key's tenant only: the same user id in another tenant is another person.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from conversation_events.access import subject_hash
from conversation_events.persistence import users as user_repo
from conversation_events.persistence.db import in_transaction, translate_errors
from conversation_events_api import metrics
from conversation_events_api.deps import Admin, PathId, State
from conversation_events_api.overload import within
from conversation_events_api.routes.friendship import view
from conversation_events_api.schemas import (
    NO_KEY,
    NOT_ADMIN,
    FriendshipView,
    coarse_error,
    error_responses,
)

log = logging.getLogger(__name__)

# Not in the public OpenAPI document, like the key routes (see routes/admin.py).
router = APIRouter(prefix="/v1/users", tags=["users"], include_in_schema=False)

_ERRORS = error_responses(
    {401: NO_KEY, 403: NOT_ADMIN, 503: "PostgreSQL unreachable; nothing was changed."}
)


class ErasureView(BaseModel):
    user_id: str
    erased_at: datetime = Field(
        description=(
            "Conversations that ended up to this instant are refused from now on (410), "
            "also when still queued; a conversation that ends later starts the user afresh."
        )
    )
    events_deleted: int
    status_deleted: bool


class ExportedEvent(BaseModel):
    event_id: str
    conversation_id: str
    bot_id: str
    bot_name: str | None
    bot_type: str | None
    agent_tag: str | None
    start_time: datetime
    end_time: datetime
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    processed_at: datetime | None
    conversation_log: list[dict[str, Any]] | None = Field(
        description="The messages; null once dropped by the retention policy."
    )
    metadata: dict[str, Any] | None
    content_purged_at: datetime | None
    content_hash: str
    friendship_score_change: float | None
    new_friendship_level: str | None
    score_calculation_details: dict[str, Any] | None
    scoring_version: int | None


class UserExport(BaseModel):
    tenant: str
    user_id: str
    exported_at: datetime
    erased_at: datetime | None = Field(description="The user's last erasure, if any.")
    friendship_status: FriendshipView | None
    events: list[ExportedEvent]


@router.delete(
    "/{user_id}",
    responses=_ERRORS,
    summary="Erase everything stored about a user (answers once done)",
)
async def erase_user(user_id: PathId, state: State, principal: Admin) -> ErasureView:
    """Delete the user's friendship status and events (content included), in one transaction.

    Idempotent. Afterwards a conversation of this user that ended before the erasure, whether
    re-sent or still queued, is not stored or applied; a later one is.
    """

    def erase() -> user_repo.Erasure:
        with translate_errors():
            return in_transaction(
                state.engine, lambda conn: user_repo.erase_user(conn, principal.tenant, user_id)
            )

    done = await within(state.settings.request_timeout_s, asyncio.to_thread(erase), "erasure")
    metrics.ERASURES.labels(principal.name).inc()
    # The key's name and the counts; not the user id (the subject digest links the audit).
    log.info(
        "user erased",
        extra={
            "tenant": principal.tenant,
            "subject": subject_hash(principal.tenant, user_id),
            "events_deleted": done.events_deleted,
            "status_deleted": done.status_deleted,
        },
    )
    return ErasureView(
        user_id=user_id,
        erased_at=done.erased_at,
        events_deleted=done.events_deleted,
        status_deleted=done.status_deleted,
    )


@router.get(
    "/{user_id}/export",
    responses=_ERRORS,
    summary="Everything stored about a user, as JSON",
)
async def export_user(user_id: PathId, state: State, principal: Admin) -> UserExport:
    """The friendship status and every event (content while kept, results), oldest first.

    A user without data gets an empty export, not a 404.
    """

    def load() -> dict[str, Any]:
        with translate_errors():
            return in_transaction(
                state.engine, lambda conn: user_repo.export_user(conn, principal.tenant, user_id)
            )

    found = await within(state.settings.request_timeout_s, asyncio.to_thread(load), "export")
    log.info(
        "user exported",
        extra={"tenant": principal.tenant, "subject": subject_hash(principal.tenant, user_id)},
    )
    status = found["friendship_status"]
    return UserExport(
        tenant=principal.tenant,
        user_id=user_id,
        exported_at=datetime.now(UTC),
        erased_at=found["erased_at"],
        friendship_status=None if status is None else FriendshipView(**view(status)),
        events=[_event(row) for row in found["events"]],
    )


def _event(row: dict[str, Any]) -> ExportedEvent:
    return ExportedEvent(
        event_id=str(row["id"]),
        **{k: row[k] for k in ExportedEvent.model_fields if k not in ("event_id", "last_error")},
        last_error=coarse_error(row["status"], row["last_error"]),
    )
