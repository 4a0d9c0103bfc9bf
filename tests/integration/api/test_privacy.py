"""Erasure and export of a user (admin scope), within the key's tenant."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import Engine
from tests.integration.api.conftest import as_key, process, unique_tenant
from tests.support.database import rows_mentioning
from tests.support.payloads import conversation

END = "/v1/conversations/end"


def test_erasure_removes_everything_of_the_user_and_export_shows_it_before_and_after(
    client: httpx.Client, admin: dict[str, str], engine: Engine
) -> None:
    first = conversation()
    user = first["user_id"]
    second = conversation(user_id=user, bot_type="GREETING")  # SKIPPED: stored all the same
    pending = conversation(user_id=user)  # still unprocessed at the erasure
    ids = [client.post(END, json=b, headers=admin).json()["event_id"] for b in (first, second)]
    for event_id in ids[:1]:
        process(engine, event_id)
    assert client.post(END, json=pending, headers=admin).status_code == 202
    assert set(rows_mentioning(engine, user)) == {
        "conversation_events",
        "friendship_status",
        "topic_metrics",
    }

    before = client.get(f"/v1/users/{user}/export", headers=admin).json()
    erased = client.delete(f"/v1/users/{user}", headers=admin)
    after = client.get(f"/v1/users/{user}/export", headers=admin).json()

    assert before["user_id"] == user and before["erased_at"] is None
    assert before["friendship_status"]["friendship_score"] > 0
    assert set(before["friendship_status"]["topic_metrics"]) == {first["agent_tag"]}
    exported = {e["conversation_id"]: e for e in before["events"]}
    assert set(exported) == {b["conversation_id"] for b in (first, second, pending)}
    assert exported[first["conversation_id"]]["conversation_log"][0]["content"] == "message 0"
    assert exported[first["conversation_id"]]["score_calculation_details"] is not None
    assert erased.status_code == 200, erased.text
    assert erased.json() | {"erased_at": None} == {
        "user_id": user,
        "erased_at": None,
        "events_deleted": 3,
        "status_deleted": True,
    }
    assert rows_mentioning(engine, user) == {}
    assert (after["events"], after["friendship_status"]) == ([], None)
    assert after["erased_at"] == erased.json()["erased_at"]
    # Idempotent: a second erasure finds nothing and says so.
    again = client.delete(f"/v1/users/{user}", headers=admin).json()
    assert (again["events_deleted"], again["status_deleted"]) == (0, False)


def test_a_resent_old_conversation_does_not_bring_the_user_back_a_new_one_does(
    client: httpx.Client, admin: dict[str, str], engine: Engine
) -> None:
    old = conversation()
    user = old["user_id"]
    assert client.post(END, json=old, headers=admin).status_code == 202
    assert client.delete(f"/v1/users/{user}", headers=admin).status_code == 200

    resent = client.post(END, json=old, headers=admin)

    assert resent.status_code == 410 and resent.json()["code"] == "erased"
    assert rows_mentioning(engine, user) == {}
    new = conversation(user_id=user, end_time=datetime.now(UTC))
    accepted = client.post(END, json=new, headers=admin)
    assert accepted.status_code == 202, accepted.text
    process(engine, accepted.json()["event_id"])
    status = client.get(f"/v1/friendship/status/{user}", headers=admin)
    assert status.status_code == 200 and status.json()["friendship_score"] > 0


def test_an_erasure_stays_within_its_tenant(
    client: httpx.Client, new_key: Callable[..., str], engine: Engine
) -> None:
    mine, theirs = as_key(new_key(unique_tenant())), as_key(new_key(unique_tenant()))
    body = conversation()
    user = body["user_id"]
    event_id = client.post(END, json=body, headers=theirs).json()["event_id"]
    process(engine, event_id)

    erased = client.delete(f"/v1/users/{user}", headers=mine).json()
    export = client.get(f"/v1/users/{user}/export", headers=mine).json()

    assert (erased["events_deleted"], erased["status_deleted"]) == (0, False)
    assert (export["events"], export["friendship_status"]) == ([], None)
    theirs_export = client.get(f"/v1/users/{user}/export", headers=theirs).json()
    assert [e["event_id"] for e in theirs_export["events"]] == [event_id]
    assert client.get(f"/v1/friendship/status/{user}", headers=theirs).status_code == 200


@pytest.mark.parametrize("scopes", ["ingest", "read", "ingest,read"])
@pytest.mark.parametrize("method", ["DELETE", "GET"])
def test_only_admin_keys_erase_and_export(
    client: httpx.Client, new_key: Callable[..., str], engine: Engine, scopes: str, method: str
) -> None:
    tenant = unique_tenant()
    body = conversation()
    event_id = client.post(END, json=body, headers=as_key(new_key(tenant))).json()["event_id"]
    path = f"/v1/users/{body['user_id']}" + ("/export" if method == "GET" else "")

    refused = client.request(method, path, headers=as_key(new_key(tenant, scopes)))

    assert refused.status_code == 403
    assert refused.json() == {"code": "forbidden", "detail": "this key lacks the admin scope"}
    assert rows_mentioning(engine, event_id) == {"conversation_events": 1}
