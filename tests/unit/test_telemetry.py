"""Tracing's configuration by `OTEL_*` variables, and the trace ids in log lines."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider

from conversation_events import telemetry
from conversation_events.logs import JsonFormatter


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"OTEL_TRACES_EXPORTER": "none"}, None),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": " OTLP "}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, None),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, None),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "otlp"),
    ],
    ids=[
        "nothing-set",
        "none",
        "otlp",
        "otlp-spaced",
        "console",
        "endpoint-only",
        "traces-endpoint-only",
        "none-wins-over-endpoint",
        "sdk-disabled",
        "explicit-http-protobuf",
    ],
)
def test_the_exporter_follows_the_standard_variables(
    env: dict[str, str], expected: str | None
) -> None:
    assert telemetry.exporter_from_env(env) == expected


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_TRACES_EXPORTER": "zipkin"},
        {"OTEL_TRACES_EXPORTER": "otlp,console"},
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
        },
    ],
    ids=["unknown-exporter", "two-exporters", "grpc", "grpc-for-traces"],
)
def test_what_this_build_cannot_export_is_refused_by_name(env: dict[str, str]) -> None:
    with pytest.raises(telemetry.TracingConfigError, match=r"OTEL_TRACES_EXPORTER|protocol"):
        telemetry.exporter_from_env(env)


def test_a_process_with_tracing_off_never_loads_the_sdk() -> None:
    """Zero cost when off: the app and the worker import, configure and log without the SDK."""
    code = (
        "import sys, logging\n"
        "from conversation_events import telemetry\n"
        "from conversation_events.logs import configure_logging\n"
        "import conversation_events_api.main, conversation_events_worker.consumer\n"
        "configure_logging('api')\n"
        "assert telemetry.configure_tracing('api', {}) is False\n"
        "logging.getLogger('x').warning('hello')\n"
        "assert telemetry.tracer('x') is None and telemetry.inject_current() is None\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk'))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    [line] = result.stderr.splitlines()
    assert "trace_id" not in orjson.loads(line)


@pytest.fixture
def traced() -> Iterator[TracerProvider]:
    provider = TracerProvider()
    telemetry.install(provider)
    yield provider
    telemetry.uninstall()
    provider.shutdown()


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("test", logging.INFO, __file__, 1, message, None, None)


def test_log_lines_inside_a_span_name_its_trace_and_span(traced: TracerProvider) -> None:
    formatter = JsonFormatter("worker")
    with telemetry.span("work", __name__) as span:
        assert span is not None
        line = orjson.loads(formatter.format(record("inside")))
    context = span.get_span_context()
    assert line["trace_id"] == f"{context.trace_id:032x}"
    assert line["span_id"] == f"{context.span_id:016x}"
    outside = orjson.loads(formatter.format(record("outside")))
    assert "trace_id" not in outside and "span_id" not in outside


def test_a_traced_context_round_trips_through_headers(traced: TracerProvider) -> None:
    with telemetry.span("accept", __name__) as span:
        assert span is not None
        carrier = telemetry.inject_current()
    assert carrier is not None
    [link] = telemetry.links([carrier, None, {"traceparent": "garbage"}])
    assert link.context.trace_id == span.get_span_context().trace_id
    assert link.context.span_id == span.get_span_context().span_id
