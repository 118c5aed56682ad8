"""One chat turn is one trace: gateway → Kafka → chat → LLM call, exported over OTLP/HTTP by every service.

The platform runs with the standard OTEL_* variables pointing at an OTLP/HTTP receiver inside this test process,
which decodes each export request and keeps the spans in memory.
"""

from __future__ import annotations

import gzip
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_gateway import guest, receive_until, send, socket, spin_character, start
from tests.support.llm_stub import StubControl
from tests.support.platform import PLATFORM_ENV, running

pytestmark = pytest.mark.e2e

CHAT_METRICS = "http://127.0.0.1:8003/metrics"


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class OtlpReceiver:
    """An OTLP/HTTP trace endpoint (`POST /v1/traces`, protobuf) keeping what it receives in memory."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                receiver.take(ExportTraceServiceRequest.FromString(body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def take(self, request: ExportTraceServiceRequest) -> None:
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            service=str(resource.get("service.name")),
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        with self._lock:
            self.spans.extend(received)

    def snapshot(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as otlp:
        yield otlp


@pytest.fixture(scope="module")
def platform(platform_kafka: str, receiver: OtlpReceiver) -> Iterator[str]:
    """The platform as the e2e conftest runs it, plus tracing exported to `receiver` within ~100 ms."""
    env = {
        **PLATFORM_ENV,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=e2e",
    }
    with running([sys.executable, "scripts/run_platform.py"], platform_kafka, env):
        yield platform_kafka


def wait_for_spans(receiver: OtlpReceiver, found: Any, what: str, timeout: float = 30) -> tuple[ReceivedSpan, ...]:
    """Poll the receiver until `found(spans)` returns something truthy (the services export in batches)."""
    deadline = time.monotonic() + timeout
    while True:
        result = found(receiver.snapshot())
        if result:
            return tuple(result)
        if time.monotonic() > deadline:
            names = sorted({(s.service, s.name) for s in receiver.snapshot()})
            raise AssertionError(f"{what} not exported within {timeout}s; received: {names}")
        time.sleep(0.1)


def ancestors(span: ReceivedSpan, spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    """The parent chain of `span` among `spans`, nearest first."""
    by_id = {s.span_id: s for s in spans if s.trace_id == span.trace_id}
    chain = []
    while span.parent_id and span.parent_id in by_id:
        span = by_id[span.parent_id]
        chain.append(span)
    return chain


async def test_a_chat_turn_is_one_trace_from_the_gateway_through_kafka_to_chat_and_its_llm_call(
    receiver: OtlpReceiver, stub: StubControl
) -> None:
    stub.script(model="orrery-chat", content="The rings hum when the moons align.")
    token = await guest()
    async with socket(token) as ws:
        character = await spin_character(ws)
        started = await start(ws, character["id"])
        await send(ws, {"type": "message", "conversation_id": started["conversation_id"], "content": "Sing to me."})
        frames = await receive_until(ws, "turn.done", "turn.failed")
    accepted, done = frames[0], frames[-1]
    assert done["type"] == "turn.done", frames
    turn_id = accepted["turn_id"]

    def turn_trace(spans: list[ReceivedSpan]) -> tuple[ReceivedSpan, ...] | None:
        submits = [s for s in spans if s.name == "chat.turn submit" and s.attributes.get("orrery.turn_id") == turn_id]
        if not submits:
            return None
        [submit] = submits
        trace = [s for s in spans if s.trace_id == submit.trace_id]
        processes = [s for s in trace if s.name == "chat.turn-requested.v1 process" and s.service == "chat"]
        llm_calls = [s for s in trace if s.kind == ProtoSpan.SPAN_KIND_CLIENT and s.service == "chat"]
        if not processes or not any(s.attributes.get("orrery.llm.task") == "chat" for s in llm_calls):
            return None
        return submit, processes[0], next(s for s in llm_calls if s.attributes["orrery.llm.task"] == "chat")

    submit, process, llm = wait_for_spans(receiver, turn_trace, f"the trace of turn {turn_id}")
    spans = receiver.snapshot()

    assert submit.service == "gateway"
    assert process.kind == ProtoSpan.SPAN_KIND_CONSUMER
    assert process.attributes["messaging.destination.name"] == "chat.turn-requested.v1"
    assert process.attributes["messaging.consumer.group.name"] == "chat.turns"
    assert process.attributes["messaging.message.conversation_id"] == turn_id
    # chat's consumer span hangs off the gateway's publish, itself inside the gateway's submit span.
    chain = ancestors(process, spans)
    assert [(s.service, s.name) for s in chain] == [
        ("gateway", "chat.turn-requested.v1 publish"),
        ("gateway", "chat.turn submit"),
    ]
    assert chain[-1] == submit
    # The LLM call is a client span under chat's consumer span, with the model and usage.
    assert llm.parent_id == process.span_id
    assert llm.name == "chat orrery-chat"
    assert llm.attributes["gen_ai.request.model"] == "orrery-chat"
    assert llm.attributes["gen_ai.provider.name"] == "stub"
    assert llm.attributes["gen_ai.usage.output_tokens"] > 0
    assert llm.attributes["gen_ai.response.time_to_first_chunk"] > 0
    assert all(s.trace_id == submit.trace_id for s in (process, llm))

    # chat announces the turn through its outbox; the relay's publish continues the same trace into dossier.
    def completed(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
        return [
            s
            for s in spans
            if s.trace_id == submit.trace_id and s.name == "chat.turn-completed.v1 process" and s.service == "dossier"
        ]

    [dossier] = wait_for_spans(receiver, completed, "dossier's consumer span of the completed turn")
    assert [(s.service, s.name) for s in ancestors(dossier, receiver.snapshot())][:2] == [
        ("chat", "chat.turn-completed.v1 create"),
        ("chat", "chat.turn-requested.v1 process"),
    ]
    assert {s.service for s in spans} >= {"gateway", "chat"}


async def test_a_sign_in_through_the_gateway_is_one_trace_with_auth(receiver: OtlpReceiver, platform: str) -> None:
    await guest()

    def sign_in(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
        return [s for s in spans if s.service == "auth" and s.name == "auth.user-registered.v1 create"]

    wait_for_spans(receiver, sign_in, "auth's outbox span of the guest")
    chains = [
        [(s.service, s.name) for s in ancestors(span, receiver.snapshot())] for span in sign_in(receiver.snapshot())
    ]
    # FastAPI's server spans, joined across the gateway's forwarding call by the traceparent it adds.
    assert [("auth", "POST /auth/guest"), ("gateway", "POST /api/auth/{rest}")] in chains


async def test_chat_metrics_show_the_time_to_first_token_of_the_turn(stub: StubControl) -> None:
    token = await guest()
    async with socket(token) as ws:
        character = await spin_character(ws)
        started = await start(ws, character["id"])
        await send(ws, {"type": "message", "conversation_id": started["conversation_id"], "content": "Hello?"})
        await receive_until(ws, "turn.done")

    async with httpx.AsyncClient() as http:
        response = await http.get(CHAT_METRICS)
    assert response.status_code == 200
    [ttft] = [f for f in text_string_to_metric_families(response.text) if f.name == "orrery_llm_ttft_seconds"]
    samples = {(s.name, s.labels.get("task"), s.labels.get("le")): s.value for s in ttft.samples}
    assert samples[("orrery_llm_ttft_seconds_count", "chat", None)] >= 1
    assert samples[("orrery_llm_ttft_seconds_bucket", "chat", "+Inf")] >= 1
    assert samples[("orrery_llm_ttft_seconds_sum", "chat", None)] > 0
