"""How uvicorn serves the app: keep-alive, a deadline for each request's head, and shedding.

uvicorn closes an idle keep-alive connection (`timeout_keep_alive`), but arms nothing while a
request's head is being read: a client that connects and sends nothing, or half a head, holds
its connection (and its socket, and a slot under any connection limit) forever. The protocol
below adds that one timer to uvicorn's httptools protocol, through the parser callbacks it
already has; the body's deadline is kept in ASGI (`EdgeMiddleware`), which can answer 408.

It also refuses a /v1 request while the process's in-flight places are all taken, as soon as
its head is parsed: the `503` is sent by a few lines of ASGI in place of the application, so
no middleware, routing or body handling runs for it. Under a flood of requests most answers
are such refusals, and every microsecond they cost is taken from the requests in flight, which
share the same event loop. (uvicorn's own `limit_concurrency` counts open connections, so with
keep-alive clients it would refuse everything once that many are connected, idle or not.)
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from conversation_events_api import metrics
from conversation_events_api.middleware import LIMITED_PREFIX, InFlight
from conversation_events_api.overload import OVERLOADED_BODY, SHED_LOG
from conversation_events_api.settings import ApiSettings

_HEAD_TIMEOUT_BODY = b'{"detail": "request head not received in time", "code": "request_timeout"}'
_HEAD_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s"
) % (len(_HEAD_TIMEOUT_BODY), _HEAD_TIMEOUT_BODY)


_LIMITED = LIMITED_PREFIX.encode()
_OVERLOADED_LENGTH = str(len(OVERLOADED_BODY)).encode()


class HeadDeadlineProtocol(HttpToolsProtocol):
    """httptools protocol that closes a connection whose request head is late.

    The clock starts when the connection opens and again at the first byte of each later
    request (between requests the keep-alive timeout applies); it stops when the head is
    complete. `head_timeout_s` is set per subclass by `uvicorn_options`.
    """

    head_timeout_s: float = 10.0
    #: The application's in-flight gate; None: no shedding here (the middleware still sheds).
    in_flight: InFlight | None = None
    retry_after: bytes = b"5"
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:
            self._arm_head_deadline()

    def on_headers_complete(self) -> None:
        self._stop_head_deadline()
        gate = self.in_flight
        if gate is None or not gate.full() or not self.url.startswith(_LIMITED):
            super().on_headers_complete()
            return
        # uvicorn runs `self.app` for the request: the refusal instead, for this one only.
        app, self.app = self.app, self._refuse
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics.SHED.labels("in_flight").inc()
        SHED_LOG.record("in_flight")
        rid = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")[:64]
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", _OVERLOADED_LENGTH),
            (b"retry-after", self.retry_after),
            (b"x-request-id", rid or uuid.uuid4().hex.encode()),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": OVERLOADED_BODY})

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_deadline_passed)

    def _stop_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_deadline_passed(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # no response being written
            self.transport.write(_HEAD_TIMEOUT)
        self.transport.close()


def uvicorn_options(settings: ApiSettings, in_flight: InFlight | None = None) -> dict[str, Any]:
    """`uvicorn.Config` keywords that apply the client deadlines of `settings` and, given the
    application's gate (`app.state.in_flight`), refuse requests past it before the app runs."""
    protocol = type(
        "HeadDeadlineProtocol",
        (HeadDeadlineProtocol,),
        {
            "head_timeout_s": settings.client_timeout_s,
            "in_flight": in_flight,
            "retry_after": str(settings.retry_after_s).encode(),
        },
    )
    return {"http": protocol, "timeout_keep_alive": settings.keep_alive_s}
