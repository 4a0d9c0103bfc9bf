"""Pure ASGI middleware: request ids, the in-flight limit, body limits, and latency metrics.

The size limit is enforced on the byte stream before anything parses it: a declared
Content-Length over the limit is refused at once, and a chunked body is cut off as soon as it
crosses the limit. The body must also arrive within `client_timeout_s` of the request's start
(408 otherwise), so a slow client cannot hold an in-flight slot; the head's own deadline is
kept by the protocol (`server.py`), before any ASGI code runs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conversation_events import logs
from conversation_events_api import metrics
from conversation_events_api.overload import OVERLOADED_BODY, SHED_LOG


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body crosses the limit.

    An HTTPException, so FastAPI's body parsing lets it through to `too_large_response`
    instead of turning it into a 400.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")
        self.limit = limit


class BodyTimeout(HTTPException):
    """Raised from `receive` when the body has not arrived by the client deadline."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            408, f"request body not received within {seconds:g} s", {"Connection": "close"}
        )


def too_large_body(limit: int) -> bytes:
    return orjson.dumps(
        {"detail": f"request body exceeds {limit} bytes", "code": "payload_too_large"}
    )


ACCEPT_PATH = "/v1/conversations/end"
#: Refusals of the accept path, by status, counted in `conversation_events_rejected_total`.
_REJECTIONS = {
    400: "unparseable",
    401: "unauthorized",
    408: "timeout",
    413: "too_large",
    422: "invalid",
}
_BAD_LENGTH = orjson.dumps({"detail": "Content-Length is not a number", "code": "bad_request"})
_LIMITED_PREFIX = "/v1/"


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_in_flight: int,
        client_timeout_s: float,
        retry_after_s: int,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_in_flight = max_in_flight
        self.client_timeout_s = client_timeout_s
        self.retry_after = str(retry_after_s).encode()
        # Only /v1 requests count: probes and /metrics must answer while the process sheds.
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        token = logs.request_id.set(rid)
        status_holder = {"status": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        limited = scope["path"].startswith(_LIMITED_PREFIX)
        counted = False
        try:
            if limited:
                if self.in_flight >= self.max_in_flight:
                    metrics.SHED.labels("in_flight").inc()
                    SHED_LOG.record("in_flight")
                    await _reply(
                        send_wrapper, 503, OVERLOADED_BODY, [(b"retry-after", self.retry_after)]
                    )
                    return
                self.in_flight += 1
                metrics.IN_FLIGHT.set(self.in_flight)
                counted = True
            declared = headers.get(b"content-length")
            if declared is not None and not declared.isdigit():
                await _reply(send_wrapper, 400, _BAD_LENGTH)
                return
            if declared is not None and int(declared) > self.max_body_bytes:
                await _reply(send_wrapper, 413, too_large_body(self.max_body_bytes))
                return
            received = 0
            body_deadline = time.monotonic() + self.client_timeout_s
            body_done = False

            async def limited_receive() -> Message:
                nonlocal received, body_done
                if body_done:  # later calls wait for a disconnect: no deadline on those
                    return await receive()
                try:
                    message = await asyncio.wait_for(
                        receive(), max(0.0, body_deadline - time.monotonic())
                    )
                except TimeoutError:
                    raise BodyTimeout(self.client_timeout_s) from None
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body_bytes:
                        raise BodyTooLarge(self.max_body_bytes)
                    body_done = not message.get("more_body", False)
                return message

            try:
                await self.app(scope, limited_receive, send_wrapper)
            except BodyTooLarge:
                await _reply(send_wrapper, 413, too_large_body(self.max_body_bytes))
            except BodyTimeout as exc:
                await _reply(send_wrapper, 408, _timeout_body(exc), [(b"connection", b"close")])
        finally:
            if counted:
                self.in_flight -= 1
                metrics.IN_FLIGHT.set(self.in_flight)
            logs.request_id.reset(token)
            route: Any = scope.get("route")
            template = getattr(route, "path", "unmatched")
            status = status_holder["status"]
            metrics.REQUEST_SECONDS.labels(template, f"{status // 100}xx").observe(
                time.perf_counter() - started
            )
            if status in _REJECTIONS and scope["path"] == ACCEPT_PATH:
                metrics.REJECTED.labels(_REJECTIONS[status]).inc()


def _timeout_body(exc: BodyTimeout) -> bytes:
    return orjson.dumps({"detail": exc.detail, "code": "request_timeout"})


async def _reply(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(extra or ()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
