"""What tracing and the request log cost on the accept path: API CPU per request, off and on.

One API process at an offered rate (open loop, below saturation, so each request pays for its
own work), at the default log level, in three configurations run interleaved: the defaults
(tracing off, request log on), tracing on (every request a sampled trace, exported over
OTLP/HTTP to a local receiver that discards the spans), and the request log off. The receiver
runs in this process: its CPU is not counted as the API's.

Then the same three configurations in one process (`in_process_cost`), paired and interleaved:
on a machine shared with other work the separate processes' figures vary more than tracing
costs, and this measurement varies less.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench import infra
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
    url = infra.create_database("inproc", template=template)
    exchange, queue = infra.names("inproc")
    try:
        in_process = in_process_cost(url, exchange, queue, repeats=max(6, cfg.repeats))
    finally:
        infra.drop_database(url)
        infra.delete_queues([queue, f"{queue}.dead"], [exchange, f"{exchange}.dlx"])
    return {
        "rate": RATE,
        "runs": runs,
        "summary": summary,
        "export_requests": export_requests,
        "in_process_ms_per_request": in_process,
    }


def in_process_cost(
    database_url: str, exchange: str, queue: str, *, requests: int = 2000, repeats: int = 3
) -> dict[str, Any]:
    """CPU of this whole process (the app, its writer, publisher and relay, the span exporter,
    and the test client) per accepted request, for each configuration, interleaved.

    A paired measurement in one process: less exposed than separate API processes to what
    else the machine runs. The client's share is the same in every configuration, so the
    differences are what tracing and the request log cost."""
    import logging
    import os

    from fastapi.testclient import TestClient
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from bench.payloads import templates
    from conversation_events import telemetry
    from conversation_events.logs import JsonFormatter
    from conversation_events_api.main import create_app
    from conversation_events_api.settings import ApiSettings

    key = "bench-in-process-key-0123456789"
    bodies = templates(50, seed=3)
    sink = open(os.devnull, "w")  # noqa: SIM115 (closed below)
    handler = logging.StreamHandler(sink)
    handler.setFormatter(JsonFormatter("api"))
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    samples: dict[str, list[float]] = {"defaults": [], "tracing on": [], "request log off": []}
    try:
        with otlp_sink() as (endpoint, _):
            names = list(samples)
            for repeat in range(repeats):
                # Each repeat in another order: what runs first or last is not always the same.
                for name in names[repeat % 3 :] + names[: repeat % 3]:
                    provider = None
                    if name == "tracing on":
                        provider = TracerProvider()
                        provider.add_span_processor(
                            BatchSpanProcessor(OTLPSpanExporter(f"{endpoint}/v1/traces"))
                        )
                        telemetry.install(provider)
                    settings = ApiSettings(
                        database_url=database_url,
                        exchange_name=exchange,
                        queue_name=queue,
                        api_keys=key,
                        request_log=name != "request log off",
                    )
                    with TestClient(create_app(settings), headers={"X-API-Key": key}) as client:

                        def post(i: int) -> None:
                            head, mid, tail = bodies[i % len(bodies)]
                            data = b"".join(
                                (head, uuid.uuid4().hex.encode(), mid, b"user-%d" % (i % 500), tail)
                            )
                            response = client.post(
                                "/v1/conversations/end",
                                content=data,
                                headers={"content-type": "application/json"},
                            )
                            assert response.status_code == 202, response.text

                        for i in range(200):  # warm-up
                            post(i)
                        started = time.process_time()
                        for i in range(requests):
                            post(i)
                        spent = time.process_time() - started
                    if provider is not None:
                        provider.shutdown()
                        telemetry.uninstall()
                    samples[name].append(1000 * spent / requests)
                    log(f"in-process {name}: {samples[name][-1]:.3f} ms/request")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        sink.close()
    return {name: median_range(values) for name, values in samples.items()}
