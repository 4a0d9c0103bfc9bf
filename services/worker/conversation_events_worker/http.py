"""A small HTTP server for probes and metrics, on its own daemon thread."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from conversation_events_worker.consumer import Health

#: /healthz fails when the connection thread has not looped for this long (it loops every 0.25 s
#: while connected, and at least every 10 s while reconnecting).
STALL_S = 30.0


def serve(host: str, port: int, health: Health) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._reply(200, generate_latest(), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                stalled = health.consuming and time.monotonic() - health.last_loop > STALL_S
                self._reply(503 if stalled else 200, b"stalled\n" if stalled else b"ok\n")
            elif self.path == "/readyz":
                if health.ready:
                    self._reply(200, b"consuming\n")
                elif health.holding:
                    self._reply(503, b"holding: PostgreSQL unreachable\n")
                else:
                    self._reply(503, b"not consuming\n")
            else:
                self._reply(404, b"not found\n")

        def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds would drown the logs

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="worker-http", daemon=True).start()
    return server
