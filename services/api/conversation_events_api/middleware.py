"""Pure ASGI middleware: request ids, the in-flight limit, body limits, latency metrics, the
request log and, with tracing on, the HTTP server span.

The in-flight limit is an `InFlight` gate shared with the HTTP protocol (`server.py`), which
refuses most requests past it before any ASGI code runs; the check here catches the few that
were let in while the last free places were being taken.

The size limit is enforced on the byte stream before anything parses it: a declared
Content-Length over the limit is refused at once, and a chunked body is cut off as soon as it
crosses the limit. The body must also arrive within `client_timeout_s` of the request's start
(408 otherwise), so a slow client cannot hold an in-flight slot; the head's own deadline is
kept by the protocol (`server.py`), before any ASGI code runs.

The request log is one line per `/v1` request, and per failed probe or scrape (logger
`conversation_events_api.requests`): method, route template, status, duration, the key's name
and tenant, request id and (traced) trace id. Never the path's own values, the body or the
key.

Traced, each `/v1` request is a server span that continues the caller's W3C `traceparent` (or
starts a trace); the accept route stores that span's context with the event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

import orjson
from opentelemetry import trace
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conversation_events import logs, telemetry
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


class InFlight:
    """How many /v1 requests one process is handling, and how many it takes at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def full(self) -> bool:
        return self.count >= self.limit

    def enter(self) -> None:
        self.count += 1
        metrics.IN_FLIGHT.set(self.count)

    def leave(self) -> None:
        self.count -= 1
        metrics.IN_FLIGHT.set(self.count)


ACCEPT_PATH = "/v1/conversations/end"
#: The batch route: its bodies have a limit of their own.
BATCH_PATH = "/v1/conversations/end:batch"
#: Refusals of the accept path, by status, counted in `conversation_events_rejected_total`.
_REJECTIONS = {
    400: "unparseable",
    401: "unauthorized",
    408: "timeout",
    413: "too_large",
    422: "invalid",
}
_BAD_LENGTH = orjson.dumps({"detail": "Content-Length is not a number", "code": "bad_request"})
#: Paths under the in-flight limit: probes and /metrics must answer while the process sheds.
LIMITED_PREFIX = "/v1/"
request_log = logging.getLogger("conversation_events_api.requests")
_TRACE_HEADERS = (("traceparent", b"traceparent"), ("tracestate", b"tracestate"))
#: Where the authenticated principal is left for the request log (`scope["state"]`).
PRINCIPAL = "principal"


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_batch_body_bytes: int,
        in_flight: InFlight,
        client_timeout_s: float,
        retry_after_s: int,
        log_requests: bool = True,
    ) -> None:
        self.app = app
        self.log_requests = log_requests
        self.max_body_bytes = max_body_bytes
        self.max_batch_body_bytes = max_batch_body_bytes
        self.in_flight = in_flight
        self.client_timeout_s = client_timeout_s
        self.retry_after = str(retry_after_s).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        token = logs.request_id.set(rid)
        status_holder = {"status": 500}
        limited = scope["path"].startswith(LIMITED_PREFIX)
        # Probes and scrapes (every few seconds, from every prober) are not traced.
        tracer = telemetry.tracer(__name__) if limited else None
        span: trace.Span | None = None
        traced = contextlib.ExitStack()
        if tracer is not None:
            parent = telemetry.extract(
                {k: headers[b].decode("latin-1") for k, b in _TRACE_HEADERS if b in headers}
            )
            span = traced.enter_context(
                tracer.start_as_current_span(
                    scope["method"],
                    context=parent,
                    kind=trace.SpanKind.SERVER,
                    attributes={
                        "http.request.method": scope["method"],
                        "url.scheme": scope.get("scheme", "http"),
                        "conversation_events.request_id": rid,
                    },
                )
            )

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        counted = False
        try:
            if limited:
                if self.in_flight.full():
                    metrics.SHED.labels("in_flight").inc()
                    SHED_LOG.record("in_flight")
                    await _reply(
                        send_wrapper, 503, OVERLOADED_BODY, [(b"retry-after", self.retry_after)]
                    )
                    return
                self.in_flight.enter()
                counted = True
            limit = (
                self.max_batch_body_bytes if scope["path"] == BATCH_PATH else self.max_body_bytes
            )
            declared = headers.get(b"content-length")
            if declared is not None and not declared.isdigit():
                await _reply(send_wrapper, 400, _BAD_LENGTH)
                return
            if declared is not None and int(declared) > limit:
                await _reply(send_wrapper, 413, too_large_body(limit))
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
                    if received > limit:
                        raise BodyTooLarge(limit)
                    body_done = not message.get("more_body", False)
                return message

            try:
                await self.app(scope, limited_receive, send_wrapper)
            except BodyTooLarge:
                await _reply(send_wrapper, 413, too_large_body(limit))
            except BodyTimeout as exc:
                await _reply(send_wrapper, 408, _timeout_body(exc), [(b"connection", b"close")])
            except ClientDisconnect:
                # The client left before its body arrived: nobody to answer, nothing stored,
                # and not a server error (counted as 499, as proxies do).
                status_holder["status"] = 499
        except BaseException as exc:
            if span is not None:  # the server's error handler answers 500 for it
                span.record_exception(exc)
            raise
        finally:
            if counted:
                self.in_flight.leave()
            route: Any = scope.get("route")
            template = getattr(route, "path", "unmatched")
            status = status_holder["status"]
            elapsed = time.perf_counter() - started
            metrics.REQUEST_SECONDS.labels(template, f"{status // 100}xx").observe(elapsed)
            if status in _REJECTIONS and scope["path"] == ACCEPT_PATH:
                metrics.REJECTED.labels(_REJECTIONS[status]).inc()
            if span is not None:
                span.update_name(f"{scope['method']} {template}")
                span.set_attribute("http.route", template)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(trace.StatusCode.ERROR)
            if self.log_requests and (limited or status >= 400):  # probes only when failing
                self._log(scope, template, status, elapsed)
            traced.close()
            logs.request_id.reset(token)

    @staticmethod
    def _log(scope: Scope, template: str, status: int, elapsed: float) -> None:
        principal = scope.get("state", {}).get(PRINCIPAL)
        request_log.info(
            "request",
            extra={
                "method": scope["method"],
                "route": template,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
                "tenant": None if principal is None else principal.tenant,
            },
        )


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
