"""Hostile input: every request gets a clear 4xx (or is accepted), never a 5xx.

Bodies are sent as raw bytes where a JSON library would refuse to produce them (unpaired
surrogates, NaN, deep nesting, broken UTF-8). The suite ends by checking the API is still
ready, so a request that took a process down cannot pass unnoticed.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import Api, conversation, unique

pytestmark = pytest.mark.e2e


def send_raw(api: Api, raw: bytes | str, content_type: str = "application/json") -> httpx.Response:
    content = raw.encode() if isinstance(raw, str) else raw
    return api.http.post(
        "/v1/conversations/end", content=content, headers={"content-type": content_type}
    )


def as_ascii_json(body: Any) -> str:
    """JSON with every non-ASCII character escaped: the only way to send lone surrogates."""
    return json.dumps(body, ensure_ascii=True)


def assert_clear_4xx(response: httpx.Response, *allowed: int) -> None:
    allowed = allowed or (422,)
    assert response.status_code in allowed, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["detail"]


def nested(depth: int, leaf: str = "1", kind: str = "object") -> str:
    opening, closing = ('{"a":', "}") if kind == "object" else ("[", "]")
    return opening * depth + leaf + closing * depth


# --- nesting and size ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["object", "array"])
@pytest.mark.parametrize("depth", [40, 300, 900, 5_000, 50_000])
def test_deeply_nested_metadata_is_refused(api: Api, depth: int, kind: str) -> None:
    head = json.dumps(conversation())[:-1]
    raw = f'{head}, "metadata": {{"x": {nested(depth, kind=kind)}}}}}'
    # Up to what the JSON parser takes: a field-level 422; beyond: 400 "error parsing the body".
    assert_clear_4xx(send_raw(api, raw), 400, 422)


def test_moderately_nested_metadata_is_kept(api: Api) -> None:
    body = conversation(memories=None)
    body["metadata"] = {"session_emotion": "happy", "trace": json.loads(nested(20))}
    api.accept(body)


def test_deep_nesting_in_an_ignored_field_does_not_hurt(api: Api) -> None:
    head = json.dumps(conversation())[:-1]
    response = send_raw(api, f'{head}, "extra": {nested(500, kind="array")}}}')
    assert response.status_code in (202, 400, 422), response.text


def test_a_huge_metadata_object_under_the_limit_is_handled(api: Api) -> None:
    body = conversation()
    body["metadata"] |= {f"key-{i}": "v" * 20 for i in range(25_000)}
    response = api.post(body)
    assert response.status_code in (202, 413, 422), response.text


def test_the_largest_log_near_the_body_limit_is_accepted_and_processed(api: Api) -> None:
    body = conversation(turns=0)
    body["conversation_log"] = [
        {"character": "USER" if i % 2 == 0 else "PIKA", "content": f"{i:05d} " + "z" * 440}
        for i in range(2000)
    ]
    assert 900_000 < len(json.dumps(body)) < 1_048_576
    api.accept(body)
    view = api.wait_done(body["conversation_id"])
    assert view["status"] == "PROCESSED"
    assert view["score_calculation_details"]["inputs"]["turns"]["value"] == 1000


@pytest.mark.parametrize(
    ("change", "location"),
    [
        (
            {"conversation_log": [{"character": "USER", "content": "x" * 20_001}]},
            ("body", "conversation_log", 0, "content"),
        ),
        (
            {"conversation_log": [{"character": "U" * 256, "content": "x"}]},
            ("body", "conversation_log", 0, "character"),
        ),
        ({"conversation_id": "c" * 10_000}, ("body", "conversation_id")),
        ({"bot_name": "n" * 256}, ("body", "bot_name")),
        ({"agent_tag": "t" * 256}, ("body", "agent_tag")),
    ],
    ids=["content", "character", "conversation_id", "bot_name", "agent_tag"],
)
def test_overlong_strings_are_refused(
    api: Api, change: dict[str, Any], location: tuple[Any, ...]
) -> None:
    response = api.post(conversation(**change))
    assert_clear_4xx(response)
    assert location in [tuple(e["loc"]) for e in response.json()["detail"]]
    assert len(response.content) < 10_000  # errors do not echo megabytes back


def test_strings_at_their_bounds_are_accepted(api: Api) -> None:
    body = conversation(
        conversation_id=unique("c").ljust(255, "x"),
        user_id=unique("u").ljust(255, "y"),
        conversation_log=[{"character": "U" * 255, "content": "x" * 20_000}],
    )
    api.accept(body)


# --- wrong types ---------------------------------------------------------------------------------

WRONG_VALUES: list[Any] = [None, 0, -1.5, True, [], {}, "", "text", [1, "a"], {"k": "v"}]
FIELDS = [
    "conversation_id",
    "user_id",
    "bot_id",
    "bot_name",
    "bot_type",
    "agent_tag",
    "start_time",
    "end_time",
    "conversation_log",
    "metadata",
]


@pytest.mark.parametrize("field", FIELDS)
def test_any_type_in_any_field_is_accepted_or_refused_with_422(api: Api, field: str) -> None:
    for value in WRONG_VALUES:
        body = conversation()
        body[field] = value
        response = api.post(body)
        # 409: a fixed conversation id ("text") re-used by an earlier run with other content.
        assert response.status_code in (202, 409, 422), (field, value, response.text[:300])


@pytest.mark.parametrize(
    "item", [None, 1, "text", [], {"character": None, "content": "x"}, {"character": "USER"}]
)
def test_malformed_log_items_are_refused(api: Api, item: Any) -> None:
    assert_clear_4xx(api.post(conversation(conversation_log=[item])))


@pytest.mark.parametrize(
    "metadata",
    [
        {"new_memories_count": 10**20},
        {"new_memories_count": 1.5},
        {"user_initiated_questions": -3},
        {"session_emotion": 3},
        {"session_emotion": ""},
        {"anything": 10**30},
        {"anything": -(10**30)},
    ],
)
def test_unusable_metadata_values_are_refused(api: Api, metadata: dict[str, Any]) -> None:
    assert_clear_4xx(api.post(conversation(metadata=metadata)))


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_refused(api: Api, literal: str) -> None:
    head = json.dumps(conversation())[:-1]
    assert_clear_4xx(send_raw(api, f'{head}, "metadata": {{"score": {literal}}}}}'))
    assert_clear_4xx(send_raw(api, f'{head}, "bot_id": {literal}}}'))


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"", "application/json"),
        (b"\xff\xfe{}", "application/json"),
        (b'{"conversation_id": "\xc3\x28"}', "application/json"),
        (b"{" * 10, "application/json"),
        (b"conversation_id=x&user_id=y", "application/x-www-form-urlencoded"),
        (b'{"conversation_id": "x"}', "text/plain"),
    ],
    ids=["empty", "utf16-bom", "broken-utf8", "unclosed", "form", "text-plain"],
)
def test_unparseable_bodies_are_refused(api: Api, raw: bytes, content_type: str) -> None:
    assert_clear_4xx(send_raw(api, raw, content_type), 400, 422)


# --- unicode -------------------------------------------------------------------------------------

LONE_SURROGATES = ["\ud800", "\udfff", "x\udc00y", "\udc00\ud800"]


@pytest.mark.parametrize("text", LONE_SURROGATES, ids=["high", "low", "inside", "reversed"])
@pytest.mark.parametrize(
    "where",
    ["conversation_id", "content", "character", "metadata value", "metadata key", "bot_name"],
)
def test_unpaired_surrogates_are_refused(api: Api, text: str, where: str) -> None:
    body = conversation()
    if where == "conversation_id":
        body["conversation_id"] += text
    elif where == "content":
        body["conversation_log"][0]["content"] = text
    elif where == "character":
        body["conversation_log"][0]["character"] = "USER" + text
    elif where == "metadata value":
        body["metadata"]["note"] = text
    elif where == "metadata key":
        body["metadata"][text] = 1
    else:
        body["bot_name"] = text
    assert_clear_4xx(send_raw(api, as_ascii_json(body)))


@pytest.mark.parametrize(
    "where",
    [
        "conversation_id",
        "user_id",
        "content",
        "character",
        "bot_type",
        "metadata value",
        "metadata key",
    ],
)
def test_nul_characters_are_refused(api: Api, where: str) -> None:
    body = conversation()
    if where in ("conversation_id", "user_id", "bot_type"):
        body[where] = "a\x00b"
    elif where == "content":
        body["conversation_log"][0]["content"] = "nul \x00 here"
    elif where == "character":
        body["conversation_log"][0]["character"] = "USER\x00"
    elif where == "metadata value":
        body["metadata"]["note"] = ["ok", {"deep": "\x00"}]
    else:
        body["metadata"]["k\x00"] = 1
    assert_clear_4xx(send_raw(api, as_ascii_json(body)))


EXOTIC = {
    "escaped pair": "\U0001f600",
    "rtl override": "\u202eevil\u202c",
    "arabic": "\u0627\u0644\u0633\u0644\u0627\u0645 \u0639\u0644\u064a\u0643\u0645",
    "zwj family": "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
    "combining": "e\u0301\u0302\u0303\u0304",
    "bom and noncharacter": "\ufeff\uffff\ufffe",
    "private use": "\ue000\U000f0000",
    "vietnamese": "Tại sao bầu trời màu xanh?",
    "controls": "\x01\x1f\x7f\u0085\u2028\u2029",
}


@pytest.mark.parametrize("name", list(EXOTIC))
def test_valid_unicode_round_trips_and_is_processed(api: Api, name: str) -> None:
    text = EXOTIC[name]
    # Inside the ids, not at their ends: ids are stripped of surrounding whitespace.
    body = conversation(
        conversation_id=f"{unique('u')}-{text}-end",
        user_id=f"{unique('user')}-{text}-end",
        bot_name=text,
        agent_tag=f"topic {text} end",
        conversation_log=[
            {"character": "USER", "content": text},
            {"character": "PIKA " + text, "content": text + " !"},
        ],
    )
    body["metadata"]["note " + text] = text
    raw = as_ascii_json(body) if name == "escaped pair" else json.dumps(body, ensure_ascii=False)
    response = send_raw(api, raw)
    assert response.status_code == 202, response.text
    assert response.json()["conversation_id"] == body["conversation_id"]
    view = api.wait_done(body["conversation_id"])
    assert view["status"] == "PROCESSED"
    assert view["conversation_id"] == body["conversation_id"]
    status = api.status(body["user_id"])
    assert status["user_id"] == body["user_id"]
    assert set(status["topic_metrics"]) == {f"topic {text} end"}


# --- timestamps and time zones -------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "",
        "now",
        "2026-03-10",  # a date, no time and no offset
        "2026-03-10T10:00:00",  # no offset
        "2026-03-10T25:00:00Z",
        "2026-13-01T10:00:00Z",
        "2026-02-29T10:00:00Z",  # not a leap year
        "2026-06-30T23:59:60Z",  # leap seconds are not representable
        "2026-03-10T10:00:00+24:00",
        "2026-03-10T10:00:00+99:99",
        "2026-03-10T10:00:00+07:00:30",
        "2026-03-10T10:00:00 Asia/Ho_Chi_Minh",
        "2026-03-10T10:00:00Z[Asia/Ho_Chi_Minh]",
        "20260310T100000Z",
        "-2026-03-10T10:00:00Z",
        "+12026-03-10T10:00:00Z",
        "0001-01-01T00:00:00+05:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-05:00",  # after year 9999 in UTC
        "NaN",
        1e20,
        [2026, 3, 10],
        {"year": 2026},
    ],
)
@pytest.mark.parametrize("field", ["start_time", "end_time", "log timestamp"])
def test_invalid_instants_are_refused(api: Api, value: Any, field: str) -> None:
    body = conversation(end=None)
    if field == "log timestamp":
        body["conversation_log"][0]["timestamp"] = value
        location: tuple[Any, ...] = ("body", "conversation_log", 0, "timestamp")
    else:
        body["start_time"] = body["end_time"] = value
        location = ("body", field)
    response = api.post(body)
    assert_clear_4xx(response)
    assert location in [tuple(e["loc"]) for e in response.json()["detail"]]


@pytest.mark.parametrize(
    "offset", ["+23:59", "-23:59", "+14:00", "-12:00", "+05:45", "-00:00", "Z", "z"]
)
def test_every_rfc3339_offset_is_accepted(api: Api, offset: str) -> None:
    body = conversation()
    body["start_time"] = f"2026-03-10T10:00:00{offset}"
    body["end_time"] = f"2026-03-10T10:30:00{offset}"
    api.accept(body)
    assert api.wait_done(body["conversation_id"])["status"] == "PROCESSED"


# --- other requests ------------------------------------------------------------------------------


def test_wrong_methods_are_405(api: Api) -> None:
    assert api.http.put("/v1/conversations/end", json={}).status_code == 405
    assert api.http.delete(f"/v1/conversations/{unique('x')}").status_code == 405
    assert api.http.post(f"/v1/friendship/status/{unique('x')}").status_code == 405


@pytest.mark.parametrize("path_id", ["%00", "a%00b", "%ED%A0%80", "%FF", "%20", "..%2F..%2Fetc"])
def test_odd_path_ids_are_refused_or_unknown(api: Api, path_id: str) -> None:
    for route in ("/v1/conversations/", "/v1/friendship/status/"):
        response = api.http.get(route + path_id)
        # 400: a proxy in front of the API may refuse an encoded NUL itself.
        assert response.status_code in (400, 404, 422), (route, path_id, response.text)


def test_an_oversized_request_id_is_cut_short(api: Api) -> None:
    response = api.http.get("/healthz", headers={"X-Request-ID": "r" * 5_000})
    assert response.status_code == 200
    assert len(response.headers["x-request-id"]) <= 64


def test_the_api_is_still_ready_after_all_of_this(api: Api) -> None:
    response = api.http.get("/readyz")
    assert response.status_code == 200, response.text
