"""POST /v1/conversations/end:batch against real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest
from sqlalchemy import Engine, text
from tests.integration.api.conftest import as_key, unique_tenant
from tests.integration.api.test_accept import stored, stored_row
from tests.integration.api.test_contract import INVALID_BODIES
from tests.integration.api.test_limits import assert_retry_later, post_in_background
from tests.integration.api.test_publish_faults import metric
from tests.support.payloads import conversation
from tests.support.proxy import TcpProxy
from tests.support.services import get_messages, wait_for

END = "/v1/conversations/end"
BATCH = "/v1/conversations/end:batch"


def post_batch(client: httpx.Client, bodies: list, **kwargs: object) -> httpx.Response:
    return client.post(BATCH, json={"conversations": bodies}, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def silent_database(database_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A proxy in front of the test database, and the URL through it."""
    proxy, url = TcpProxy.in_front_of(database_url)
    yield proxy, url
    proxy.close()


def published(engine: Engine, conversation_ids: list[str]) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM conversation_events "
                    "WHERE conversation_id = ANY(:ids) AND published_at IS NOT NULL"
                ),
                {"ids": conversation_ids},
            ).scalar_one()
        )


def test_each_item_gets_its_own_outcome_and_only_new_events_are_stored_and_queued(
    client: httpx.Client, engine: Engine, names: tuple[str, str]
) -> None:
    earlier = conversation()
    first = client.post(END, json=earlier)
    assert first.status_code == 202
    new, twin = conversation(), conversation()
    changed = {**earlier, "metadata": {**earlier["metadata"], "session_emotion": "sad"}}
    invalid = {**conversation(), "end_time": "not a time"}
    items = [new, earlier, changed, invalid, twin, twin, 42]

    response = post_batch(client, items)

    assert response.status_code == 200, response.text
    reply = response.json()
    results = reply["results"]
    assert [r["index"] for r in results] == list(range(len(items)))
    assert [r["status"] for r in results] == [
        "accepted",
        "duplicate",  # stored by the single post: same event, not queued again
        "conflict",
        "invalid",
        "accepted",
        "duplicate",  # the same conversation twice in one batch: stored once
        "invalid",
    ]
    assert {k: reply[k] for k in ("accepted", "duplicate", "conflict", "erased", "invalid")} == {
        "accepted": 2,
        "duplicate": 2,
        "conflict": 1,
        "erased": 0,
        "invalid": 2,
    }
    event_id = first.json()["event_id"]
    assert results[1]["event_id"] == results[2]["event_id"] == event_id
    assert results[4]["event_id"] == results[5]["event_id"]
    assert results[0]["status_url"] == f"/v1/conversations/{new['conversation_id']}"
    assert [e["loc"] for e in results[3]["errors"]] == [["body", "conversations", 3, "end_time"]]
    assert results[3]["conversation_id"] == invalid["conversation_id"]
    assert "conversation_id" not in results[6] and results[6]["errors"]
    # Committed before the answer, as a single post's 202.
    for index, body in ((0, new), (4, twin)):
        row = stored(engine, body["conversation_id"])
        assert row is not None and row["status"] == "PENDING"
        assert str(row["id"]) == results[index]["event_id"]
    assert stored(engine, invalid["conversation_id"]) is None
    assert stored_row(engine, earlier["conversation_id"])["content_hash"] != ""  # unchanged row
    # Queued: the single post's event and the two new ones, each once.
    ids = [b["conversation_id"] for b in (earlier, new, twin)]
    wait_for(lambda: published(engine, ids) == 3, timeout=10, what="three confirms recorded")
    queued = [m["conversation_id"] for _, m in get_messages(names[1])]
    assert sorted(queued) == sorted(ids)


def test_items_are_validated_as_single_posts(client: httpx.Client) -> None:
    items = []
    for mutate, _ in INVALID_BODIES:
        body = conversation()
        mutate(body)
        items.append(body)

    reply = post_batch(client, items).json()

    for index, (item, result) in enumerate(zip(items, reply["results"], strict=True)):
        single = client.post(END, json=item)
        assert single.status_code == 422, single.text
        expected = [
            {**e, "loc": ["body", "conversations", index, *e["loc"][1:]]}
            for e in single.json()["detail"]
        ]
        assert result["status"] == "invalid"
        assert result["errors"] == expected
    assert reply["invalid"] == len(items)


def test_too_many_messages_is_an_invalid_item(make_client: Callable[..., httpx.Client]) -> None:
    client = make_client(max_log_items=3)
    reply = post_batch(client, [conversation(messages=3), conversation(messages=4)]).json()
    assert [r["status"] for r in reply["results"]] == ["accepted", "invalid"]
    assert reply["results"][1]["errors"][0]["loc"] == [
        "body",
        "conversations",
        1,
        "conversation_log",
    ]


def test_a_batch_sent_again_is_all_duplicates_with_the_same_event_ids(
    client: httpx.Client, engine: Engine
) -> None:
    bodies = [conversation() for _ in range(50)]
    first = post_batch(client, bodies).json()
    again = post_batch(client, copy.deepcopy(bodies)).json()

    assert first["accepted"] == 50 and again["duplicate"] == 50
    assert [r["event_id"] for r in again["results"]] == [r["event_id"] for r in first["results"]]
    with engine.connect() as conn:
        count = conn.execute(
            text("SELECT count(*) FROM conversation_events WHERE conversation_id = ANY(:ids)"),
            {"ids": [b["conversation_id"] for b in bodies]},
        ).scalar_one()
    assert count == 50


def test_a_conversation_of_an_erased_user_is_erased_not_stored(
    client: httpx.Client, new_key: Callable[..., str], engine: Engine
) -> None:
    admin = as_key(new_key(unique_tenant()))
    old = conversation()
    assert client.post(END, json=old, headers=admin).status_code == 202
    assert client.delete(f"/v1/users/{old['user_id']}", headers=admin).status_code == 200

    reply = post_batch(client, [old], headers=admin).json()

    assert reply["results"] == [
        {"index": 0, "conversation_id": old["conversation_id"], "status": "erased"}
    ]
    assert stored(engine, old["conversation_id"]) is None


def test_tenants_are_apart_and_each_key_needs_the_ingest_scope(
    client: httpx.Client, new_key: Callable[..., str]
) -> None:
    a, b = unique_tenant(), unique_tenant()
    key_a, key_b, reader = new_key(a, "ingest,read"), new_key(b, "ingest,read"), new_key(a, "read")
    shared = conversation()
    other = {**shared, "metadata": {**shared["metadata"], "session_emotion": "sad"}}

    in_a = post_batch(client, [shared], headers=as_key(key_a)).json()["results"][0]
    in_b = post_batch(client, [other], headers=as_key(key_b)).json()["results"][0]

    # The same conversation id in another tenant is another conversation, not a conflict.
    assert (in_a["status"], in_b["status"]) == ("accepted", "accepted")
    assert in_a["event_id"] != in_b["event_id"]
    path = f"/v1/conversations/{shared['conversation_id']}"
    assert client.get(path, headers=as_key(key_a)).json()["event_id"] == in_a["event_id"]
    assert client.get(path, headers=as_key(key_b)).json()["event_id"] == in_b["event_id"]
    assert client.get(path).status_code == 404  # the default tenant knows neither
    refused = post_batch(client, [conversation()], headers=as_key(reader))
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    # Without a key, not even the validation rules are disclosed.
    for headers in ({"X-API-Key": "wrong-key-0123456789abcdef"}, {"X-API-Key": ""}):
        for body in ({"conversations": [conversation()]}, {"conversations": 5}):
            response = client.post(BATCH, json=body, headers=headers)
            assert response.status_code == 401 and response.json()["code"] == "unauthorized"


def test_more_than_500_items_or_a_body_over_the_limit_is_413_and_nothing_is_stored(
    make_client: Callable[..., httpx.Client], engine: Engine
) -> None:
    client = make_client(max_batch_body_bytes=64 * 1024, max_body_bytes=16 * 1024)
    small = [conversation(messages=0) for _ in range(501)]
    many = post_batch(client, small)
    assert many.status_code == 413 and many.json()["code"] == "payload_too_large"
    big = [conversation(messages=40) for _ in range(40)]
    assert len(orjson.dumps({"conversations": big})) > 64 * 1024
    too_big = post_batch(client, big)
    assert too_big.status_code == 413 and too_big.json()["code"] == "payload_too_large"
    streamed = client.post(
        BATCH,
        content=iter([orjson.dumps({"conversations": big})]),  # chunked: no Content-Length
        headers={"content-type": "application/json"},
    )
    assert streamed.status_code == 413
    ids = [b["conversation_id"] for b in small + big]
    with engine.connect() as conn:
        count = conn.execute(
            text("SELECT count(*) FROM conversation_events WHERE conversation_id = ANY(:ids)"),
            {"ids": ids},
        ).scalar_one()
    assert count == 0
    # A batch body has a limit of its own, larger than a single post's.
    fits = small[:100]
    assert 16 * 1024 < len(orjson.dumps({"conversations": fits})) < 64 * 1024
    assert post_batch(client, fits).json()["accepted"] == 100


@pytest.mark.parametrize(
    "body",
    [{}, {"conversations": "many"}, [conversation()]],
    ids=["no-conversations", "not-a-list", "bare-list"],
)
def test_a_body_without_a_conversations_list_is_422(client: httpx.Client, body: object) -> None:
    response = client.post(BATCH, json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "body"


def test_past_the_batch_bound_a_batch_gets_a_fast_503_and_single_posts_still_go_through(
    make_client: Callable[..., httpx.Client],
    silent_database: tuple[TcpProxy, str],
    engine: Engine,
) -> None:
    proxy, url = silent_database
    client = make_client(database_url=url, request_timeout_s=20, max_batches_in_flight=1)
    held = [conversation() for _ in range(3)]
    proxy.freeze()
    responses: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: responses.append(post_batch(client, held, timeout=60)), daemon=True
    )
    thread.start()
    wait_for(
        lambda: metric(client, "conversation_events_http_in_flight") == 1,
        timeout=10,
        what="the held batch to reach the server",
    )

    refused = post_batch(client, [conversation()], timeout=5)

    assert_retry_later(refused, "overloaded")
    shed = 'conversation_events_shed_total{bound="batches"}'
    assert metric(client, shed) == 1
    single_threads, singles = post_in_background(client, [conversation()])
    proxy.thaw()
    thread.join(timeout=30)
    for t in single_threads:
        t.join(timeout=30)
    assert responses[0].json()["accepted"] == 3
    assert [r.status_code for r in singles] == [202]
    assert all(stored(engine, b["conversation_id"]) for b in held)


def test_openapi_says_what_each_item_status_means(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    operation = document["paths"][BATCH]["post"]
    assert set(operation["responses"]) >= {"200", "400", "401", "403", "413", "422", "503"}
    schemas = document["components"]["schemas"]
    status = schemas["BatchItemResult"]["properties"]["status"]
    assert set(status["enum"]) == {"accepted", "duplicate", "conflict", "erased", "invalid"}
    for word in ("`accepted`", "`duplicate`", "`conflict`", "`erased`", "`invalid`"):
        assert word in status["description"]
    body = schemas["ConversationBatchRequest"]["properties"]["conversations"]
    assert body["maxItems"] == 500
    assert body["items"] == {"$ref": "#/components/schemas/ConversationEndRequest"}
    assert "ConversationEndRequest" in schemas
