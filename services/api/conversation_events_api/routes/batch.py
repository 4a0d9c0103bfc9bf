"""`POST /v1/conversations/end:batch`: accept many finished conversations in one request.

Each conversation goes the way of a single post: the same model validates it, the same row
builder and writer store it (the writer's batches commit before the answer), the same publisher
queues it. Only the answer differs: one result per conversation instead of one status.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError

from conversation_events import telemetry
from conversation_events.persistence.events import InsertOutcome, InsertStatus, NewEvent
from conversation_events_api import metrics
from conversation_events_api.accepting import announce, too_many_messages
from conversation_events_api.body import (
    json_body_doc,
    read_json_body,
    safe_text,
    validation_details,
    validation_error_doc,
)
from conversation_events_api.deps import Ingest, State
from conversation_events_api.overload import Overloaded, within
from conversation_events_api.schemas import (
    MAX_BATCH_ITEMS,
    NO_KEY,
    BatchAccepted,
    ConversationBatchRequest,
    ConversationEndRequest,
    RawBatch,
    error_responses,
)

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])


@router.post(
    "/end:batch",
    response_model=BatchAccepted,
    responses={
        **error_responses(
            {
                400: "Body not parseable: not UTF-8, or nested too deeply.",
                401: NO_KEY,
                403: "The key lacks the `ingest` scope (`forbidden`).",
                408: "Body not received within the client deadline.",
                413: (
                    f"More than {MAX_BATCH_ITEMS} conversations, or a body larger than the "
                    "configured batch limit; nothing is stored."
                ),
                503: (
                    "Not known to be stored, retry after `Retry-After`: PostgreSQL unreachable, "
                    "read-only or past the request deadline (`unavailable`), or the process is "
                    "overloaded (`overloaded`). Some conversations may be stored: sent again, "
                    "they come back as `duplicate` with their event ids."
                ),
            }
        ),
        422: validation_error_doc("The body is not an object with a `conversations` array."),
    },
    summary="Accept up to 500 finished conversations for scoring",
    openapi_extra=json_body_doc(ConversationBatchRequest),
)
async def conversation_end_batch(request: Request, state: State, principal: Ingest) -> Response:
    """Validate and store each conversation as `POST /v1/conversations/end` would, and answer
    `200` with one result per conversation, in request order.

    The status is `200` whenever the batch was read, whatever the items' outcomes; every
    `accepted` item is committed before the answer. Needs the `ingest` scope; the conversations
    belong to the key's tenant. Sending a batch again is idempotent: what was stored comes back
    as `duplicate` with the same `event_id`, queued once.
    """
    if state.batches_in_flight >= state.settings.max_batches_in_flight:
        raise Overloaded("too many batch requests in flight", bound="batches")
    state.batches_in_flight += 1
    try:
        return await _accept(request, state, principal.tenant)
    finally:
        state.batches_in_flight -= 1


async def _accept(request: Request, state: State, tenant: str) -> Response:
    settings = state.settings
    limit = settings.max_log_items
    context = {"not_after": datetime.now(UTC) + timedelta(seconds=settings.max_clock_skew_s)}
    results: list[dict[str, Any]] = []
    stored: list[tuple[int, NewEvent]] = []
    trace_context = telemetry.inject_current()  # the request's, for each event it stores
    for index, item, errors in await _validated(request, context):
        loc = ("body", "conversations", index)
        if isinstance(item, ConversationEndRequest):
            errors = too_many_messages(item, limit, loc) or []
            if not errors:
                stored.append((index, item.to_event(tenant, trace_context=trace_context)))
                results.append({})  # filled in once stored
                continue
        results.append(_invalid(index, item, errors))
    if stored:
        waiters = state.writer.insert_all([event for _, event in stored])
        outcomes = await within(
            settings.request_timeout_s,
            asyncio.gather(*waiters, return_exceptions=True),
            "storing the events",
        )
        failure = _record(state, stored, outcomes, results)
        if failure is not None:
            raise failure
    counts = Counter(result["status"] for result in results)
    body = {s: counts[s] for s in ("accepted", "duplicate", "conflict", "erased", "invalid")}
    metrics.REJECTED.labels("invalid").inc(counts["invalid"])
    return Response(orjson.dumps({**body, "results": results}), media_type="application/json")


async def _validated(
    request: Request, context: dict[str, Any]
) -> list[tuple[int, Any, list[dict[str, Any]]]]:
    """Each conversation of the body: (index, the valid request or the raw value, its field
    errors as a single post would answer them, with `loc` under `body.conversations.<index>`).

    The whole body is validated in one pass first (the usual case: every item valid). When
    some items are not, their errors come from that pass, so they read exactly as a single
    post's, and the others are validated one by one.
    """
    try:
        valid = (await read_json_body(request, ConversationBatchRequest, context)).conversations
    except RequestValidationError as exc:
        by_item = _errors_by_item(exc.errors())
        if by_item is None:  # the body itself is wrong: not JSON, no `conversations` list
            raise
        raw = RawBatch.model_validate_json(await request.body()).conversations
        _at_most(len(raw))
        checked: list[tuple[int, Any, list[dict[str, Any]]]] = []
        for index, item in enumerate(raw):
            errors = by_item.get(index)
            if errors is None:
                try:
                    item = ConversationEndRequest.model_validate(item, context=context)
                except ValidationError as failed:  # not expected: the one pass found it valid
                    errors = [
                        {**e, "loc": ("body", "conversations", index, *e["loc"])}
                        for e in failed.errors(include_url=False)
                    ]
            checked.append((index, item, validation_details(errors or [])))
        return checked
    _at_most(len(valid))
    return [(index, item, []) for index, item in enumerate(valid)]


def _errors_by_item(errors: Sequence[Any]) -> dict[int, list[Any]] | None:
    """Field errors grouped by the index of their conversation; None when one is not an
    item's (the body as a whole is invalid)."""
    grouped: dict[int, list[Any]] = {}
    for error in errors:
        loc = tuple(error.get("loc", ()))
        if len(loc) < 3 or loc[:2] != ("body", "conversations") or not isinstance(loc[2], int):
            return None
        grouped.setdefault(loc[2], []).append(error)
    return grouped


def _at_most(count: int) -> None:
    if count > MAX_BATCH_ITEMS:
        raise HTTPException(
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            detail=f"at most {MAX_BATCH_ITEMS} conversations per request, got {count}",
        )


def _record(
    state: State,
    stored: list[tuple[int, NewEvent]],
    outcomes: list[InsertOutcome | BaseException],
    results: list[dict[str, Any]],
) -> BaseException | None:
    """Fill in the stored items' results and queue the new events; returns the first error of
    an item that could not be stored (the new events are queued all the same)."""
    failure: BaseException | None = None
    for (index, event), outcome in zip(stored, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            failure = failure or outcome
            continue
        result: dict[str, Any] = {"index": index, "conversation_id": event.conversation_id}
        if outcome.status is InsertStatus.ERASED:
            results[index] = {**result, "status": "erased"}
            continue
        result["event_id"] = outcome.event_id
        if outcome.status is InsertStatus.CONFLICT:
            metrics.CONFLICTS.inc()
            results[index] = {**result, "status": "conflict"}
            continue
        if outcome.status is InsertStatus.CREATED:
            metrics.ACCEPTED.inc()
            announce(state.publisher, event)
            result["status"] = "accepted"
        else:
            metrics.DUPLICATES.inc()
            result["status"] = "duplicate"
        result["status_url"] = f"/v1/conversations/{quote(event.conversation_id, safe='')}"
        results[index] = result
    return failure


def _invalid(index: int, item: Any, errors: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {"index": index, "status": "invalid", "errors": errors}
    if isinstance(item, ConversationEndRequest):
        conversation_id: Any = item.conversation_id
    else:
        conversation_id = item.get("conversation_id") if isinstance(item, dict) else None
    if isinstance(conversation_id, str):
        result["conversation_id"] = safe_text(conversation_id)
    return result
