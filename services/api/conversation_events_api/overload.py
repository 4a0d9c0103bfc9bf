"""Fast refusals: overload and request deadlines, and their `503` answers.

Both mean "not stored, send it again later" (a POST is idempotent), so both are retryable and
carry `Retry-After`; the code tells them apart (`overloaded` vs `unavailable`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from conversation_events.errors import RetryableError
from conversation_events_api import metrics
from conversation_events_api.throttle import ThrottledLog

log = logging.getLogger(__name__)
T = TypeVar("T")

OVERLOADED_BODY = orjson.dumps({"detail": "server overloaded, retry later", "code": "overloaded"})
UNAVAILABLE_BODY = orjson.dumps(
    {"detail": "storage temporarily unavailable, retry later", "code": "unavailable"}
)
# One line per cause now and then: under overload a line per refusal would cost the CPU the
# process is short of.
SHED_LOG = ThrottledLog(log, "requests shed: answering 503 overloaded")
UNAVAILABLE_LOG = ThrottledLog(log, "dependency unavailable: answering 503")


class Overloaded(RetryableError):
    """This process has more work waiting than it accepts (in-flight, writer or batch bound)."""

    def __init__(self, message: str, bound: str = "writer") -> None:
        super().__init__(message)
        self.bound = bound  # the `bound` label of the shed count


class DeadlineExceeded(RetryableError):
    """The database did not answer within the request deadline (hung, or far too slow)."""


async def within(seconds: float, work: Awaitable[T], what: str) -> T:
    """`work`, or `DeadlineExceeded` after `seconds` (the work itself is cancelled).

    Work on a thread cannot be stopped from here: the thread is freed by the engine's
    statement watchdog or by `tcp_user_timeout`; the request does not wait for it.
    """
    try:
        return await asyncio.wait_for(work, timeout=seconds)
    except TimeoutError:
        raise DeadlineExceeded(f"{what} took longer than {seconds:g} s") from None


async def watch_loop_lag(interval_s: float = 0.25) -> None:
    """Observe, forever, how late the loop wakes a sleep of `interval_s` (`LOOP_LAG`)."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval_s
        await asyncio.sleep(interval_s)
        metrics.LOOP_LAG.observe(max(0.0, loop.time() - due))


def add_handlers(app: FastAPI, retry_after_s: int) -> None:
    """The 503 answers of `RetryableError` (the database) and of `Overloaded`."""
    headers = {"Retry-After": str(retry_after_s)}

    @app.exception_handler(RetryableError)
    async def unavailable(request: Request, exc: RetryableError) -> Response:
        UNAVAILABLE_LOG.record(type(exc).__name__, error=str(exc))
        return Response(UNAVAILABLE_BODY, 503, headers, media_type="application/json")

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, exc: Overloaded) -> Response:
        metrics.SHED.labels(exc.bound).inc()
        SHED_LOG.record(exc.bound, error=str(exc))
        return Response(OVERLOADED_BODY, 503, headers, media_type="application/json")
