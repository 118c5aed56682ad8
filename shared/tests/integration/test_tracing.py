"""A trace survives the transactional outbox: written in one span, relayed later, consumed under the same trace."""

from __future__ import annotations

import asyncio
import time
from uuid import uuid4

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from orrery_shared import telemetry
from orrery_shared.db import Database, OutboxRelay
from orrery_shared.db.tables import outbox
from orrery_shared.events import UserRegistered
from orrery_shared.kafka import flush_offsets, make_broker, subscribe
from orrery_shared.llm import LLMClient
from orrery_shared.settings import KafkaSettings
from tests.support.infra import Infra
from tests.support.llm_stub import StubControl

pytestmark = pytest.mark.integration

TOPIC = UserRegistered.TOPIC


def named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.name == name]


def parent_of(span: ReadableSpan, spans: InMemorySpanExporter) -> ReadableSpan:
    assert span.parent is not None, f"{span.name} has no parent"
    [parent] = [s for s in spans.get_finished_spans() if s.context.span_id == span.parent.span_id]
    return parent


async def test_an_event_relayed_from_the_outbox_is_handled_in_the_trace_that_wrote_it(
    infra: Infra, scratch_db: Database, llm_stub: StubControl, spans: InMemorySpanExporter
) -> None:
    broker = make_broker(KafkaSettings(bootstrap_servers=infra.kafka_bootstrap), "test")
    relay = OutboxRelay(scratch_db, broker, poll_interval=0.2, publish_timeout=5, max_backoff=1)
    llm = LLMClient(llm_stub.settings())
    handled: list[UserRegistered] = []
    mine = uuid4()

    async def greet(event: UserRegistered) -> None:
        if event.user_id != mine:
            return  # someone else's event on the shared test broker
        await llm.complete([{"role": "user", "content": f"Greet {event.username}."}], task="chat")
        handled.append(event)

    subscribe(broker, UserRegistered, "trace-" + uuid4().hex[:10], greet)
    await broker.start()
    try:
        with telemetry.span("sign-up") as root:
            async with scratch_db.transaction() as tx:
                await tx.publish(UserRegistered(user_id=mine, username="ada", is_guest=True, correlation_id="c-1"))
        # The row waits in the outbox with the writer's context; the relay publishes it from its own loop.
        async with scratch_db.engine.connect() as conn:
            [stored] = (await conn.execute(sa.select(outbox.c.headers))).scalars().all()
        assert stored[telemetry.TRACEPARENT].split("-")[1] == format(root.get_span_context().trace_id, "032x")
        relay.start()
        deadline = time.monotonic() + 60
        while not handled:
            assert time.monotonic() < deadline, "the event was not handled"
            await asyncio.sleep(0.05)
    finally:
        await relay.stop()
        await flush_offsets(broker)
        await broker.stop()
        await llm.aclose()

    trace_id = root.get_span_context().trace_id
    [process] = [
        s
        for s in named(spans, f"{TOPIC} process")
        if s.attributes and s.attributes.get("messaging.message.id") == str(handled[0].event_id)
    ]
    [llm_span] = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert process.kind is SpanKind.CONSUMER
    assert process.context.trace_id == trace_id and llm_span.context.trace_id == trace_id
    create = parent_of(process, spans)
    assert create.name == f"{TOPIC} create" and create.kind is SpanKind.PRODUCER
    assert parent_of(create, spans).name == "sign-up"
    assert parent_of(llm_span, spans).context.span_id == process.context.span_id
    assert llm_span.attributes is not None and llm_span.attributes["gen_ai.provider.name"] == "stub"
