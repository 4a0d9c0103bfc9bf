"""`POST /v1/conversations/end` and the two GET routes: status codes and bodies (SPEC section 2)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.e2e.helpers import Api, conversation, unique

pytestmark = pytest.mark.e2e

UUID_LENGTH = 36


def error_locations(response: Any) -> list[tuple[Any, ...]]:
    """The `loc` of each field-level error of a 422 body."""
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail
    for error in detail:
        assert {"loc", "msg", "type"} <= error.keys(), error
        assert isinstance(error["msg"], str) and error["msg"]
    return [tuple(error["loc"]) for error in detail]


# --- 202 and idempotency ---------------------------------------------------------------------


def test_accepts_with_202_and_a_status_url(api: Api) -> None:
    body = conversation()
    response = api.post(body)
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "accepted"
    assert accepted["conversation_id"] == body["conversation_id"]
    assert len(accepted["event_id"]) == UUID_LENGTH
    assert accepted["status_url"] == f"/v1/conversations/{body['conversation_id']}"
    view = api.http.get(accepted["status_url"])
    assert view.status_code == 200
    assert view.json()["event_id"] == accepted["event_id"]


def test_resending_the_same_conversation_is_idempotent(api: Api) -> None:
    body = conversation()
    first = api.accept(body)
    for _ in range(3):
        assert api.accept(copy.deepcopy(body)) == first
    view = api.wait_done(body["conversation_id"])
    assert view["status"] == "PROCESSED"
    assert view["event_id"] == first
    again = api.post(body)  # after processing too: same answer, nothing re-applied
    assert again.status_code == 202 and again.json()["event_id"] == first


def test_equivalent_spellings_are_the_same_content(api: Api) -> None:
    """`conversation_logs` is an alias, and an instant may be written with any offset."""
    body = conversation()
    first = api.accept(body)
    respelled = copy.deepcopy(body)
    respelled["conversation_logs"] = respelled.pop("conversation_log")
    plus7 = timezone(timedelta(hours=7))
    for key in ("start_time", "end_time"):
        respelled[key] = datetime.fromisoformat(body[key]).astimezone(plus7).isoformat()
    assert api.accept(respelled) == first


def test_same_id_with_other_content_is_a_conflict(api: Api) -> None:
    body = conversation()
    event_id = api.accept(body)
    changed = copy.deepcopy(body)
    changed["conversation_log"].append({"character": "USER", "content": "one more thing"})
    response = api.post(changed)
    assert response.status_code == 409
    conflict = response.json()
    assert conflict["code"] == "conflict"
    assert conflict["event_id"] == event_id
    assert conflict["detail"]
    assert api.accept(body) == event_id  # the original content is still the stored one


def test_an_empty_log_and_no_optional_fields_are_accepted(api: Api) -> None:
    body = {
        "conversation_id": unique("conv"),
        "user_id": unique("user"),
        "bot_id": "bot-e2e",
        "start_time": "2026-03-10T10:00:00+07:00",
        "end_time": "2026-03-10T10:00:00+07:00",
        "conversation_log": [],
    }
    api.accept(body)


def test_unknown_fields_are_ignored(api: Api) -> None:
    body = conversation(
        client_version="3.1", conversation_log=[{"character": "USER", "content": "hi", "mood": 3}]
    )
    api.accept(body)


# --- 422 ---------------------------------------------------------------------------------------


def test_missing_fields_are_each_reported(api: Api) -> None:
    locations = error_locations(api.post({}))
    for field in ("conversation_id", "user_id", "bot_id", "start_time", "end_time"):
        assert ("body", field) in locations
    assert any(
        loc[:2] == ("body", "conversation_log") or loc == ("body", "conversation_logs")
        for loc in locations
    )


@pytest.mark.parametrize(
    ("change", "location"),
    [
        ({"conversation_id": ""}, ("body", "conversation_id")),
        ({"conversation_id": "   "}, ("body", "conversation_id")),
        ({"conversation_id": "x" * 256}, ("body", "conversation_id")),
        ({"user_id": 42}, ("body", "user_id")),
        ({"bot_id": None}, ("body", "bot_id")),
        ({"bot_type": ["TALK"]}, ("body", "bot_type")),
        ({"start_time": "yesterday"}, ("body", "start_time")),
        ({"start_time": "2026-03-10T10:00:00"}, ("body", "start_time")),  # no offset
        ({"end_time": "2026-02-30T10:00:00Z"}, ("body", "end_time")),
        ({"end_time": "2026-03-10T10:00:00+25:00"}, ("body", "end_time")),
        ({"end_time": "2026-03-10T10:00:00 Asia/Ho_Chi_Minh"}, ("body", "end_time")),
        ({"conversation_log": "hello"}, ("body", "conversation_log")),
        (
            {"conversation_log": [{"content": "who am I"}]},
            ("body", "conversation_log", 0, "character"),
        ),
        (
            {"conversation_log": [{"character": "USER", "content": 7}]},
            ("body", "conversation_log", 0, "content"),
        ),
        (
            {"conversation_log": [{"character": "USER", "content": "x", "timestamp": "noon"}]},
            ("body", "conversation_log", 0, "timestamp"),
        ),
        ({"metadata": {"session_emotion": "euphoric"}}, ("body", "metadata", "session_emotion")),
        ({"metadata": {"new_memories_count": -1}}, ("body", "metadata", "new_memories_count")),
        (
            {"metadata": {"user_initiated_questions": "three"}},
            ("body", "metadata", "user_initiated_questions"),
        ),
        ({"metadata": "happy"}, ("body", "metadata")),
    ],
)
def test_invalid_fields_get_field_level_422(
    api: Api, change: dict[str, Any], location: tuple[Any, ...]
) -> None:
    body = conversation(**change)
    assert location in error_locations(api.post(body))


def test_end_before_start_is_refused(api: Api) -> None:
    body = conversation(start_time="2026-03-10T10:00:00+00:00", end_time="2026-03-10T09:59:59Z")
    assert ("body", "end_time") in error_locations(api.post(body))


@pytest.mark.parametrize(
    "field",
    ["status", "attempts", "event_id", "friendship_score_change", "score_calculation_details"],
)
def test_server_owned_fields_cannot_be_set(api: Api, field: str) -> None:
    body = conversation()
    body[field] = "PROCESSED"
    response = api.post(body)
    error_locations(response)
    assert field in response.text


def test_a_log_over_the_bound_is_refused(api: Api) -> None:
    body = conversation(turns=0)
    body["conversation_log"] = [{"character": "USER", "content": "x"}] * 2001
    assert ("body", "conversation_log") in error_locations(api.post(body))


def test_non_object_bodies_are_refused(api: Api) -> None:
    for raw in (b"[]", b'"text"', b"null", b"{not json"):
        response = api.http.post(
            "/v1/conversations/end", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422, (raw, response.text)


# --- 413 ---------------------------------------------------------------------------------------

LIMIT = 1_048_576


def assert_too_large(response: Any) -> None:
    """413 from the API (a JSON body), or from an ingress in front of it with the same limit
    (ingress-nginx's default `proxy-body-size` is 1m) and its own HTML page."""
    assert response.status_code == 413, response.text[:300]
    if response.headers.get("content-type", "").startswith("application/json"):
        assert response.json()["code"] == "payload_too_large"


def test_a_body_over_the_limit_gets_413(api: Api) -> None:
    body = conversation(turns=0)
    body["conversation_log"] = [{"character": "USER", "content": "x" * 10_000}] * 110
    response = api.post(body)
    assert response.status_code == 413
    assert_too_large(response)


def test_a_chunked_body_over_the_limit_gets_413(api: Api) -> None:
    """No Content-Length to trust: the stream is cut off once it crosses the limit."""

    def chunks() -> Iterator[bytes]:
        yield b'{"conversation_id": "'
        for _ in range(12):
            yield b"x" * 100_000
        yield b'"}'

    response = api.http.post(
        "/v1/conversations/end", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert_too_large(response)


def test_a_body_just_under_the_limit_is_accepted(api: Api) -> None:
    body = conversation(turns=0)
    item = {"character": "USER", "content": "y" * 9_000}
    body["conversation_log"] = [item] * 100
    size = len(api.http.build_request("POST", "/", json=body).content)
    assert LIMIT - 150_000 < size < LIMIT
    api.accept(body)


# --- 404 ---------------------------------------------------------------------------------------


def test_unknown_conversation_is_404(api: Api) -> None:
    response = api.event(unique("never-sent"))
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert response.json()["detail"]


def test_user_without_status_is_404(api: Api) -> None:
    response = api.http.get(f"/v1/friendship/status/{unique('stranger')}")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert response.json()["detail"]


def test_unknown_paths_are_404(api: Api) -> None:
    assert api.http.get("/v1/nothing-here").status_code == 404
