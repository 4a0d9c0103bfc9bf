"""What the black-box suite needs, over HTTP only: the target, request bodies, polling.

Nothing here imports the project's code (the SPEC's numbers come from the dependency-free
`tests/spec.py`): the suite runs unchanged against the one-machine
stack, a kind cluster's ingress or a real deployment, given `E2E_BASE_URL` and `E2E_API_KEY`
(from the environment, else from `.stack/env` written by `scripts/stack up`).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

# Re-exported for the e2e tests.
from tests.spec import EMOTION_BONUS as EMOTION_BONUS
from tests.spec import LEVELS as LEVELS
from tests.spec import TERMINAL
from tests.spec import expected_change as expected_change

ROOT = Path(__file__).resolve().parents[2]
STACK_ENV = ROOT / ".stack" / "env"
#: Seconds to wait for an event to be processed; generous for a loaded two-core CI machine
#: and for a deployment whose workers scale up from their minimum first.
PROCESSING_TIMEOUT_S = float(os.environ.get("E2E_PROCESSING_TIMEOUT_S", "90"))

T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    base_url: str
    api_key: str
    #: The API's /metrics: `METRICS_URL` where metrics have a port of their own (a chart
    #: deployment, reached by port-forward), else on the API's URL (the one-machine stack).
    metrics_url: str = ""


def read_env_file(path: Path) -> dict[str, str]:
    """`KEY=VALUE` lines; blank lines and `#` comments ignored, optional quotes stripped."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def load_target() -> Target | None:
    """The system under test: the environment wins as a whole, else `.stack/env`."""
    if os.environ.get("E2E_BASE_URL"):
        source: dict[str, str] = dict(os.environ)
    else:
        source = read_env_file(STACK_ENV)
    base = source.get("E2E_BASE_URL", "").rstrip("/")
    key = source.get("E2E_API_KEY", "")
    metrics = source.get("METRICS_URL") or f"{base}/metrics"
    return Target(base, key, metrics) if base and key else None


def unique(prefix: str) -> str:
    """An id no other test, run or deployment uses (the suite never cleans up)."""
    return f"e2e-{prefix}-{uuid.uuid4().hex}"


def utc(year: int, month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def local_day(instant: datetime) -> date:
    """The calendar day in Asia/Ho_Chi_Minh (UTC+7 all year, no DST)."""
    return (instant.astimezone(UTC) + timedelta(hours=7)).date()


def conversation(
    *,
    user_id: str | None = None,
    end: datetime | None = None,
    turns: int = 2,
    emotion: str | None = "neutral",
    questions: int | None = 0,
    memories: int | None = 0,
    agent_tag: str | None = "animals",
    bot_type: str | None = "TALK",
    bot_id: str = "bot-e2e",
    **fields: Any,
) -> dict[str, Any]:
    """A valid request body. Its log alternates user and bot (`turns` exchanges) and its
    metadata pins the other scoring inputs, so `expected_change` knows the outcome."""
    end = end or utc(2026, 3, 10)
    log: list[dict[str, Any]] = []
    for i in range(turns):
        log.append({"character": "USER", "content": f"I saw a cat today {i}."})
        log.append({"character": "PIKA", "content": f"Cats are lovely {i}."})
    metadata = {
        key: value
        for key, value in (
            ("session_emotion", emotion),
            ("user_initiated_questions", questions),
            ("new_memories_count", memories),
        )
        if value is not None
    }
    body: dict[str, Any] = {
        "conversation_id": unique("conv"),
        "user_id": user_id or unique("user"),
        "bot_id": bot_id,
        "bot_name": "Pika",
        "start_time": (end - timedelta(minutes=5)).isoformat(),
        "end_time": end.isoformat(),
        "conversation_log": log,
    }
    if bot_type is not None:
        body["bot_type"] = bot_type
    if agent_tag is not None:
        body["agent_tag"] = agent_tag
    if metadata:
        body["metadata"] = metadata
    body.update(fields)
    return body


def log(*messages: tuple[str, str]) -> list[dict[str, str]]:
    """A conversation log from (character, content) pairs, in order."""
    return [{"character": character, "content": content} for character, content in messages]


def poll(
    probe: Callable[[], T | None],
    *,
    timeout: float = PROCESSING_TIMEOUT_S,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Call `probe` until it returns something other than None or False; fail at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = probe()
        if last is not None and last is not False:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Api:
    """A client of the API with the key set, and the few calls the tests repeat."""

    def __init__(self, target: Target, **kwargs: Any) -> None:
        self.target = target
        self.http = httpx.Client(
            base_url=target.base_url,
            headers={"X-API-Key": target.api_key},
            timeout=30,
            **kwargs,
        )

    def close(self) -> None:
        self.http.close()

    def post(self, body: Any) -> httpx.Response:
        """POST as a producer does: a 503 is sent again after its `Retry-After` (for a minute
        at most), so a deployment that sheds load for a moment is not taken for a broken one."""
        give_up = time.monotonic() + 60
        while True:
            response = self.http.post("/v1/conversations/end", json=body)
            if response.status_code != 503 or time.monotonic() > give_up:
                return response
            time.sleep(float(response.headers.get("Retry-After", "1")))

    def accept(self, body: dict[str, Any]) -> str:
        """POST and expect 202; returns the event id."""
        response = self.post(body)
        assert response.status_code == 202, response.text
        return str(response.json()["event_id"])

    def event(self, conversation_id: str) -> httpx.Response:
        return self.http.get(f"/v1/conversations/{quote(conversation_id, safe='')}")

    def wait_done(self, conversation_id: str, timeout: float = PROCESSING_TIMEOUT_S) -> dict:
        """Poll the event until it is terminal; returns its view."""

        def probe() -> dict | None:
            response = self.event(conversation_id)
            assert response.status_code == 200, response.text
            view = response.json()
            return view if view["status"] in TERMINAL else None

        return poll(probe, timeout=timeout, what=f"conversation {conversation_id} processed")

    def process(self, body: dict[str, Any]) -> dict:
        """Accept one event and wait until it is PROCESSED; returns its view."""
        self.accept(body)
        view = self.wait_done(body["conversation_id"])
        assert view["status"] == "PROCESSED", view
        return view

    def friendship(self, user_id: str) -> dict | None:
        """The user's friendship status, or None where it has none (404)."""
        response = self.http.get(f"/v1/friendship/status/{quote(user_id, safe='')}")
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        return dict(response.json())

    def status(self, user_id: str) -> dict:
        """The friendship status of a user who must have one."""
        status = self.friendship(user_id)
        assert status is not None, f"{user_id} has no friendship status"
        return status
