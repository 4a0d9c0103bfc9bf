"""A small threaded HTTP server for probes and metrics (standard library, no web framework)."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

#: ``(status, body, content type)``
Reply = tuple[int, bytes, str]
#: Answers a GET of one path; called on the server's thread for every request.
Route = Callable[[], Reply]


class _Server(ThreadingHTTPServer):
    """A failed request is one log line, not a traceback on stderr.

    A probe that times out closes its connection while the answer is being read or written
    (under CPU starvation, say): that is the probe's verdict, already acted on by whoever sent
    it, so it is a warning with the cause; anything else is an error with its stack, still one
    structured line.
    """

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            log.warning(
                "probe connection closed before its answer",
                extra={"client": client_address[0], "error": type(exc).__name__},
            )
        else:
            log.error("probe request failed", exc_info=True, extra={"client": client_address[0]})


class ProbeServer:
    """Answers ``GET`` of each path in ``routes`` (the query string ignored) with what its
    callable returns and any other path with ``not_found``; serves on a daemon thread named
    ``name`` from :meth:`start` until :meth:`stop`. Requests are not logged: probes every few
    seconds would drown the process's own lines."""

    def __init__(
        self,
        host: str,
        port: int,
        routes: Mapping[str, Route],
        *,
        not_found: Reply,
        name: str,
    ) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path.split("?", 1)[0])
                status, body, content_type = route() if route else not_found
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = _Server((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> ProbeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
