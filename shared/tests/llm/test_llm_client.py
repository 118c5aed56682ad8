"""The LLM client against the real stub process, through the real OpenAI SDK over HTTP."""

from __future__ import annotations

from itertools import pairwise
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from orrery_shared.llm import (
    AllRoutesFailedError,
    InMemoryUsageSink,
    LLMClient,
    ProviderProfile,
    StreamInterruptedError,
    StructuredOutputError,
    system,
    user,
)
from orrery_shared.llm.tokens import estimate_tokens
from tests.support.llm_stub import StubControl

CHAT = [system("You are Mira Vale, a curious lighthouse keeper."), user("What do you think of storms?")]


class Persona(BaseModel):
    name: str = Field(min_length=2, max_length=40)
    age: int = Field(ge=18, le=90)
    mood: Literal["calm", "stormy", "bright"]
    traits: list[str] = Field(min_length=2, max_length=4)


def _client(
    llm_stub: StubControl, settings: dict[str, Any] | None = None, sink: InMemoryUsageSink | None = None
) -> LLMClient:
    merged = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, **(settings or {})}
    return LLMClient(llm_stub.settings(**merged), usage_sink=sink or InMemoryUsageSink())


async def test_a_streamed_reply_assembles_exactly_the_scripted_text(llm_stub: StubControl) -> None:
    scripted = "Ahoy! The lamp burns bright tonight, and the gulls are arguing again. ¿Qué tal? 🌊"
    llm_stub.script(content=scripted)
    async with _client(llm_stub) as llm:
        stream = llm.stream_chat(CHAT)
        deltas = [delta async for delta in stream]
    assert "".join(deltas) == scripted
    assert len(deltas) > 5
    assert stream.result.text == scripted
    assert stream.result.finish_reason == "stop"
    usage = stream.usage
    assert (usage.provider, usage.model, usage.outcome) == ("stub", "orrery-stub-1", "ok")
    assert usage.completion_tokens == len(deltas)
    assert usage.prompt_tokens > 10
    assert usage.estimated is False
    assert usage.ttft_s is not None and usage.ttft_s <= usage.latency_s


async def test_an_unscripted_stream_stays_in_character(llm_stub: StubControl) -> None:
    async with _client(llm_stub) as llm:
        result = await llm.stream_chat(CHAT).collect()
    assert result.text.startswith("*Mira Vale ")
    assert "storms" in result.text


async def test_a_429_retries_within_budget_then_falls_back_and_usage_names_who_answered(
    llm_stub: StubControl,
) -> None:
    llm_stub.script(model="primary-model", status=429, retry_after_s=0.05, error_message="slow down", times=10)
    sink = InMemoryUsageSink()
    settings = {
        "providers": {
            "openrouter": ProviderProfile(
                base_url=llm_stub.base_url, api_key="or-key", referer="https://orrery.test", title="Orrery Tests"
            )
        },
        "routes": {"chat": ["openrouter/primary-model", "stub/secondary-model"]},
        "max_attempts": 3,
    }
    async with _client(llm_stub, settings, sink) as llm:
        result = await llm.stream_chat(CHAT).collect()

    primary = llm_stub.chat_requests(model="primary-model")
    secondary = llm_stub.chat_requests(model="secondary-model")
    assert len(primary) == 3 and len(secondary) == 1
    gaps = [b["received_at"] - a["received_at"] for a, b in pairwise(primary)]
    assert all(gap >= 0.05 for gap in gaps), gaps  # Retry-After was honoured
    for request in primary:
        assert request["headers"]["http-referer"] == "https://orrery.test"
        assert request["headers"]["x-title"] == "Orrery Tests"
        assert request["headers"]["authorization"] == "Bearer or-key"
    assert "x-title" not in secondary[0]["headers"]
    assert (result.usage.provider, result.usage.model) == ("stub", "secondary-model")
    assert result.usage.requests == 4
    assert sink.records == [result.usage]


async def test_a_retry_after_longer_than_the_budget_moves_on_at_once(llm_stub: StubControl) -> None:
    llm_stub.script(model="primary-model", status=429, retry_after_s=30, times=5)
    settings = {"routes": {"summary": ["stub/primary-model", "stub/secondary-model"]}, "retry_budget_s": 5}
    async with _client(llm_stub, settings) as llm:
        result = await llm.complete(CHAT, task="summary")
    assert len(llm_stub.chat_requests(model="primary-model")) == 1
    assert result.usage.model == "secondary-model"


async def test_a_rejected_request_is_not_retried_but_falls_back(llm_stub: StubControl) -> None:
    llm_stub.script(model="primary-model", status=400, error_message="context too long", times=5)
    settings = {"routes": {"chat": ["stub/primary-model", "stub/secondary-model"]}}
    async with _client(llm_stub, settings) as llm:
        result = await llm.complete(CHAT)
    assert len(llm_stub.chat_requests(model="primary-model")) == 1
    assert result.usage.model == "secondary-model"


async def test_when_every_route_entry_fails_the_error_carries_the_providers_message(llm_stub: StubControl) -> None:
    llm_stub.script(status=503, error_message="the engine room is flooded", times=20)
    sink = InMemoryUsageSink()
    settings = {"routes": {"chat": ["stub/a", "stub/b"]}, "max_attempts": 2}
    async with _client(llm_stub, settings, sink) as llm:
        with pytest.raises(AllRoutesFailedError) as caught:
            await llm.complete(CHAT)
    error = caught.value
    assert [f.model for f in error.failures] == ["a", "b"]
    assert all(f.status_code == 503 and f.message == "the engine room is flooded" for f in error.failures)
    assert "the engine room is flooded" in str(error)
    assert sink.records[-1].outcome == "failed"
    assert sink.records[-1].requests == 4


async def test_a_disconnect_mid_stream_surfaces_the_partial_text(llm_stub: StubControl) -> None:
    text = "One two three four five six seven eight nine ten."
    llm_stub.script(content=text, disconnect_after_tokens=4)
    sink = InMemoryUsageSink()
    received: list[str] = []
    async with _client(llm_stub, sink=sink) as llm:
        with pytest.raises(StreamInterruptedError) as caught:
            async for delta in llm.stream_chat(CHAT):
                received.append(delta)
    error = caught.value
    assert error.partial_text == "One two three four"
    assert "".join(received) == error.partial_text
    assert (error.provider, error.model) == ("stub", "orrery-stub-1")
    assert error.usage is not None and error.usage.outcome == "interrupted"
    assert error.usage.completion_tokens == 4
    assert sink.records == [error.usage]
    assert len(llm_stub.chat_requests()) == 1  # text had been delivered: no silent retry


async def test_a_disconnect_before_any_text_is_retried(llm_stub: StubControl) -> None:
    llm_stub.script(content="never seen", disconnect_after_tokens=0)
    llm_stub.script(content="second time lucky")
    async with _client(llm_stub) as llm:
        result = await llm.stream_chat(CHAT).collect()
    assert result.text == "second time lucky"
    assert result.usage.requests == 2


async def test_a_slow_first_token_times_out_and_falls_back(llm_stub: StubControl) -> None:
    llm_stub.script(model="slow-model", content="too late", ttft_ms=3000)
    settings = {
        "providers": {"sluggish": ProviderProfile(base_url=llm_stub.base_url, api_key="k", first_token_timeout_s=0.3)},
        "routes": {"chat": ["sluggish/slow-model", "stub/fast-model"]},
        "max_attempts": 1,
    }
    async with _client(llm_stub, settings) as llm:
        result = await llm.stream_chat(CHAT).collect()
    assert result.usage.model == "fast-model"
    assert result.usage.latency_s < 2.5


async def test_a_paced_stream_reports_a_realistic_time_to_first_token(llm_stub: StubControl) -> None:
    async with _client(llm_stub) as llm:
        stream = llm.stream_chat(CHAT, extra_headers={"X-Stub-TTFT-Ms": "150", "X-Stub-Tokens-Per-Second": "200"})
        result = await stream.collect()
    assert result.usage.ttft_s is not None and 0.14 <= result.usage.ttft_s < 1.0
    assert result.usage.latency_s >= result.usage.ttft_s + (result.usage.completion_tokens - 1) / 200 * 0.8


async def test_structured_output_repairs_invalid_json_once_and_validates(llm_stub: StubControl) -> None:
    broken = '{"name": "Mira", "age": 31, "mood": "calm", "traits": ["curious"'
    llm_stub.script(content=broken)
    valid = '{"name": "Mira Vale", "age": 31, "mood": "calm", "traits": ["curious", "stubborn"]}'
    llm_stub.script(content=valid)
    settings: dict[str, Any] = {
        "providers": {"plainjson": ProviderProfile(base_url=llm_stub.base_url, api_key="k")},
        "routes": {"persona": ["plainjson/json-mode-model"]},
    }
    async with _client(llm_stub, settings) as llm:
        result = await llm.complete_structured([user("Invent a lighthouse keeper.")], Persona, task="persona")

    assert result.value == Persona(name="Mira Vale", age=31, mood="calm", traits=["curious", "stubborn"])
    assert result.repaired is True
    first, second = llm_stub.chat_requests()
    assert first["body"]["response_format"] == {"type": "json_object"}
    assert "JSON schema" in first["messages"][0]["content"]
    assert second["messages"][-2] == {"role": "assistant", "content": broken}
    assert "Invalid JSON" in second["messages"][-1]["content"] or "EOF" in second["messages"][-1]["content"]
    assert result.usage.requests == 2
    assert result.usage.completion_tokens > 0


async def test_structured_output_feeds_back_schema_violations(llm_stub: StubControl) -> None:
    llm_stub.script(content='{"name": "M", "age": 7, "mood": "grumpy", "traits": []}')
    llm_stub.script(content='{"name": "Mira", "age": 40, "mood": "bright", "traits": ["kind", "wry"]}')
    settings: dict[str, Any] = {
        "providers": {"plainjson": ProviderProfile(base_url=llm_stub.base_url, api_key="k")},
        "routes": {"extraction": ["plainjson/m"]},
    }
    async with _client(llm_stub, settings) as llm:
        result = await llm.complete_structured([user("Describe her.")], Persona)
    feedback = llm_stub.chat_requests()[1]["messages"][-1]["content"]
    for field in ("name", "age", "mood", "traits"):
        assert f"- {field}:" in feedback
    assert result.value.age == 40


async def test_structured_output_uses_json_schema_where_supported(llm_stub: StubControl) -> None:
    async with _client(llm_stub) as llm:
        result = await llm.complete_structured([user("Invent a lighthouse keeper.")], Persona, task="persona")
    assert result.repaired is False
    assert isinstance(result.value, Persona)
    request = llm_stub.chat_requests()[0]
    assert request["body"]["response_format"]["type"] == "json_schema"
    assert request["body"]["response_format"]["json_schema"]["strict"] is True


async def test_structured_output_that_stays_invalid_raises_with_the_raw_reply(llm_stub: StubControl) -> None:
    llm_stub.script(content="not json at all", times=2)
    async with _client(llm_stub) as llm:
        with pytest.raises(StructuredOutputError) as caught:
            await llm.complete_structured([user("Describe her.")], Persona)
    assert caught.value.raw_text == "not json at all"
    assert len(llm_stub.chat_requests()) == 2


async def test_a_summary_completion_returns_text_and_usage(llm_stub: StubControl) -> None:
    summary = "They met at the lighthouse and talked about storms."
    llm_stub.script(content=summary)
    async with _client(llm_stub) as llm:
        result = await llm.complete([user("Summarise the conversation.")], task="summary", max_tokens=200)
    assert result.text == summary
    assert result.usage.task == "summary"
    assert result.usage.completion_tokens == estimate_tokens(summary)
    assert result.usage.estimated is False
    assert llm_stub.chat_requests()[0]["body"]["max_tokens"] == 200


async def test_closing_a_stream_early_records_it_as_cancelled(llm_stub: StubControl) -> None:
    sink = InMemoryUsageSink()
    async with _client(llm_stub, sink=sink) as llm:
        stream = llm.stream_chat(CHAT)
        async for _ in stream:
            break
        await stream.aclose()
    assert sink.records[-1].outcome == "cancelled"
    with pytest.raises(RuntimeError):
        _ = stream.result


async def test_streamed_replies_one_after_another_reuse_one_connection(llm_stub: StubControl) -> None:
    llm_stub.script(content="Short and sweet.")
    async with _client(llm_stub) as llm:
        for _ in range(5):
            assert await llm.stream_chat(CHAT).collect()
    # Each body was read to its end, so its connection went back to the pool instead of being closed: the stub
    # saw every request come from the same client port.
    clients = {request["client"] for request in llm_stub.chat_requests()}
    assert len(clients) == 1, clients


@pytest.mark.parametrize("read_timeout_s", [5.0, 0.3], ids=["deadline-within-a-read", "deadline-after-many-reads"])
async def test_a_stream_that_outlasts_its_total_timeout_is_cut_at_the_deadline(
    llm_stub: StubControl, read_timeout_s: float
) -> None:
    llm_stub.script(content=" ".join(f"w{i}" for i in range(200)), tokens_per_second=10)
    profile = ProviderProfile(base_url=llm_stub.base_url, total_timeout_s=1.0, first_token_timeout_s=read_timeout_s)
    async with _client(llm_stub, {"providers": {"stub": profile}}) as llm:
        received = []
        with pytest.raises(StreamInterruptedError, match="total timeout") as interrupted:
            async for delta in llm.stream_chat(CHAT):
                received.append(delta)
    assert 5 <= len(received) <= 12  # about a second's worth at 10 tokens/s
    assert interrupted.value.partial_text == "".join(received)
    usage = interrupted.value.usage
    assert usage is not None and usage.outcome == "interrupted"
    assert 0.9 <= usage.latency_s < 1.3


async def test_the_providers_routes_name_can_be_connected_before_the_first_request(llm_stub: StubControl) -> None:
    settings = {
        "providers": {"other": ProviderProfile(base_url=llm_stub.base_url, api_key="k")},
        "routes": {"chat": ["stub/a", "other/b"], "summary": ["stub/c"]},
    }
    async with _client(llm_stub, settings) as llm:
        assert llm._openai == {}  # nothing is connected until asked
        llm.open_routed_providers()
        opened = dict(llm._openai)
        assert set(opened) == {"stub", "other"}
        llm.open_routed_providers()  # idempotent: the same clients
        assert llm._openai == opened
        assert (await llm.stream_chat(CHAT).collect()).text
