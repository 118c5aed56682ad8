"""OpenTelemetry tracing: a chat turn's trace from the gateway through Kafka into each consumer and its LLM calls.

Off unless the standard OTEL_* variables ask for an exporter (`OTEL_TRACES_EXPORTER=otlp|console`, or an
`OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`); `OTEL_SDK_DISABLED=true` wins over both. While off, every helper here
returns a shared no-op before touching OpenTelemetry, so the hot paths pay one attribute check.

Trace context crosses Kafka as W3C `traceparent` / `tracestate` message headers. Events written to a transactional
outbox carry the context of the code that wrote them (stored with the row), so the relay's later publish
continues the writer's trace rather than starting one of its own.
"""

from __future__ import annotations

import atexit
import os
import time
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, StatusCode, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from orrery_shared.llm.usage import Usage

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
TRACE_HEADERS = frozenset({TRACEPARENT, TRACESTATE})
SCOPE = "orrery"

_PROPAGATOR = TraceContextTextMapPropagator()
_NO_SPAN: AbstractContextManager[Span] = nullcontext(INVALID_SPAN)
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
_NO_TRACE_HEADERS: AbstractContextManager[Mapping[str, str]] = nullcontext(_NO_HEADERS)

_tracer: Tracer | None = None
_owned: SdkTracerProvider | None = None


class TelemetryConfigError(ValueError):
    """An OTEL_* variable asks for something this build cannot do."""


def enabled() -> bool:
    """Whether spans are being recorded in this process."""
    return _tracer is not None


# --- configuration ---------------------------------------------------------------------------------------------


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() == "true"


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The trace exporters the environment asks for; empty means tracing stays off.

    Unlike the SDK's own auto-configuration, nothing is exported unless asked: an unset OTEL_TRACES_EXPORTER
    means "otlp" only when an OTLP endpoint is configured.
    """
    if _flag(environ, "OTEL_SDK_DISABLED"):
        return []
    raw = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not raw:
        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        return ["otlp"] if endpoint else []
    names = [name.strip() for name in raw.split(",") if name.strip()]
    if "none" in names:
        return []
    unknown = [name for name in names if name not in ("otlp", "console")]
    if unknown:
        raise TelemetryConfigError(f"OTEL_TRACES_EXPORTER={raw}: supported exporters are otlp, console and none")
    if "otlp" in names:
        protocol = (
            environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
        ).strip()
        if protocol and protocol != "http/protobuf":
            raise TelemetryConfigError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: only http/protobuf is available (the OTLP/HTTP exporter)"
            )
    return list(dict.fromkeys(names))


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    # Endpoint, headers, timeout, compression and certificates come from OTEL_EXPORTER_OTLP_[TRACES_]*.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def configure_tracing(service_name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Install a tracer provider exporting this process's spans if OTEL_* asks for it; returns whether it did.

    `environ` (default: the process environment) decides whether and where to export; the SDK reads the
    finer settings (endpoint, headers, batching, sampling, resource attributes) from the process environment.

    The resource is `service.name=<service_name>` unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say
    otherwise; sampling follows OTEL_TRACES_SAMPLER(_ARG) and batching OTEL_BSP_*. The provider also becomes the
    global one, which turns on FastAPI's own HTTP server spans (see `service.build_app`).
    """
    names = exporter_names(os.environ if environ is None else environ)
    shutdown_tracing()
    if not names:
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # The SDK's Resource.create lets explicit attributes beat the environment; ours is only a default.
    resource = Resource.create({SERVICE_NAME: service_name}).merge(OTELResourceDetector().detect())
    provider = SdkTracerProvider(resource=resource, shutdown_on_exit=False)
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    install(provider)
    global _owned
    _owned = provider
    trace.set_tracer_provider(provider)
    return True


def install(provider: TracerProvider | None) -> None:
    """Record spans through `provider` (None: stop recording). Tests use it with an in-memory exporter."""
    global _tracer
    _tracer = provider.get_tracer(SCOPE) if provider is not None else None


@atexit.register
def shutdown_tracing() -> None:
    """Export what is still buffered and stop (at service stop, and at exit; safe to call twice)."""
    global _owned
    provider, _owned = _owned, None
    install(None)
    if provider is not None:
        provider.shutdown()


# --- spans -----------------------------------------------------------------------------------------------------


def span(name: str, attributes: Mapping[str, str | int | float | bool] | None = None) -> AbstractContextManager[Span]:
    """An internal span, current inside the block (a no-op span while tracing is off)."""
    if _tracer is None:
        return _NO_SPAN
    return _tracer.start_as_current_span(name, attributes=attributes)


def producing(topic: str, operation: str, key: str, message_id: str) -> AbstractContextManager[Mapping[str, str]]:
    """A PRODUCER span for one message; yields the headers that carry it (empty while tracing is off).

    `operation` is "publish" for a send to Kafka, the span lasting until the broker acknowledged it, or
    "create" for an event written to the outbox: the relay sends it later, under the context stored with it.
    """
    if _tracer is None:
        return _NO_TRACE_HEADERS
    return _producing(_tracer, topic, operation, key, message_id)


@contextmanager
def _producing(tracer: Tracer, topic: str, operation: str, key: str, message_id: str) -> Iterator[Mapping[str, str]]:
    attributes = {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.operation.type": "send" if operation == "publish" else "create",
        "messaging.operation.name": operation,
        "messaging.kafka.message.key": key,
        "messaging.message.id": message_id,
    }
    with tracer.start_as_current_span(f"{topic} {operation}", kind=SpanKind.PRODUCER, attributes=attributes):
        headers: dict[str, str] = {}
        _PROPAGATOR.inject(headers)
        yield headers


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current trace context to outgoing headers (an HTTP request's, say); nothing while off."""
    if _tracer is not None:
        _PROPAGATOR.inject(headers)


def consuming(topic: str, group_id: str, record: Any) -> AbstractContextManager[Span]:
    """A CONSUMER span "<topic> process" for one Kafka record, child of the context in its headers."""
    if _tracer is None:
        return _NO_SPAN
    carrier: dict[str, str] = {}
    message_id = correlation = None
    for name, value in record.headers or ():
        if name in TRACE_HEADERS and value:
            carrier[name] = value.decode("latin-1")
        elif name == "x-event-id" and value:
            message_id = value.decode(errors="replace")
        elif name == "x-correlation-id" and value:
            correlation = value.decode(errors="replace")
    attributes: dict[str, str | int] = {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.consumer.group.name": group_id,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.offset": record.offset,
    }
    if record.key is not None:
        attributes["messaging.kafka.message.key"] = record.key.decode(errors="replace")
    if message_id:
        attributes["messaging.message.id"] = message_id
    if correlation:
        attributes["messaging.message.conversation_id"] = correlation
    return _tracer.start_as_current_span(
        f"{topic} process", context=_PROPAGATOR.extract(carrier), kind=SpanKind.CONSUMER, attributes=attributes
    )


def failed(current: Span, description: str) -> None:
    """Mark `current` as failed without an exception (a message dead-lettered, say)."""
    current.set_status(StatusCode.ERROR, description)


def record_llm_call(usage: Usage) -> None:
    """A CLIENT span for one finished LLM call, built from its usage record.

    The span is written once the call is over, backdated to its start, rather than held open around it: a
    streamed reply then costs nothing per delta, and every outcome (answered, interrupted, cancelled, failed
    after fallbacks) is recorded where its usage is. Its parent is whatever span is current at that moment —
    the consumer span of the event being handled.
    """
    tracer = _tracer
    if tracer is None:
        return
    end = time.time_ns()
    attributes: dict[str, str | int | float | bool] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": usage.provider,
        "gen_ai.system": usage.provider,
        "gen_ai.request.model": usage.model,
        "gen_ai.usage.input_tokens": usage.prompt_tokens,
        "gen_ai.usage.output_tokens": usage.completion_tokens,
        "orrery.llm.task": usage.task,
        "orrery.llm.outcome": usage.outcome,
        "orrery.llm.requests": usage.requests,
        "orrery.llm.tokens_estimated": usage.estimated,
    }
    if usage.ttft_s is not None:
        attributes["gen_ai.response.time_to_first_chunk"] = usage.ttft_s
    llm_span = tracer.start_span(
        f"chat {usage.model}",
        kind=SpanKind.CLIENT,
        attributes=attributes,
        start_time=end - int(usage.latency_s * 1e9),
    )
    if usage.outcome in ("failed", "interrupted"):
        llm_span.set_status(StatusCode.ERROR, usage.outcome)
    llm_span.end(end_time=end)


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span in hex, for log lines; None when there is none."""
    if _tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
