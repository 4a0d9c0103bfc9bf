"""`conversation-events-api`: serve the API with uvicorn."""

from __future__ import annotations

import gc

import uvicorn

from conversation_events import telemetry
from conversation_events.logs import configure_logging
from conversation_events_api.main import create_app
from conversation_events_api.server import uvicorn_options
from conversation_events_api.settings import get_settings


def main() -> None:
    settings = get_settings()
    configure_logging("api", settings.log_level)
    telemetry.configure_tracing("api")
    app = create_app(settings)
    # Every request allocates thousands of short-lived containers (ASGI messages, pydantic
    # models, SQLAlchemy parameters), so the default gen-0 threshold (700) runs the cyclic
    # collector hundreds of times a second, and its older generations walk every long-lived
    # object of the imported libraries. Freeze what exists now (it is never garbage) and
    # collect less often; reference counting still frees what requests allocate at once.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    try:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            # asyncio's loop, not uvloop: libuv (since 1.45) accepts one connection per loop
            # iteration, so under a flood, when an iteration serves hundreds of ready sockets,
            # new connections wait in the kernel's queue for seconds (1,000 connections at
            # ~50 ms an iteration: the last first request answered after 7 s). asyncio accepts
            # everything pending at once (up to the backlog), at the same CPU per request here.
            loop="asyncio",
            timeout_graceful_shutdown=10,
            **uvicorn_options(settings, app.state.in_flight),
        )
    finally:
        telemetry.shutdown()  # export the spans still buffered


if __name__ == "__main__":
    main()
