"""The committed HTTP contract (docs/openapi.json): it is what the app serves, it is valid
OpenAPI, and the breaking-change check tells a change that can break a client from one that
cannot."""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from scripts import openapi_contract as contract
from scripts.openapi_contract import COMMITTED, breaking_changes, compatibility, render

from conversation_events_api.main import create_app
from conversation_events_api.settings import ApiSettings

END = "/v1/conversations/end"
STATUS = "/v1/conversations/{conversation_id}"


def served() -> dict[str, Any]:
    """`/openapi.json` as the app answers it (no database or broker needed for this route)."""

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(ApiSettings(docs_enabled=True)))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.get("/openapi.json")

    response = asyncio.run(get())
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(COMMITTED.read_text())
    return document


def test_the_committed_document_is_the_served_one(committed: dict[str, Any]) -> None:
    assert committed == served(), "docs/openapi.json is stale: scripts/openapi --write"
    assert COMMITTED.read_text() == render(committed)  # and in its canonical form


def test_the_committed_document_is_valid_openapi(committed: dict[str, Any]) -> None:
    validate(committed)


def schema(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = doc["components"]["schemas"][name]
    return found


def nullable(prop: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of an optional field."""
    return next(v for v in prop.get("anyOf", [prop]) if v.get("type") != "null")


BREAKING: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "path-removed": (lambda d: d["paths"].pop(STATUS), f"path removed: {STATUS}"),
    "operation-removed": (lambda d: d["paths"][END].pop("post"), f"operation removed: POST {END}"),
    "response-removed": (
        lambda d: d["paths"][END]["post"]["responses"].pop("202"),
        "response 202: removed",
    ),
    "request-field-now-required": (
        lambda d: schema(d, "ConversationEndRequest")["required"].append("bot_name"),
        "field 'bot_name' now required",
    ),
    "request-enum-value-removed": (
        lambda d: nullable(schema(d, "Metadata")["properties"]["session_emotion"])["enum"].remove(
            "happy"
        ),
        "enum values removed: happy",
    ),
    "request-bound-tightened": (
        lambda d: schema(d, "ConversationEndRequest")["properties"]["user_id"].update(maxLength=64),
        "maxLength tightened from 255 to 64",
    ),
    "request-type-removed": (
        lambda d: schema(d, "ConversationEndRequest")["properties"].update(
            bot_name={"type": "string"}
        ),
        "no longer accepts null",
    ),
    "parameter-tightened": (
        lambda d: d["paths"][STATUS]["get"]["parameters"][0]["schema"].update(maxLength=36),
        "path parameter 'conversation_id': maxLength tightened from 255 to 36",
    ),
    "new-required-parameter": (
        lambda d: d["paths"][STATUS]["get"]["parameters"].append(
            {"in": "query", "name": "view", "required": True, "schema": {"type": "string"}}
        ),
        "query parameter 'view': new and required",
    ),
    "response-field-removed": (
        lambda d: schema(d, "Accepted")["properties"].pop("status_url"),
        "field 'status_url' removed",
    ),
    "response-field-optional": (
        lambda d: schema(d, "Accepted")["required"].remove("event_id"),
        "field 'event_id' no longer always present",
    ),
    "response-field-nullable": (
        lambda d: schema(d, "Accepted")["properties"].update(
            event_id={"anyOf": [{"type": "string"}, {"type": "null"}]}
        ),
        "may now be null",
    ),
}


@pytest.mark.parametrize("case", BREAKING.values(), ids=BREAKING.keys())
def test_a_breaking_change_is_found(
    committed: dict[str, Any], case: tuple[Callable[[dict[str, Any]], None], str]
) -> None:
    change, expected = case
    new = copy.deepcopy(committed)
    change(new)
    found = breaking_changes(committed, new)
    assert any(expected in line for line in found), found
    assert compatibility(committed, new, "test") == 1


COMPATIBLE: dict[str, Callable[[dict[str, Any]], None]] = {
    "unchanged": lambda d: None,
    "optional-request-field-added": lambda d: schema(d, "ConversationEndRequest")[
        "properties"
    ].update(locale={"anyOf": [{"type": "string"}, {"type": "null"}]}),
    "request-bound-loosened": lambda d: schema(d, "ConversationEndRequest")["properties"][
        "user_id"
    ].update(maxLength=512),
    "request-enum-value-added": lambda d: nullable(
        schema(d, "Metadata")["properties"]["session_emotion"]
    )["enum"].append("curious"),
    "response-field-added": lambda d: schema(d, "Accepted")["properties"].update(
        queued={"type": "boolean"}
    ),
    "path-added": lambda d: d["paths"].update({"/v1/ping": {"get": {"responses": {}}}}),
}


@pytest.mark.parametrize("change", COMPATIBLE.values(), ids=COMPATIBLE.keys())
def test_a_compatible_change_passes(
    committed: dict[str, Any], change: Callable[[dict[str, Any]], None]
) -> None:
    new = copy.deepcopy(committed)
    change(new)
    assert breaking_changes(committed, new) == []
    assert compatibility(committed, new, "test") == 0


def test_a_break_declared_by_a_new_major_version_is_reported_not_failed(
    committed: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    new = copy.deepcopy(committed)
    new["paths"].pop(STATUS)
    new["info"]["version"] = "2.0.0"
    assert compatibility(committed, new, "v1.0.0") == 0
    assert f"path removed: {STATUS}" in capsys.readouterr().err


def test_the_breaking_check_compares_with_the_last_release_else_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The baseline: the newest `v*` tag; without one, the committed file while it has
    uncommitted changes, else its version before the last change; nothing for a first one."""
    committed = tmp_path / "docs" / "openapi.json"
    committed.parent.mkdir()
    monkeypatch.setattr(contract, "ROOT", tmp_path)
    monkeypatch.setattr(contract, "COMMITTED", committed)

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-c", "user.name=ce", "-c", "user.email=ce@example.com", *args],
            cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        return done.stdout.strip()

    def commit(version: str) -> str:
        committed.write_text(json.dumps({"info": {"version": version}}))
        git("add", "-A")
        git("commit", "-qm", version)
        return git("rev-parse", "HEAD")

    git("init", "-q")
    first = commit("1.0.0")
    assert contract.earlier_document(None) is None
    committed.write_text(json.dumps({"info": {"version": "1.1.0"}}))
    assert contract.earlier_document(None) == ("HEAD", {"info": {"version": "1.0.0"}})
    commit("1.1.0")
    assert contract.earlier_document(None) == (first, {"info": {"version": "1.0.0"}})
    git("tag", "v1.0.0", first)
    commit("1.2.0")
    assert contract.earlier_document(None) == ("v1.0.0", {"info": {"version": "1.0.0"}})
    assert contract.earlier_document(first) == (first, {"info": {"version": "1.0.0"}})
