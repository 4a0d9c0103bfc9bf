"""Every `/v1` route refuses requests without a valid API key (SPEC section 2), route by route."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.helpers import Target, conversation, unique

pytestmark = pytest.mark.e2e

ROUTES = [
    ("POST", "/v1/conversations/end"),
    ("POST", "/v1/conversations/end:batch"),
    ("GET", "/v1/conversations/{id}"),
    ("GET", "/v1/friendship/status/{id}"),
]
BAD_CREDENTIALS = {
    "no key": {},
    "wrong X-API-Key": {"X-API-Key": "not-the-key"},
    "empty X-API-Key": {"X-API-Key": ""},
    "wrong bearer": {"Authorization": "Bearer not-the-key"},
    "key in another scheme": {"Authorization": "Basic {key}"},
    "key with a suffix": {"X-API-Key": "{key}x"},
}


def _request(
    client: httpx.Client, method: str, path: str, headers: dict[str, str]
) -> httpx.Response:
    path = path.replace("{id}", unique("missing"))
    if path.endswith(":batch"):
        return client.post(path, json={"conversations": [conversation()]}, headers=headers)
    if method == "POST":
        return client.post(path, json=conversation(), headers=headers)
    return client.get(path, headers=headers)


def test_the_contract_lists_exactly_these_v1_routes(target: Target) -> None:
    paths = httpx.get(f"{target.base_url}/openapi.json", timeout=30).json()["paths"]
    found = {
        (method.upper(), path.replace("{conversation_id}", "{id}").replace("{user_id}", "{id}"))
        for path, operations in paths.items()
        if path.startswith("/v1/")
        for method in operations
    }
    assert found == set(ROUTES)


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
@pytest.mark.parametrize("case", list(BAD_CREDENTIALS))
def test_route_refuses_missing_or_wrong_key(
    target: Target, anonymous: httpx.Client, method: str, path: str, case: str
) -> None:
    headers = {k: v.format(key=target.api_key) for k, v in BAD_CREDENTIALS[case].items()}
    response = _request(anonymous, method, path, headers)
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "unauthorized"
    assert response.headers["www-authenticate"].lower().startswith("bearer")
    assert target.api_key not in response.text


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
@pytest.mark.parametrize("scheme", ["x-api-key", "bearer"])
def test_route_accepts_the_key_in_either_header(
    target: Target, anonymous: httpx.Client, method: str, path: str, scheme: str
) -> None:
    headers = (
        {"X-API-Key": target.api_key}
        if scheme == "x-api-key"
        else {"Authorization": f"Bearer {target.api_key}"}
    )
    response = _request(anonymous, method, path, headers)
    expected = {"GET": 404, "POST": 200 if path.endswith(":batch") else 202}[method]
    assert response.status_code == expected, response.text


def test_auth_is_checked_before_the_body(anonymous: httpx.Client) -> None:
    """An unauthenticated client learns nothing about validation rules."""
    assert anonymous.post("/v1/conversations/end", json={"bad": True}).status_code == 401
    response = anonymous.post(
        "/v1/conversations/end", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 401


def test_probes_and_metrics_need_no_key(anonymous: httpx.Client, target: Target) -> None:
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert anonymous.get(path).status_code == 200, path
    assert anonymous.get(target.metrics_url).status_code == 200, target.metrics_url
