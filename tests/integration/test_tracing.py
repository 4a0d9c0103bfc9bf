"""Tracing end to end on real PostgreSQL and RabbitMQ, spans kept by the SDK's in-memory exporter.

One posted conversation is one trace: the HTTP server span continues the caller's
`traceparent`, the outbox row keeps that span's context, every publish (the API's and the
relay's) carries it in the AMQP headers, and the worker's batch span links to it, with the
processing's steps as its children.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator

import httpx
import pika
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Engine
from tests.integration.api.conftest import make_client
from tests.integration.worker.conftest import per_event, run_consumer, topology
from tests.support.payloads import conversation
from tests.support.pipeline import event_row, publish, store
from tests.support.services import AMQP_URL, take_message, wait_for

from conversation_events import telemetry
from conversation_events.errors import PermanentError, RetryableError
from conversation_events.messaging.topology import Topology
from conversation_events.processing import ProcessingConfig, ProcessResult
from conversation_events_worker.consumer import Consumer

__all__ = ["make_client", "run_consumer", "topology"]  # fixtures of the API and worker tiers

END = "/v1/conversations/end"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for this test, every finished span kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.install(provider)
    yield exporter
    telemetry.uninstall()
    provider.shutdown()


def caller_context() -> tuple[str, int, int]:
    """A caller's `traceparent` (sampled) and its trace and span ids."""
    trace_id, span_id = secrets.randbits(128), secrets.randbits(64)
    return f"00-{trace_id:032x}-{span_id:016x}-01", trace_id, span_id


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def linked_to(span: ReadableSpan, target: ReadableSpan) -> bool:
    assert target.context is not None
    return any(
        link.context.trace_id == target.context.trace_id
        and link.context.span_id == target.context.span_id
        for link in span.links
    )


def server_span(exporter: InMemorySpanExporter, trace_id: int) -> ReadableSpan:
    [span] = [
        s
        for s in named(exporter, f"POST {END}")
        if s.context is not None and s.context.trace_id == trace_id
    ]
    return span


def worker_span(exporter: InMemorySpanExporter, queue: str, target: ReadableSpan) -> ReadableSpan:
    """The worker's batch span that links to `target`, once it has ended."""
    found: ReadableSpan = wait_for(
        lambda: next(
            (s for s in named(exporter, f"{queue} process") if linked_to(s, target)), None
        ),
        timeout=15,
        what="the worker's span linked to the request",
    )
    return found


def assert_worker_steps(exporter: InMemorySpanExporter, batch: ReadableSpan) -> None:
    assert batch.kind is trace.SpanKind.CONSUMER
    assert batch.context is not None
    children = {
        s.name
        for s in exporter.get_finished_spans()
        if s.parent is not None and s.parent.span_id == batch.context.span_id
    }
    assert {"claim", "score", "status update"} <= children


def post(client: httpx.Client, traceparent: str) -> tuple[dict, str]:
    body = conversation()
    response = client.post(END, json=body, headers={"traceparent": traceparent})
    assert response.status_code == 202, response.text
    return body, response.json()["event_id"]


def processed(client: httpx.Client, body: dict) -> bool:
    view = client.get(f"/v1/conversations/{body['conversation_id']}").json()
    return bool(view["status"] == "PROCESSED")


def test_one_conversation_is_one_trace_from_the_request_to_the_worker(
    spans: InMemorySpanExporter,
    make_client: Callable[..., httpx.Client],
    run_consumer: Callable[..., Consumer],
    engine: Engine,
    names: tuple[str, str],
) -> None:
    client = make_client()
    run_consumer()
    traceparent, trace_id, caller_span_id = caller_context()
    body, event_id = post(client, traceparent)
    wait_for(lambda: processed(client, body), timeout=30, what="PROCESSED")

    http = server_span(spans, trace_id)
    assert http.kind is trace.SpanKind.SERVER
    assert http.parent is not None and http.parent.span_id == caller_span_id  # continued
    assert http.attributes is not None
    assert http.attributes["http.route"] == END
    assert http.attributes["http.response.status_code"] == 202
    assert http.attributes["conversation_events.event_id"] == event_id
    # The outbox row keeps the request span's context.
    assert http.context is not None
    stored = event_row(engine, event_id)["trace_context"]
    assert stored["traceparent"] == f"00-{trace_id:032x}-{http.context.span_id:016x}-01"

    publishes = wait_for(
        lambda: [s for s in named(spans, f"{names[0]} publish") if linked_to(s, http)],
        timeout=10,
        what="the API's publish span",
    )
    assert publishes[0].kind is trace.SpanKind.PRODUCER
    assert publishes[0].attributes is not None
    assert publishes[0].attributes["conversation_events.publish.source"] == "api"
    assert_worker_steps(spans, worker_span(spans, names[1], http))


def test_a_relay_republish_carries_the_trace_to_the_worker(
    spans: InMemorySpanExporter,
    make_client: Callable[..., httpx.Client],
    run_consumer: Callable[..., Consumer],
    names: tuple[str, str],
) -> None:
    exchange, queue = names
    client = make_client(relay_redrive_after_s=1.0, relay_delay_s=1.0)
    traceparent, trace_id, _ = caller_context()
    body, _ = post(client, traceparent)
    http = server_span(spans, trace_id)
    # The first publish arrives, carrying the request's context; then its message is lost:
    # only the relay can bring it back.
    properties, _ = take_message(
        queue,
        lambda m: m["conversation_id"] == body["conversation_id"],
        timeout=15,
        what="the first publish",
    )
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        connection.channel().queue_purge(queue)
    finally:
        connection.close()
    purged_ns = time.time_ns()
    assert http.context is not None
    assert properties.headers["traceparent"] == f"00-{trace_id:032x}-{http.context.span_id:016x}-01"

    def republished() -> bool:
        return any(
            s.start_time is not None
            and s.start_time > purged_ns
            and s.attributes is not None
            and s.attributes["conversation_events.publish.source"] == "relay"
            and linked_to(s, http)
            for s in named(spans, f"{exchange} publish")
        )

    wait_for(republished, timeout=20, what="the relay's republish span")
    run_consumer()
    wait_for(lambda: processed(client, body), timeout=30, what="PROCESSED")
    assert_worker_steps(spans, worker_span(spans, queue, http))


def test_untraced_requests_store_no_trace_context(
    make_client: Callable[..., httpx.Client], engine: Engine
) -> None:
    """Tracing off: an incoming `traceparent` is ignored and nothing is stored or sent."""
    client = make_client()
    traceparent, _, _ = caller_context()
    _, event_id = post(client, traceparent)
    assert event_row(engine, event_id)["trace_context"] is None


def test_failures_retries_and_dead_letters_are_recorded_on_the_batch_span(
    spans: InMemorySpanExporter,
    run_consumer: Callable[..., Consumer],
    engine: Engine,
    topology: Topology,
) -> None:
    transient, permanent = conversation(), conversation()
    transient_id, permanent_id = store(engine, transient), store(engine, permanent)

    def failing(engine: Engine, event_id: str, config: ProcessingConfig) -> ProcessResult:
        if event_id == permanent_id:
            raise PermanentError("conversation cannot be scored")
        raise RetryableError("scoring briefly unavailable")

    run_consumer(processor=per_event(failing))
    publish(topology, transient_id, transient)
    publish(topology, permanent_id, permanent)

    def recorded() -> dict[str, tuple[ReadableSpan, dict]] | None:
        found = {
            str(event.attributes["conversation_events.event_id"]): (span, dict(event.attributes))
            for span in named(spans, f"{topology.queue} process")
            for event in span.events
            if event.name == "exception" and event.attributes is not None
        }
        return found if {transient_id, permanent_id} <= set(found) else None

    found: dict[str, tuple[ReadableSpan, dict]] = wait_for(
        recorded, timeout=15, what="both failures recorded on a batch span"
    )
    _, retried = found[transient_id]
    assert retried["conversation_events.outcome"] == "retry scheduled"
    assert retried["exception.message"] == "scoring briefly unavailable"
    assert float(retried["conversation_events.retry_in_s"]) >= 0
    dead_span, dead = found[permanent_id]
    assert dead["conversation_events.outcome"] == "dead-lettered"
    assert dead["exception.type"].endswith("PermanentError")
    assert dead_span.status.status_code is trace.StatusCode.ERROR
