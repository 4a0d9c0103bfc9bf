"""The API and a worker, run as in production with only `OTEL_*` variables set, export their
spans over OTLP/HTTP to a receiver this test runs, and their JSON logs name the trace."""

from __future__ import annotations

import gzip
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from tests.support.payloads import conversation
from tests.support.processes import Service, common_env, start_api, start_worker
from tests.support.services import AMQP_URL, wait_for

pytestmark = pytest.mark.slow
API_KEY = "tracing-export-test-key-0123456789"


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    links: tuple[tuple[str, str], ...]
    attributes: frozenset[str]


@dataclass
class Receiver:
    """What an OTLP/HTTP trace receiver got: the requests' paths and content types, the spans."""

    requests: list[tuple[str, str]] = field(default_factory=list)
    spans: list[ReceivedSpan] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, path: str, content_type: str, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        received = []
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            attributes.get("service.name", ""),
                            span.name,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            tuple((lk.trace_id.hex(), lk.span_id.hex()) for lk in span.links),
                            frozenset(a.key for a in span.attributes),
                        )
                    )
        with self.lock:
            self.requests.append((path, content_type))
            self.spans.extend(received)

    def snapshot(self) -> list[ReceivedSpan]:
        with self.lock:
            return list(self.spans)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    received = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            received.take(self.path, self.headers.get("Content-Type", ""), body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield received, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def started() -> Iterator[list[Service]]:
    services: list[Service] = []
    yield services
    for service in services:
        service.stop()


def json_lines(log: str) -> list[dict]:
    return [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]


def test_spans_reach_an_otlp_http_receiver_and_logs_carry_trace_ids(
    receiver: tuple[Receiver, str],
    started: list[Service],
    database_url: str,
    names: tuple[str, str],
) -> None:
    received, endpoint = receiver
    env = common_env(database_url, AMQP_URL, *names) | {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    api, base = start_api(env, API_KEY)
    started.append(api)
    started.append(start_worker(env, OTEL_SERVICE_NAME="scoring-worker"))
    trace_id = f"{secrets.randbits(128):032x}"
    body = conversation()
    response = httpx.post(
        f"{base}/v1/conversations/end",
        json=body,
        headers={"X-API-Key": API_KEY, "traceparent": f"00-{trace_id}-{'ab' * 8}-01"},
        timeout=10,
    )
    assert response.status_code == 202, response.text

    def request_span() -> ReceivedSpan | None:
        return next(
            (
                s
                for s in received.snapshot()
                if s.trace_id == trace_id and s.name == "POST /v1/conversations/end"
            ),
            None,
        )

    http = wait_for(request_span, timeout=30, what="the API's span at the receiver")
    assert http.service == "conversation-events-api"  # the default service name
    # One server span per request, named by its route; the raw path (ids) is not recorded.
    in_trace = [s for s in received.snapshot() if s.trace_id == trace_id]
    assert [s.name for s in in_trace] == ["POST /v1/conversations/end"]
    assert "http.route" in http.attributes and "url.path" not in http.attributes
    # start_api polled /readyz until ready: probes are not traced.
    assert not [s for s in received.snapshot() if "/readyz" in s.name]

    def worker_span() -> ReceivedSpan | None:
        return next(
            (
                s
                for s in received.snapshot()
                if s.service == "scoring-worker" and (trace_id, http.span_id) in s.links
            ),
            None,
        )

    wait_for(worker_span, timeout=60, what="the worker's span, linked to the request's")
    assert {path for path, _ in received.requests} == {"/v1/traces"}
    assert {ctype for _, ctype in received.requests} == {"application/x-protobuf"}

    # The request log line names the trace and the request's span.
    [line] = [
        entry
        for entry in json_lines(api.log())
        if entry.get("msg") == "request" and entry.get("route") == "/v1/conversations/end"
    ]
    assert (line["trace_id"], line["span_id"]) == (trace_id, http.span_id)
