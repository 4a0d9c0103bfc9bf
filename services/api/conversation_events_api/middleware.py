"""Pure ASGI middleware: request ids, the body size limit, and latency metrics.

The limit is enforced on the byte stream before anything parses it: a declared
Content-Length over the limit is refused at once, and a chunked body is cut off as soon as it
crosses the limit.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conversation_events import logs
from conversation_events_api import metrics


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body crosses the limit.

    An HTTPException, so FastAPI's body parsing lets it through to `too_large_response`
    instead of turning it into a 400.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")
        self.limit = limit


def too_large_body(limit: int) -> bytes:
    return orjson.dumps(
        {"detail": f"request body exceeds {limit} bytes", "code": "payload_too_large"}
    )


ACCEPT_PATH = "/v1/conversations/end"
#: Refusals of the accept path, by status, counted in `conversation_events_rejected_total`.
_REJECTIONS = {400: "unparseable", 401: "unauthorized", 413: "too_large", 422: "invalid"}
_BAD_LENGTH = orjson.dumps({"detail": "Content-Length is not a number", "code": "bad_request"})


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

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

        try:
            declared = headers.get(b"content-length")
            if declared is not None and not declared.isdigit():
                await _reply(send_wrapper, 400, _BAD_LENGTH)
                return
            if declared is not None and int(declared) > self.max_body_bytes:
                await _reply(send_wrapper, 413, too_large_body(self.max_body_bytes))
                return
            received = 0

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body_bytes:
                        raise BodyTooLarge(self.max_body_bytes)
                return message

            try:
                await self.app(scope, limited_receive, send_wrapper)
            except BodyTooLarge:
                await _reply(send_wrapper, 413, too_large_body(self.max_body_bytes))
        finally:
            logs.request_id.reset(token)
            route: Any = scope.get("route")
            template = getattr(route, "path", "unmatched")
            status = status_holder["status"]
            metrics.REQUEST_SECONDS.labels(template, f"{status // 100}xx").observe(
                time.perf_counter() - started
            )
            if status in _REJECTIONS and scope["path"] == ACCEPT_PATH:
                metrics.REJECTED.labels(_REJECTIONS[status]).inc()


async def _reply(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
