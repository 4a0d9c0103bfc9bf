"""Builds the FastAPI application; every connection is opened in the lifespan, none at import."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import start_http_server
from starlette.exceptions import HTTPException as StarletteHTTPException

from conversation_events.errors import ConflictingEvent, PermanentError, RetryableError
from conversation_events.messaging.policy import ensure_queue_policy
from conversation_events_api.body import add_body_schemas, validation_details
from conversation_events_api.deps import unauthorized
from conversation_events_api.middleware import (
    BodyTooLarge,
    EdgeMiddleware,
    InFlight,
    too_large_body,
)
from conversation_events_api.overload import UNAVAILABLE_BODY, add_handlers, watch_loop_lag
from conversation_events_api.publisher import Publisher
from conversation_events_api.relay import Relay
from conversation_events_api.routes import (
    admin,
    batch,
    conversations,
    friendship,
    health,
    users,
)
from conversation_events_api.routes.health import metrics_registry
from conversation_events_api.security import KeyRing, presented_key
from conversation_events_api.settings import ApiSettings
from conversation_events_api.state import AppState
from conversation_events_api.writer import EventWriter

log = logging.getLogger(__name__)


def create_app(settings: ApiSettings) -> FastAPI:
    """The application for `settings`; its lifespan connects to PostgreSQL and RabbitMQ."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        topology = settings.topology()
        # Dead-lettering and the delivery limit, as this release configures them (idempotent;
        # in the background: the API accepts events while the broker is down).
        policy = (
            asyncio.create_task(
                asyncio.to_thread(ensure_queue_policy, settings.management_api(), topology)
            )
            if settings.queue_policy_on_start
            else None
        )
        engine = settings.make_engine(
            pool_size=settings.db_pool_size,
            application_name="conversation-events-api",
            # No round trip per checkout: every database use goes through `in_transaction`,
            # which redoes its first use of a connection a restart killed.
            pre_ping=False,
        )
        writer = EventWriter(
            engine,
            batch_size=settings.writer_batch_size,
            concurrency=settings.writer_concurrency,
            max_pending=settings.writer_max_pending,
            max_wait_s=settings.writer_max_wait_s,
            window_s=settings.writer_batch_window_s,
        )
        publisher = Publisher(
            settings.amqp_url.get_secret_value(),
            topology,
            engine,
            publish_timeout_s=settings.publish_timeout_s,
            max_pending=settings.publish_max_pending,
            window_s=settings.publish_batch_window_s,
            # Names this process's connection in the broker's management UI and API.
            connection_name=(
                f"conversation-events-api {socket.gethostname()}[{os.getpid()}]"
                f" {settings.queue_name}"
            ),
        )
        relay = Relay(
            engine,
            publisher,
            interval_s=settings.relay_interval_s,
            delay_s=settings.relay_delay_s,
            redrive_after_s=settings.relay_redrive_after_s,
            batch_size=settings.relay_batch_size,
        )
        app.state.ce = AppState(
            settings=settings,
            topology=topology,
            engine=engine,
            writer=writer,
            publisher=publisher,
            relay=relay,
            keys=KeyRing(settings.key_list(), engine, ttl_s=settings.api_key_cache_s),
        )
        await writer.start()
        await publisher.start()
        await relay.start()
        lag = asyncio.create_task(watch_loop_lag(), name="loop-lag")
        log.info("api started", extra={"queue": settings.queue_name})
        metrics_server = None
        if settings.metrics_port:
            metrics_server, _ = start_http_server(
                settings.metrics_port, addr=settings.host, registry=metrics_registry()
            )
        try:
            yield
        finally:
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()
            if policy is not None:
                policy.cancel()
            lag.cancel()
            await relay.stop()
            await writer.stop()
            await publisher.stop()
            engine.dispose()
            log.info("api stopped")

    app = FastAPI(
        title="conversation-events",
        version="1.0.0",
        summary="Accepts finished chatbot conversations and scores friendship asynchronously.",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry spans, metrics and logs stay off: its server span
        # records the raw path (user and conversation ids, which would outlive an erasure in
        # a trace store) and its log records carry invalid input. `EdgeMiddleware` makes the
        # server span instead, named and tagged by the route template only.
        telemetry={"tracing": False, "metrics": False, "logs": False, "auto_configure": False},
        # Closed in production unless asked for (CE_DOCS_ENABLED).
        docs_url="/docs" if settings.serves_docs else None,
        redoc_url="/redoc" if settings.serves_docs else None,
        openapi_url="/openapi.json" if settings.serves_docs else None,
    )
    # Shared with the HTTP protocol, which refuses requests past it (`server.uvicorn_options`).
    app.state.in_flight = InFlight(settings.max_in_flight)
    app.add_middleware(
        EdgeMiddleware,
        in_flight=app.state.in_flight,
        max_body_bytes=settings.max_body_bytes,
        max_batch_body_bytes=settings.max_batch_body_bytes,
        client_timeout_s=settings.client_timeout_s,
        retry_after_s=settings.retry_after_s,
        log_requests=settings.request_log,
    )
    app.include_router(conversations.router)
    app.include_router(batch.router)
    app.include_router(friendship.router)
    app.include_router(users.router)
    app.include_router(admin.router)
    app.include_router(health.router)
    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_body_schemas(build_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    add_handlers(app, settings.retry_after_s)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        # FastAPI parses a JSON body before it runs the key dependency: without this check an
        # unauthenticated client would learn the validation rules from a 422.
        if request.url.path.startswith("/v1/"):
            keys: KeyRing = request.app.state.ce.keys
            try:
                principal = await keys.authenticate(presented_key(request))
            except RetryableError:
                headers = {"Retry-After": str(settings.retry_after_s)}
                return Response(UNAVAILABLE_BODY, 503, headers, media_type="application/json")
            if principal is None:
                return http_error_response(unauthorized())
        body = orjson.dumps({"detail": validation_details(exc.errors())})
        return Response(body, status_code=422, media_type="application/json")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return http_error_response(exc)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge) -> Response:
        return Response(too_large_body(exc.limit), status_code=413, media_type="application/json")

    @app.exception_handler(ConflictingEvent)
    async def conflict(request: Request, exc: ConflictingEvent) -> JSONResponse:
        return JSONResponse(
            {"detail": str(exc), "code": "conflict", "event_id": exc.event_id}, status_code=409
        )

    @app.exception_handler(PermanentError)
    async def permanent(request: Request, exc: PermanentError) -> JSONResponse:
        log.error("request failed", extra={"error": str(exc), "path": request.url.path})
        return JSONResponse({"detail": "internal error", "code": "internal"}, status_code=500)

    return app


_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    410: "erased",
    413: "payload_too_large",
    422: "invalid",
    503: "unavailable",
}


def http_error_response(exc: StarletteHTTPException) -> Response:
    """An HTTP error as the documented `ErrorBody` (`detail` and `code`).

    Structured details (a list of field errors) keep FastAPI's `{"detail": [...]}` shape.
    """
    headers = dict(exc.headers or {})
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=headers)
    body: dict[str, Any] = {"detail": exc.detail}
    if isinstance(exc.detail, str):
        body["code"] = _ERROR_CODES.get(exc.status_code, "error")
    return JSONResponse(body, status_code=exc.status_code, headers=headers)
