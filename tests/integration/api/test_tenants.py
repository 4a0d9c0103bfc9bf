"""Keys, tenants and scopes: each tenant sees only its own data; each scope opens its routes."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text
from tests.integration.api.conftest import API_KEY, as_key, process, unique_tenant
from tests.support.database import one_value
from tests.support.payloads import conversation
from tests.support.processes import console_script
from tests.support.services import take_message, wait_for

END = "/v1/conversations/end"
ROOT = Path(__file__).resolve().parents[3]


def test_two_tenants_share_ids_without_seeing_each_other(
    client: httpx.Client, new_key: Callable[..., str], engine: Engine
) -> None:
    a, b, c = (new_key(unique_tenant()) for _ in range(3))
    shared = conversation()
    happy = shared  # each tenant's conversation under the same ids, with other content
    keen = {**shared, "metadata": {**shared["metadata"], "session_emotion": "interesting"}}

    first = client.post(END, json=happy, headers=as_key(a))
    second = client.post(END, json=keen, headers=as_key(b))

    # The same conversation id with other content is another tenant's conversation, not a 409.
    assert (first.status_code, second.status_code) == (202, 202), second.text
    ids = [first.json()["event_id"], second.json()["event_id"]]
    assert ids[0] != ids[1]
    for event_id in ids:
        process(engine, event_id)
    path = f"/v1/conversations/{shared['conversation_id']}"
    assert client.get(path, headers=as_key(a)).json()["event_id"] == ids[0]
    assert client.get(path, headers=as_key(b)).json()["event_id"] == ids[1]
    status = f"/v1/friendship/status/{shared['user_id']}"
    score_a = client.get(status, headers=as_key(a)).json()["friendship_score"]
    score_b = client.get(status, headers=as_key(b)).json()["friendship_score"]
    assert score_b - score_a == 5  # interesting (+15) against happy (+10): two statuses
    # A third tenant, and the default one, know neither (404, not 403).
    for key in (c, API_KEY):
        assert client.get(path, headers=as_key(key)).status_code == 404
        assert client.get(status, headers=as_key(key)).json()["code"] == "not_found"
    # Re-sends stay within their tenant: idempotent for each, a conflict only within one.
    again = client.post(END, json=keen, headers=as_key(b))
    assert (again.status_code, again.json()["event_id"]) == (202, ids[1])
    assert client.post(END, json=happy, headers=as_key(b)).status_code == 409
    tenants = one_value(
        engine,
        "SELECT count(DISTINCT tenant) FROM friendship_status WHERE user_id = :u",
        u=shared["user_id"],
    )
    assert tenants == 2


@pytest.mark.parametrize(
    ("scopes", "method", "path", "missing"),
    [
        ("ingest", "GET", "/v1/conversations/c-1", "read"),
        ("ingest", "GET", "/v1/friendship/status/u-1", "read"),
        ("read", "POST", END, "ingest"),
        ("ingest,read", "GET", "/v1/admin/keys", "admin"),
        ("ingest,read", "POST", "/v1/admin/keys", "admin"),
        ("ingest,read", "DELETE", "/v1/admin/keys/some-key", "admin"),
    ],
)
def test_a_key_without_the_scope_gets_403_forbidden(
    client: httpx.Client,
    new_key: Callable[..., str],
    scopes: str,
    method: str,
    path: str,
    missing: str,
) -> None:
    key = new_key(unique_tenant(), scopes)
    body = conversation() if path == END else {"name": "x", "scopes": ["read"]}
    response = client.request(
        method, path, headers=as_key(key), json=body if method == "POST" else None
    )
    assert response.status_code == 403, response.text
    assert response.json() == {"code": "forbidden", "detail": f"this key lacks the {missing} scope"}


def test_each_scope_opens_its_routes(client: httpx.Client, new_key: Callable[..., str]) -> None:
    tenant = unique_tenant()
    ingest, read, admin = (new_key(tenant, s) for s in ("ingest", "read", "admin"))
    body = conversation()
    assert client.post(END, json=body, headers=as_key(ingest)).status_code == 202
    path = f"/v1/conversations/{body['conversation_id']}"
    assert client.get(path, headers=as_key(read)).status_code == 200
    assert client.get("/v1/admin/keys", headers=as_key(admin)).status_code == 200


def test_keys_are_recognisable_listed_without_secrets_and_stored_hashed(
    client: httpx.Client, new_key: Callable[..., str], engine: Engine
) -> None:
    tenant = unique_tenant()
    key = new_key(tenant, "read", name="reader")

    assert key.startswith("ce_") and len(key) >= 40
    listed = client.get("/v1/admin/keys", params={"tenant": tenant}).json()
    assert [(k["name"], k["scopes"]) for k in listed] == [("reader", ["read"])]
    assert key not in str(listed) and key.startswith(listed[0]["key_prefix"])
    with engine.connect() as conn:
        dump = conn.execute(text("SELECT api_keys::text FROM api_keys")).scalars().all()
    assert not any(key in row for row in dump)
    # A tenant's live names are unique; once revoked, the name may be used again.
    again = {"name": "reader", "tenant": tenant, "scopes": ["read"]}
    assert client.post("/v1/admin/keys", json=again).json()["code"] == "conflict"
    assert client.delete("/v1/admin/keys/reader", params={"tenant": tenant}).status_code == 204
    assert client.post("/v1/admin/keys", json=again).status_code == 201


def test_a_tenant_admin_manages_its_own_tenant_only(
    client: httpx.Client, new_key: Callable[..., str]
) -> None:
    mine, theirs = unique_tenant(), unique_tenant()
    admin = new_key(mine, "admin", name="boss")
    new_key(theirs, "read", name="victim")

    listed = client.get("/v1/admin/keys", headers=as_key(admin)).json()
    assert {k["tenant"] for k in listed} == {mine}
    other = {"name": "intruder", "tenant": theirs, "scopes": ["read"]}
    refused = client.post("/v1/admin/keys", json=other, headers=as_key(admin))
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert client.delete("/v1/admin/keys/victim", headers=as_key(admin)).status_code == 404
    foreign = client.get("/v1/admin/keys", params={"tenant": theirs}, headers=as_key(admin))
    assert foreign.status_code == 403
    created = client.post(
        "/v1/admin/keys", json={"name": "ingester", "scopes": ["ingest"]}, headers=as_key(admin)
    )
    assert created.status_code == 201 and created.json()["tenant"] == mine


def test_a_revoked_key_is_refused_by_every_api_process_within_5_s(
    make_client: Callable[..., httpx.Client],
) -> None:
    one, two = make_client(), make_client()
    created = one.post(
        "/v1/admin/keys", json={"name": "leaked", "tenant": unique_tenant(), "scopes": ["read"]}
    ).json()
    key, tenant = created["key"], created["tenant"]
    probe = "/v1/conversations/unknown-conversation"
    for api in (one, two):  # both know it, and have cached it
        assert api.get(probe, headers=as_key(key)).status_code == 404

    assert one.delete("/v1/admin/keys/leaked", params={"tenant": tenant}).status_code == 204
    revoked_at = time.monotonic()

    for api in (one, two):

        def refused(api: httpx.Client = api) -> bool:
            return api.get(probe, headers=as_key(key)).status_code == 401

        wait_for(
            refused,
            timeout=5 - (time.monotonic() - revoked_at),
            what="the revoked key refused",
        )
    assert time.monotonic() - revoked_at < 5


def test_the_keys_cli_creates_lists_and_revokes(client: httpx.Client, database_url: str) -> None:
    tenant = unique_tenant()
    env = {
        **os.environ,
        "CE_DATABASE_URL": database_url,
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [console_script("conversation-events-keys"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    created = cli("create", "--name", "cli", "--tenant", tenant, "--scopes", "read", "--key-only")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert created.stdout == key + "\n" and key.startswith("ce_")
    assert client.get("/v1/conversations/none", headers=as_key(key)).status_code == 404
    listed = cli("list", "--tenant", tenant)
    assert '"name":"cli"' in listed.stdout and key not in listed.stdout
    assert cli("create", "--name", "x", "--scopes", "root").returncode == 2
    assert cli("revoke", "--name", "cli", "--tenant", tenant).returncode == 0
    wait_for(
        lambda: client.get("/v1/conversations/none", headers=as_key(key)).status_code == 401,
        timeout=5,
        what="the revoked key refused",
    )
    assert cli("revoke", "--name", "cli", "--tenant", tenant).returncode == 1


def test_short_and_unknown_keys_are_refused(client: httpx.Client) -> None:
    for key in ("ce_short", "ce_" + "x" * 40, "x" * 600):
        response = client.get("/v1/conversations/c", headers=as_key(key))
        assert response.status_code == 401 and response.json()["code"] == "unauthorized"


def test_stack_key_prints_a_working_key_and_nothing_else(
    client: httpx.Client, database_url: str
) -> None:
    tenant = unique_tenant()
    made = subprocess.run(
        [str(ROOT / "scripts" / "stack"), "key", "--tenant", tenant, "--scopes", "ingest,read"],
        env={**os.environ, "CE_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert made.stdout == key + "\n" and key.startswith("ce_")
    body = conversation()
    assert client.post(END, json=body, headers=as_key(key)).status_code == 202
    view = client.get(f"/v1/conversations/{body['conversation_id']}", headers=as_key(key))
    assert view.status_code == 200
    assert client.get(f"/v1/conversations/{body['conversation_id']}").status_code == 404


OPERATOR_ROUTES = [
    ("GET", "/v1/admin/keys"),
    ("POST", "/v1/admin/keys"),
    ("DELETE", "/v1/admin/keys/some-key"),
    ("DELETE", "/v1/users/u-1"),
    ("GET", "/v1/users/u-1/export"),
]


@pytest.mark.parametrize(("method", "path"), OPERATOR_ROUTES)
@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "ce_" + "n" * 43}])
def test_operator_routes_refuse_a_missing_or_unknown_key(
    client: httpx.Client, method: str, path: str, headers: dict[str, str]
) -> None:
    # The client's default header is the bootstrap key: replace it.
    response = client.request(method, path, headers={"X-API-Key": "", **headers})
    assert response.status_code == 401 and response.json()["code"] == "unauthorized"


def test_operator_routes_are_not_in_the_public_openapi_document(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert [p for p in paths if p.startswith(("/v1/admin", "/v1/users"))] == []


def test_the_queued_message_carries_the_keys_tenant(
    client: httpx.Client, new_key: Callable[..., str], names: tuple[str, str]
) -> None:
    tenant = unique_tenant()
    body = conversation()
    assert client.post(END, json=body, headers=as_key(new_key(tenant))).status_code == 202

    _, message = take_message(
        names[1],
        lambda m: m["conversation_id"] == body["conversation_id"],
        timeout=10,
        what="the conversation's queued message",
    )
    assert (message["tenant"], message["user_id"]) == (tenant, body["user_id"])
