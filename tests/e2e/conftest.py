"""The target of the black-box suite: `E2E_BASE_URL`/`E2E_API_KEY`, else `.stack/env`.

Without a reachable target the suite skips locally and fails in CI, where `scripts/e2e` must
have started the stack.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.helpers import STACK_ENV, Api, Target, load_target
from tests.support.ci import unavailable


@pytest.fixture(scope="session")
def target() -> Target:
    found = load_target()
    if found is None:
        unavailable(f"no E2E_BASE_URL/E2E_API_KEY in the environment nor in {STACK_ENV}")
    try:
        httpx.get(f"{found.base_url}/healthz", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        unavailable(f"{found.base_url} is not reachable: {exc}")
    return found


@pytest.fixture(scope="session")
def api(target: Target) -> Iterator[Api]:
    client = Api(target)
    yield client
    client.close()


@pytest.fixture(scope="session")
def anonymous(target: Target) -> Iterator[httpx.Client]:
    """A client without any API key."""
    with httpx.Client(base_url=target.base_url, timeout=30) as client:
        yield client
