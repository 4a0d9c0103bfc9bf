"""Request and response bodies of the HTTP API."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, NotRequired

import orjson
from pydantic import (
    AfterValidator,
    AliasChoices,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    StrictInt,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
    with_config,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, core_schema
from typing_extensions import TypedDict

from conversation_events.access import DEFAULT_TENANT
from conversation_events.domain.emotions import EmotionValue
from conversation_events.domain.scoring import SCORED_METADATA_KEYS
from conversation_events.persistence.events import NewEvent, content_hash
from conversation_events.persistence.tables import EventStatusValue

# PostgreSQL cannot store NUL in text or JSONB: refuse it at the door with a clear error.
NO_NUL = r"^[^\x00]*$"
Id = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255, pattern=NO_NUL)
]
ShortText = Annotated[str, StringConstraints(max_length=255, pattern=NO_NUL)]
#: Deepest nesting accepted inside `metadata` (each object or array is one level). Stored
#: metadata is re-serialised (content hash, JSONB), so unbounded depth would exhaust recursion.
MAX_METADATA_DEPTH = 32
_INT64 = (-(2**63), 2**63 - 1)


def _in_utc(value: datetime) -> datetime:
    """The same instant with UTC as its zone.

    RFC 3339 allows offsets up to ±23:59, PostgreSQL only up to ±15:59, and an instant such as
    "0001-01-01T00:00:00+05:00" has no UTC form at all: normalising here stores every instant
    the same way and refuses the unrepresentable ones with a 422.
    """
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("instant out of range once converted to UTC") from None


def _rfc3339_text(value: Any) -> Any:
    """Only text: a bare number would otherwise be taken as a Unix timestamp, silently."""
    if not isinstance(value, str | datetime):
        raise ValueError("must be an RFC 3339 date-time string with an offset")
    return value


Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(_in_utc)]


class _TextOnly:
    """An aware date-time that JSON gives only as text, checked by pydantic-core alone.

    The instant of every message goes this way: no Python call per message (which cost about a
    third of a body's validation). JSON numbers are refused by the strict schema; Python input
    (a body decoded before validation) takes the checks of `Instant` before UTC. The UTC form
    comes later, once per log (`_messages_in_utc`).
    """

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.json_or_python_schema(
            json_schema=core_schema.datetime_schema(strict=True, tz_constraint="aware"),
            python_schema=core_schema.no_info_before_validator_function(
                _rfc3339_text, handler(source)
            ),
        )


MessageInstant = Annotated[AwareDatetime, _TextOnly]

#: Fields the server owns; a client that sends them gets a 422 rather than silent dropping.
SERVER_OWNED = frozenset(
    {
        "event_id",
        "status",
        "attempts",
        "last_error",
        "friendship_score_change",
        "new_friendship_level",
        "score_calculation_details",
        "processed_at",
        "published_at",
    }
)


# A typed dict, not a model: a conversation has tens of messages, and pydantic-core builds a
# dict in a fraction of a model's time.
@with_config(ConfigDict(extra="ignore"))
class LogItem(TypedDict):
    character: Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=NO_NUL)]
    content: Annotated[str, StringConstraints(max_length=20_000, pattern=NO_NUL)]
    timestamp: NotRequired[
        Annotated[MessageInstant | None, Field(json_schema_extra={"default": None})]
    ]


def _messages_in_utc(log: list[LogItem]) -> list[LogItem]:
    """Each message's instant in UTC (None when it has none), in one pass over the log; an
    instant without a UTC form is refused at its own `loc`, as `Instant` refuses it."""
    errors: list[InitErrorDetails] = []
    for index, item in enumerate(log):
        instant = item.get("timestamp")
        if instant is None:
            item["timestamp"] = None
        elif instant.utcoffset():  # "Z" and "+00:00" are UTC already
            try:
                item["timestamp"] = _in_utc(instant)
            except ValueError as exc:
                errors.append(
                    InitErrorDetails(
                        type=PydanticCustomError("value_error", "Value error, {error}"),
                        loc=(index, "timestamp"),
                        input=instant.isoformat(),
                        ctx={"error": str(exc)},
                    )
                )
    if errors:
        raise ValidationError.from_exception_data("conversation_log", errors)
    return log


class Metadata(BaseModel):
    """Values computed upstream (e.g. by an LLM); when present they override our analysis.

    Only `session_emotion`, `user_initiated_questions` and `new_memories_count` are stored.
    Other keys are accepted for compatibility, checked to be valid JSON (422 otherwise), and
    dropped: they are never stored nor queued.
    """

    model_config = ConfigDict(extra="allow")

    session_emotion: EmotionValue | None = None
    # Strict: "3" or true are refused instead of silently becoming 3 or 1.
    user_initiated_questions: Annotated[StrictInt, Field(ge=0, le=100_000)] | None = None
    new_memories_count: Annotated[StrictInt, Field(ge=0, le=100_000)] | None = None

    @model_validator(mode="after")
    def _storable_extras(self) -> Metadata:
        problem = _json_problem(self.model_extra) if self.model_extra else None
        if problem:
            raise ValueError(f"metadata {problem}")
        return self


class ConversationEndRequest(BaseModel):
    # Unknown fields are kept only to be checked against SERVER_OWNED, then left out of the
    # canonical form and of what is stored.
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    conversation_id: Id
    user_id: Id
    bot_id: Id
    bot_name: ShortText | None = None
    bot_type: ShortText | None = Field(
        None, description="e.g. GREETING, TALK, GAME_ACTIVITY, NEXT_LESSON (not scored)"
    )
    agent_tag: ShortText | None = Field(None, description="The topic of this conversation.")
    start_time: Instant = Field(description="RFC 3339 with offset.")
    end_time: Instant = Field(description="RFC 3339 with offset; not before start_time.")
    conversation_log: Annotated[list[LogItem], AfterValidator(_messages_in_utc)] = Field(
        validation_alias=AliasChoices("conversation_log", "conversation_logs"),
        description="The messages; may be empty. Also accepted as `conversation_logs`.",
    )
    metadata: Metadata | None = None

    # After, not before: a model validator before the fields gets the body as Python objects,
    # and pydantic-core then validates those instead of the JSON (about twice the cost).
    @model_validator(mode="after")
    def _refuse_server_owned(self) -> ConversationEndRequest:
        owned = sorted(SERVER_OWNED & self.model_extra.keys()) if self.model_extra else None
        if owned:
            raise ValueError(f"server-owned fields cannot be set: {', '.join(owned)}")
        return self

    @field_validator("end_time")
    @classmethod
    def _not_before_start(cls, end: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start_time")
        if start is not None and end < start:
            raise ValueError("end_time must not be before start_time")
        return _not_in_future(end, info)

    @field_validator("start_time")
    @classmethod
    def _start_not_in_future(cls, start: datetime, info: ValidationInfo) -> datetime:
        return _not_in_future(start, info)

    def stored_metadata(self) -> dict[str, Any] | None:
        """What is kept of `metadata`: the keys scoring reads, nothing else (minimisation)."""
        if self.metadata is None:
            return None
        return {key: getattr(self.metadata, key) for key in SCORED_METADATA_KEYS}

    def to_event(
        self, tenant: str = DEFAULT_TENANT, trace_context: dict[str, str] | None = None
    ) -> NewEvent:
        """The row to store for this request in `tenant`: a fresh event id, the content hash of
        its canonical form, only the kept part of `metadata`, and the W3C trace context the
        request was traced under (None: untraced)."""
        canonical = self.canonical()
        log = orjson.dumps(canonical["conversation_log"], option=orjson.OPT_SORT_KEYS)
        # The log is serialised once: for the hash, and as the JSONB value stored.
        canonical["conversation_log"] = orjson.Fragment(log)
        return NewEvent(
            id=str(uuid.uuid4()),
            tenant=tenant,
            conversation_id=self.conversation_id,
            user_id=self.user_id,
            bot_id=self.bot_id,
            bot_name=self.bot_name,
            bot_type=self.bot_type,
            agent_tag=self.agent_tag,
            start_time=self.start_time,
            end_time=self.end_time,
            conversation_log=canonical["conversation_log"],
            metadata=self.stored_metadata(),
            content_hash=content_hash(canonical),
            trace_context=trace_context,
        )

    def canonical(self) -> dict[str, Any]:
        """The content that defines this conversation: instants in UTC, aliases resolved.

        Instants stay `datetime`s: orjson writes a UTC one as `isoformat()` does
        ("2026-03-10T10:00:00+00:00", microseconds when there are some), so the hash and the
        stored log read as they always have.
        """
        return self.model_dump(mode="python", exclude=set(self.model_extra or ()))


def _not_in_future(value: datetime, info: ValidationInfo) -> datetime:
    """Refuse an instant after the context's `not_after` (now plus the allowed clock skew).

    A conversation cannot end in the future; one stamped years ahead would make every real
    conversation afterwards "late" for the user's streak. The route passes the bound, so
    validation stays free of the clock.
    """
    not_after = (info.context or {}).get("not_after")
    if not_after is not None and value > not_after:
        raise ValueError(f"must not be later than {not_after.isoformat()} (now plus clock skew)")
    return value


def _json_problem(value: Any) -> str | None:
    """Why `value` cannot be stored and hashed as JSON, or None when it can.

    Iterative, so a deeply nested value is refused instead of exhausting the recursion limit.
    PostgreSQL refuses NUL and unpaired surrogates; the hash (orjson) refuses integers beyond
    64 bits; JSON itself has no NaN or infinity.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_METADATA_DEPTH:
                return f"must not nest deeper than {MAX_METADATA_DEPTH} levels"
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "must not contain NUL characters"
            if not _valid_unicode(item):
                return "must not contain unpaired surrogates"
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if not _INT64[0] <= item <= _INT64[1]:
                return "integers must fit in 64 bits"
        elif isinstance(item, float) and not math.isfinite(item):
            return "numbers must be finite"
    return None


def _valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: Most conversations one batch request may carry; a request with more gets 413.
MAX_BATCH_ITEMS = 500


class ConversationBatchRequest(BaseModel):
    """Conversations to accept together; each one is validated, stored and answered on its own
    (an invalid one does not fail the others)."""

    model_config = ConfigDict(extra="ignore")

    conversations: list[ConversationEndRequest] = Field(
        description=(
            f"Up to {MAX_BATCH_ITEMS} conversations, each as the body of "
            "`POST /v1/conversations/end`; more than that is a 413."
        ),
        json_schema_extra={"maxItems": MAX_BATCH_ITEMS},
    )


class RawBatch(BaseModel):
    """A batch request's conversations as plain JSON values, to validate one by one."""

    model_config = ConfigDict(extra="ignore")

    conversations: list[Any]


BatchItemStatus = Literal["accepted", "duplicate", "conflict", "erased", "invalid"]


class BatchItemResult(BaseModel):
    index: int = Field(description="Position of the conversation in the request, from 0.")
    status: BatchItemStatus = Field(
        description=(
            "`accepted`: stored now (committed) and queued for scoring, as a single post's 202. "
            "`duplicate`: the same content was stored before (or earlier in this batch); "
            "`event_id` is the stored event's, nothing is queued again. `conflict`: the "
            "conversation id is stored with other content (a single post's 409); nothing is "
            "stored, `event_id` is the stored event's. `erased`: the user was erased after this "
            "conversation ended (a single post's 410); nothing is stored. `invalid`: refused "
            "as a single post's 422, `errors` says why; nothing is stored."
        )
    )
    conversation_id: str | None = Field(
        None, description="The item's conversation id, when it has one that is text."
    )
    event_id: str | None = Field(None, description="accepted, duplicate, conflict.")
    status_url: str | None = Field(None, description="accepted and duplicate.")
    errors: list[dict[str, Any]] | None = Field(
        None,
        description=(
            "invalid: field errors in the form of a single post's 422 `detail`, each `loc` "
            "starting with `body`, `conversations` and the item's index."
        ),
    )


class BatchAccepted(BaseModel):
    """One result per conversation, in request order, and the count of each status."""

    accepted: int
    duplicate: int
    conflict: int
    erased: int
    invalid: int
    results: list[BatchItemResult]


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    conversation_id: str
    event_id: str
    status_url: str


ErrorCode = Literal["retrying", "attempts_exhausted", "processing_failed"]


def coarse_error(status: str, last_error: str | None) -> ErrorCode | None:
    """What a client may know of a failure: a code. The details (driver messages naming hosts
    and ports) stay in the logs and in the database for operators."""
    if last_error is None:
        return None
    if status != "FAILED":
        return "retrying"
    return "attempts_exhausted" if last_error.startswith("gave up after") else "processing_failed"


class EventView(BaseModel):
    event_id: str
    conversation_id: str
    user_id: str
    bot_id: str
    status: EventStatusValue
    attempts: int
    last_error: ErrorCode | None = Field(
        description=(
            "Why the last attempt failed, as a code: `retrying` (a retry is due), "
            "`attempts_exhausted` or `processing_failed` (FAILED). Details are in the logs."
        )
    )
    created_at: datetime
    processed_at: datetime | None
    friendship_score_change: float | None = None
    new_friendship_level: str | None = None
    score_calculation_details: dict[str, Any] | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> EventView:
        """The view of a stored event row."""
        return cls(
            event_id=str(row["id"]),
            conversation_id=row["conversation_id"],
            user_id=row["user_id"],
            bot_id=row["bot_id"],
            status=row["status"],
            attempts=row["attempts"],
            last_error=coarse_error(row["status"], row["last_error"]),
            created_at=row["created_at"],
            processed_at=row["processed_at"],
            friendship_score_change=row["friendship_score_change"],
            new_friendship_level=row["new_friendship_level"],
            score_calculation_details=row["score_calculation_details"],
        )


class TopicView(BaseModel):
    score: float
    turns: int
    last_date: date | None
    agents_used: list[str]
    friendship_level: str


class FriendshipView(BaseModel):
    user_id: str
    friendship_score: float
    friendship_level: str
    streak_day: int
    last_interaction_date: date | None
    last_emotion: str | None
    topic_metrics: dict[str, TopicView]


class ErrorBody(BaseModel):
    detail: str
    code: str


#: What a 401 is, on every route that needs a key.
NO_KEY = "Missing or invalid API key."
#: What a 403 is, on the operator routes.
NOT_ADMIN = "The key lacks the `admin` scope (`forbidden`)."


def error_responses(descriptions: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """A route's documented error answers (its `responses`): each status, with its description
    and the error body."""
    return {code: {"model": ErrorBody, "description": text} for code, text in descriptions.items()}
