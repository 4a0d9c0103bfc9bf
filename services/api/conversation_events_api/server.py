"""How uvicorn serves the app: keep-alive, and a deadline for each request's head.

uvicorn closes an idle keep-alive connection (`timeout_keep_alive`), but arms nothing while a
request's head is being read: a client that connects and sends nothing, or half a head, holds
its connection (and its socket, and a slot under any connection limit) forever. The protocol
below adds that one timer to uvicorn's httptools protocol, through the parser callbacks it
already has; the body's deadline is kept in ASGI (`EdgeMiddleware`), which can answer 408.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from conversation_events_api.settings import ApiSettings

_HEAD_TIMEOUT_BODY = b'{"detail": "request head not received in time", "code": "request_timeout"}'
_HEAD_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s"
) % (len(_HEAD_TIMEOUT_BODY), _HEAD_TIMEOUT_BODY)


class HeadDeadlineProtocol(HttpToolsProtocol):
    """httptools protocol that closes a connection whose request head is late.

    The clock starts when the connection opens and again at the first byte of each later
    request (between requests the keep-alive timeout applies); it stops when the head is
    complete. `head_timeout_s` is set per subclass by `uvicorn_options`.
    """

    head_timeout_s: float = 10.0
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
        super().on_headers_complete()

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


def uvicorn_options(settings: ApiSettings) -> dict[str, Any]:
    """`uvicorn.Config` keywords that apply the client deadlines of `settings`."""
    protocol = type(
        "HeadDeadlineProtocol",
        (HeadDeadlineProtocol,),
        {"head_timeout_s": settings.client_timeout_s},
    )
    return {"http": protocol, "timeout_keep_alive": settings.keep_alive_s}
