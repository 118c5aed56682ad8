"""Tracing helpers without infrastructure: when tracing turns on, trace headers, spans, log fields."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from orrery_shared import telemetry
from orrery_shared.events import UserRegistered
from orrery_shared.kafka import event_headers
from orrery_shared.llm.usage import Usage
from orrery_shared.logging import JsonFormatter


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console, otlp"}, ["console", "otlp"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, ["otlp"]),
    ],
)
def test_tracing_is_off_unless_the_environment_asks_for_an_exporter(env: dict[str, str], expected: list[str]) -> None:
    assert telemetry.exporter_names(env) == expected


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_TRACES_EXPORTER": "zipkin"},
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
    ],
)
def test_an_exporter_this_build_lacks_is_a_configuration_error(env: dict[str, str]) -> None:
    with pytest.raises(telemetry.TelemetryConfigError, match="OTEL_"):
        telemetry.exporter_names(env)


def test_while_off_nothing_is_added_to_headers_or_logs() -> None:
    assert not telemetry.enabled()
    event = UserRegistered(user_id="00000000-0000-0000-0000-000000000001", username="a", is_guest=True)
    with telemetry.producing(event.TOPIC, "create", "k", str(event.event_id)) as context:
        headers = event_headers(event, context)
    assert not set(headers) & telemetry.TRACE_HEADERS
    assert telemetry.current_ids() is None


def record(headers: list[tuple[str, bytes]]) -> SimpleNamespace:
    return SimpleNamespace(headers=headers, partition=3, offset=42, key=b"conversation-1")


def test_a_consumer_span_continues_the_producers_trace(spans: InMemorySpanExporter) -> None:
    with telemetry.span("submit"), telemetry.producing("chat.turn-requested.v1", "publish", "k", "e-1") as context:
        headers = dict(context)
    assert headers[telemetry.TRACEPARENT].startswith("00-")

    raw = [(k, v.encode()) for k, v in headers.items()] + [("x-event-id", b"e-1"), ("x-correlation-id", b"turn-1")]
    with telemetry.consuming("chat.turn-requested.v1", "chat.turns", record(raw)) as span:
        telemetry.failed(span, "dead-lettered: failed")

    by_name = {s.name: s for s in spans.get_finished_spans()}
    submit, publish, process = (
        by_name["submit"],
        by_name["chat.turn-requested.v1 publish"],
        by_name["chat.turn-requested.v1 process"],
    )
    assert publish.kind is SpanKind.PRODUCER and process.kind is SpanKind.CONSUMER
    assert publish.parent is not None and publish.parent.span_id == submit.context.span_id
    assert process.parent is not None and process.parent.span_id == publish.context.span_id
    assert process.context.trace_id == submit.context.trace_id
    assert process.attributes is not None
    assert process.attributes["messaging.consumer.group.name"] == "chat.turns"
    assert process.attributes["messaging.message.id"] == "e-1"
    assert process.attributes["messaging.kafka.offset"] == 42
    assert process.status.status_code is StatusCode.ERROR


def test_a_record_without_trace_headers_starts_a_trace_of_its_own(spans: InMemorySpanExporter) -> None:
    with telemetry.consuming("user.registered", "g", record([])):
        pass
    [span] = spans.get_finished_spans()
    assert span.parent is None


def test_an_llm_call_is_a_client_span_under_the_current_one(spans: InMemorySpanExporter) -> None:
    usage = Usage("chat", "stub", "orrery-chat", 120, 30, latency_s=0.5, ttft_s=0.1, estimated=False, requests=1)
    with telemetry.span("handling"):
        telemetry.record_llm_call(usage)
    llm, handling = spans.get_finished_spans()
    assert llm.name == "chat orrery-chat" and llm.kind is SpanKind.CLIENT
    assert llm.parent is not None and llm.parent.span_id == handling.context.span_id
    assert llm.attributes is not None
    assert llm.attributes["gen_ai.request.model"] == "orrery-chat"
    assert llm.attributes["gen_ai.provider.name"] == "stub"
    assert llm.attributes["gen_ai.usage.input_tokens"] == 120
    assert llm.attributes["gen_ai.usage.output_tokens"] == 30
    assert llm.attributes["gen_ai.response.time_to_first_chunk"] == 0.1
    assert llm.start_time is not None and llm.end_time is not None
    assert abs((llm.end_time - llm.start_time) / 1e9 - 0.5) < 0.01


def test_log_lines_carry_the_current_trace_and_span(spans: InMemorySpanExporter) -> None:
    formatter = JsonFormatter("chat")
    line = logging.LogRecord("orrery", logging.INFO, __file__, 1, "hello", (), None)
    assert "trace_id" not in json.loads(formatter.format(line))
    with telemetry.span("handling") as span:
        entry = json.loads(formatter.format(line))
    context = span.get_span_context()
    assert entry["trace_id"] == format(context.trace_id, "032x")
    assert entry["span_id"] == format(context.span_id, "016x")


def test_the_resource_names_the_service_unless_the_environment_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("opentelemetry.trace.set_tracer_provider", lambda provider: None)
    env = {"OTEL_TRACES_EXPORTER": "console"}
    try:
        assert telemetry.configure_tracing("chat", env)
        assert telemetry._owned is not None
        assert telemetry._owned.resource.attributes["service.name"] == "chat"
        monkeypatch.setenv("OTEL_SERVICE_NAME", "chat-eu")
        monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging")
        assert telemetry.configure_tracing("chat", env)
        attributes = telemetry._owned.resource.attributes
        assert attributes["service.name"] == "chat-eu"
        assert attributes["deployment.environment.name"] == "staging"
    finally:
        telemetry.shutdown_tracing()
    assert not telemetry.enabled()


def test_outgoing_http_headers_carry_the_current_span_only_while_tracing(spans: InMemorySpanExporter) -> None:
    headers: dict[str, str] = {}
    with telemetry.span("serving") as span:
        telemetry.inject(headers)
    assert headers[telemetry.TRACEPARENT].split("-")[2] == format(span.get_span_context().span_id, "016x")
    telemetry.install(None)
    untouched: dict[str, str] = {}
    with telemetry.span("serving"):
        telemetry.inject(untouched)
    assert untouched == {}
