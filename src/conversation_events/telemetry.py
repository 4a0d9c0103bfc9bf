"""OpenTelemetry tracing, configured by the standard `OTEL_*` variables and off by default.

Tracing is on when `OTEL_TRACES_EXPORTER` is `otlp` (OTLP over HTTP/protobuf) or `console`, or
when it is unset and an OTLP endpoint is (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); `OTEL_SDK_DISABLED=true` turns it off whatever else is
set. Everything else (service name, resource attributes, sampler, batching, headers, timeouts)
is read by the SDK from its own variables.

Off, nothing of the SDK is imported and `tracer()` is None: callers test that once and skip
their spans, so the hot paths pay nothing. The trace context travels as W3C `traceparent`
(and `tracestate`) headers, through the globally configured propagator (`OTEL_PROPAGATORS`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

_EXPORTERS = ("otlp", "console")
_provider: trace.TracerProvider | None = None
_owned: TracerProvider | None = None  # the provider `configure_tracing` built (to shut down)
_tracers: dict[str, trace.Tracer] = {}


class TracingConfigError(ValueError):
    """The `OTEL_*` variables ask for something this build cannot do."""


def exporter_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """The trace exporter the `OTEL_*` variables ask for: `otlp`, `console`, or None (off)."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    names = [n for n in names if n]
    if not names:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        if not endpoint:
            return None
        names = ["otlp"]
    if names == ["none"]:
        return None
    if len(names) > 1 or names[0] not in _EXPORTERS:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER={env['OTEL_TRACES_EXPORTER']!r}: one of otlp, console or "
            "none is supported"
        )
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if names[0] == "otlp" and protocol.strip().lower() != "http/protobuf":
        raise TracingConfigError(
            f"OTLP protocol {protocol!r} is not supported: this build exports http/protobuf"
        )
    return names[0]


def configure_tracing(service: str, env: Mapping[str, str] | None = None) -> bool:
    """Install the SDK with the exporter the environment asks for; returns whether it did.

    `service` names the process (`service.name`) unless `OTEL_SERVICE_NAME` or
    `OTEL_RESOURCE_ATTRIBUTES` does. Raises `TracingConfigError` on an unsupported exporter or
    protocol: a process should refuse to start rather than run untraced unnoticed.
    """
    global _owned
    exporter_name = exporter_from_env(env)
    if exporter_name is None:
        return False
    # Imported only here: a process with tracing off never loads the SDK.
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: f"conversation-events-{service}"}))
    provider = TracerProvider(resource=resource)
    exporter: SpanExporter
    if exporter_name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        exporter = ConsoleSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # for libraries that trace through the global API
    install(provider)
    _owned = provider
    log.info(
        "tracing on",
        extra={"exporter": exporter_name, "service_name": resource.attributes.get(SERVICE_NAME)},
    )
    return True


def install(provider: trace.TracerProvider) -> None:
    """Trace this process's work with `provider` (tests install one with an in-memory exporter)."""
    global _provider
    _tracers.clear()
    _provider = provider


def uninstall() -> None:
    """Back to tracing off."""
    global _provider
    _provider = None
    _tracers.clear()


def shutdown() -> None:
    """Export what is still buffered and stop the exporter (at process exit)."""
    global _owned
    if _owned is not None:
        _owned.shutdown()
        _owned = None
    uninstall()


def tracer(name: str) -> trace.Tracer | None:
    """A tracer for the module `name`, or None when tracing is off."""
    if _provider is None:
        return None
    found = _tracers.get(name)
    if found is None:  # the SDK builds a new tracer per call: one per module is enough
        found = _tracers[name] = _provider.get_tracer(name)
    return found


def enabled() -> bool:
    return _provider is not None


def inject_current() -> dict[str, str] | None:
    """The current span's context as W3C headers, or None when there is none to carry."""
    if _provider is None:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


def extract(carrier: Mapping[str, Any] | None) -> otel_context.Context:
    """The context that W3C headers (`traceparent`, `tracestate`) carry; empty when none."""
    if not carrier:
        return otel_context.Context()
    headers = {k: v if isinstance(v, str) else str(v) for k, v in carrier.items()}
    return propagate.extract(headers, context=otel_context.Context())


def links(carriers: Sequence[Mapping[str, Any] | None]) -> list[trace.Link]:
    """A link to each valid context among `carriers` (a batch's messages)."""
    result = []
    for carrier in carriers:
        span_context = trace.get_current_span(extract(carrier)).get_span_context()
        if span_context.is_valid:
            result.append(trace.Link(span_context))
    return result


@contextlib.contextmanager
def span(
    name: str,
    module: str,
    *,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    links: Sequence[trace.Link] = (),
) -> Iterator[trace.Span | None]:
    """A current span named `name` (None when tracing is off); an exception leaving it is
    recorded on it, with an error status."""
    tracer_ = tracer(module)
    if tracer_ is None:
        yield None
        return
    with tracer_.start_as_current_span(
        name, kind=kind, attributes=dict(attributes or {}), links=list(links)
    ) as current:
        yield current


def messaging_span(
    operation: Literal["publish", "process"],
    destination: str,
    module: str,
    carriers: Sequence[Mapping[str, Any] | None],
    **attributes: Any,
) -> contextlib.AbstractContextManager[trace.Span | None]:
    """The span of one batch of messages published to, or processed from, `destination`,
    linked to each message's trace context (the messaging conventions for batches)."""
    return span(
        f"{destination} {operation}",
        module,
        kind=trace.SpanKind.PRODUCER if operation == "publish" else trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "send" if operation == "publish" else "process",
            "messaging.destination.name": destination,
            "messaging.batch.message_count": len(carriers),
            **attributes,
        },
        links=links(carriers),
    )


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the current span in hex, for log lines; None outside a span."""
    if _provider is None:
        return None
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")
