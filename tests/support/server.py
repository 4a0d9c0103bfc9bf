"""Serve an ASGI app with uvicorn on a background thread, over real TCP."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import uvicorn

from tests.support.services import free_port, wait_for


class ServerThread:
    def __init__(self, app: Any, **options: Any) -> None:
        """`options` are more `uvicorn.Config` keywords (e.g. the API's `uvicorn_options`)."""
        self.port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            **options,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.base_url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=15, what="uvicorn start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=10, **kwargs)  # type: ignore[arg-type]
