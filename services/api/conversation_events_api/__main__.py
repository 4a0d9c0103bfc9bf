"""`python -m conversation_events_api`: serve the API with uvicorn."""

from __future__ import annotations

import uvicorn

from conversation_events.logs import configure_logging
from conversation_events_api.main import create_app
from conversation_events_api.settings import get_settings


def main() -> None:
    settings = get_settings()
    configure_logging("api", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
