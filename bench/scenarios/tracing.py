"""What tracing and the request log cost on the accept path: API CPU per request, off and on.

One API process at an offered rate (open loop, below saturation, so each request pays for its
own work), at the default log level, in three configurations run interleaved: the defaults
(tracing off, request log on), tracing on (every request a sampled trace, exported over
OTLP/HTTP to a local receiver that discards the spans), and the request log off. The receiver
runs in this process: its CPU is not counted as the API's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.infra import log
from bench.scenarios.accept import accept_run
from bench.scenarios.common import Config, median_range

RATE = 100  # requests/s: well below what one API process sustains, even on a busy machine


@contextmanager
def otlp_sink() -> Iterator[tuple[str, list[int]]]:
    """An OTLP/HTTP endpoint that answers 200 to every export; yields its URL and a counter."""
    received = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received[0] += 1
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def tracing_cost(cfg: Config, template: str) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    with otlp_sink() as (endpoint, exports):
        # At the default log level (the other scenarios log warnings only), so that the
        # request log's lines are written.
        info = {"CE_LOG_LEVEL": "INFO"}
        variants: dict[str, dict[str, str]] = {
            "defaults": info,
            "tracing on": info
            | {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
            "request log off": info | {"CE_REQUEST_LOG": "false"},
        }
        for repeat in range(cfg.repeats):
            for name, env in variants.items():
                log(f"tracing cost: {name} at {RATE} req/s, run {repeat + 1}")
                try:
                    result = accept_run("ours", 1, cfg, template, rate=RATE, extra_env=env)
                except Exception as exc:  # one broken run must not lose the others
                    log(f"tracing cost {name} failed: {exc!r}")
                    continue
                runs.append({"variant": name, **result})
        export_requests = exports[0]
    summary = {
        name: {
            "api_cpu_ms_per_request": median_range(
                [r["api_cpu_ms_per_event"] for r in runs if r["variant"] == name]
            ),
            "p99_ms": median_range([r["latency_ms"]["p99"] for r in runs if r["variant"] == name]),
            "errors": sum(r["errors"] for r in runs if r["variant"] == name),
        }
        for name in variants
    }
    return {"rate": RATE, "runs": runs, "summary": summary, "export_requests": export_requests}
