"""`/v1/conversations`: accept a finished conversation, report an event's status."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import Response
from opentelemetry import trace
from sqlalchemy import Connection

from conversation_events import telemetry
from conversation_events.errors import ConflictingEvent
from conversation_events.persistence import events as event_repo
from conversation_events.persistence.db import in_transaction, translate_errors
from conversation_events.persistence.events import InsertStatus
from conversation_events_api import metrics
from conversation_events_api.accepting import announce, too_many_messages
from conversation_events_api.body import json_body_doc, read_json_body, validation_error_doc
from conversation_events_api.deps import Ingest, PathId, Reader, State
from conversation_events_api.overload import within
from conversation_events_api.schemas import (
    NO_KEY,
    Accepted,
    ConversationEndRequest,
    EventView,
    error_responses,
)

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])

_ERRORS = {
    401: NO_KEY,
    403: "The key lacks the route's scope (`forbidden`).",
    413: "Body larger than the configured limit.",
    503: (
        "Not stored, retry after `Retry-After`: PostgreSQL unreachable, read-only or past the "
        "request deadline (`unavailable`), or the process is overloaded (`overloaded`)."
    ),
}


@router.post(
    "/end",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses={
        **error_responses(
            {
                **_ERRORS,
                400: "Body not parseable: not UTF-8, or nested too deeply.",
                408: "Body not received within the client deadline.",
                409: "Conversation id re-used with other content.",
                410: "The user was erased after this conversation ended (`erased`).",
            }
        ),
        422: validation_error_doc("Validation Error"),
    },
    summary="Accept a finished conversation for scoring",
    openapi_extra=json_body_doc(ConversationEndRequest),
)
async def conversation_end(request: Request, state: State, principal: Ingest) -> Response:
    """Store the conversation durably (status PENDING), queue it, and answer 202.

    Needs the `ingest` scope; the conversation belongs to the key's tenant. Re-sending the same
    conversation is idempotent (202, same `event_id`, queued once). Of `metadata`, only the
    keys scoring uses are stored.
    """
    not_after = datetime.now(UTC) + timedelta(seconds=state.settings.max_clock_skew_s)
    payload = await read_json_body(request, ConversationEndRequest, {"not_after": not_after})
    too_long = too_many_messages(payload, state.settings.max_log_items)
    if too_long:
        raise HTTPException(422, detail=too_long)
    event = payload.to_event(principal.tenant, trace_context=telemetry.inject_current())
    outcome = await within(
        state.settings.request_timeout_s, state.writer.insert(event), "storing the event"
    )
    if event.trace_context is not None:  # traced: the span names the event it stored
        trace.get_current_span().set_attribute("conversation_events.event_id", outcome.event_id)
    if outcome.status is InsertStatus.ERASED:
        raise HTTPException(
            status.HTTP_410_GONE,
            detail="the user was erased after this conversation ended; it is not stored",
        )
    if outcome.status is InsertStatus.CONFLICT:
        metrics.CONFLICTS.inc()
        raise ConflictingEvent(payload.conversation_id, outcome.event_id)
    if outcome.status is InsertStatus.CREATED:
        metrics.ACCEPTED.inc()
        announce(state.publisher, event)
    else:
        metrics.DUPLICATES.inc()
    body = {
        "status": "accepted",
        "conversation_id": payload.conversation_id,
        "event_id": outcome.event_id,
        "status_url": f"/v1/conversations/{quote(payload.conversation_id, safe='')}",
    }
    return Response(orjson.dumps(body), status.HTTP_202_ACCEPTED, media_type="application/json")


@router.get(
    "/{conversation_id}",
    responses=error_responses({**_ERRORS, 404: "Unknown conversation."}),
    summary="Status and result of one conversation event",
)
async def get_conversation(conversation_id: PathId, state: State, principal: Reader) -> EventView:
    """Needs the `read` scope; another tenant's conversation is unknown (404)."""

    def read(conn: Connection) -> dict[str, Any] | None:
        row = event_repo.get_by_conversation_id(conn, principal.tenant, conversation_id)
        return None if row is None else dict(row)

    def load() -> dict[str, Any] | None:
        with translate_errors():
            return in_transaction(state.engine, read)

    row = await within(state.settings.request_timeout_s, asyncio.to_thread(load), "the read")
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="unknown conversation_id")
    return EventView.of(row)
