"""The stub process over HTTP, through the OpenAI SDK and raw requests."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from orrery_shared.llm.tokens import estimate_tokens
from tests.support.llm_stub import StubControl

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are Captain Oduya, a grumpy but loyal ship's captain."},
    {"role": "user", "content": "Will the ship survive the storm?"},
]


@pytest.fixture
async def sdk(llm_stub: StubControl) -> AsyncIterator[AsyncOpenAI]:
    client = AsyncOpenAI(base_url=llm_stub.base_url, api_key="test-key", max_retries=0)
    try:
        yield client
    finally:
        await client.close()


async def test_models_are_listed(sdk: AsyncOpenAI) -> None:
    models = await sdk.models.list()
    assert [m.id for m in models.data] == ["orrery-stub-1"]


async def test_a_streamed_reply_is_in_character_with_usage_at_the_end(sdk: AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="any-model",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage, chunks = "", None, None, 0
    async for chunk in stream:
        chunks += 1
        if chunk.usage:
            usage = chunk.usage
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    assert text.startswith("*Captain Oduya ")
    assert "storm" in text
    assert finish == "stop"
    assert usage is not None
    assert usage.completion_tokens == estimate_tokens(text)
    assert usage.prompt_tokens > 15
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert chunks == usage.completion_tokens + 3  # role chunk, tokens, finish chunk, usage chunk


async def test_the_same_conversation_gets_the_same_reply(sdk: AsyncOpenAI) -> None:
    first = await sdk.chat.completions.create(model="m", messages=MESSAGES)
    second = await sdk.chat.completions.create(model="m", messages=MESSAGES)
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.id != second.id


async def test_max_tokens_cuts_the_reply_with_finish_reason_length(sdk: AsyncOpenAI) -> None:
    reply = await sdk.chat.completions.create(model="m", messages=MESSAGES, max_tokens=5)
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 5


async def test_json_schema_requests_get_a_conforming_object(sdk: AsyncOpenAI) -> None:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "mood", "crew"],
        "properties": {
            "name": {"type": "string", "minLength": 2},
            "mood": {"enum": ["fair", "foul"]},
            "crew": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "integer", "minimum": 1}},
        },
    }
    reply = await sdk.chat.completions.create(
        model="m",
        messages=MESSAGES,
        response_format={"type": "json_schema", "json_schema": {"name": "ship", "schema": schema, "strict": True}},
    )
    value = json.loads(reply.choices[0].message.content or "")
    assert set(value) == {"name", "mood", "crew"}
    assert value["mood"] in ("fair", "foul") and len(value["crew"]) == 2


async def test_json_mode_gets_a_json_object(sdk: AsyncOpenAI) -> None:
    reply = await sdk.chat.completions.create(
        model="m",
        messages=MESSAGES,
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(reply.choices[0].message.content or ""), dict)


async def test_scripts_target_a_model_and_are_consumed_in_order(llm_stub: StubControl, sdk: AsyncOpenAI) -> None:
    llm_stub.script(model="b", content="for b")
    llm_stub.script(content="first for anyone")
    llm_stub.script(content="second for anyone")
    replies = []
    for model in ("a", "a", "b", "a"):
        reply = await sdk.chat.completions.create(model=model, messages=MESSAGES)
        replies.append(reply.choices[0].message.content)
    assert replies[:3] == ["first for anyone", "second for anyone", "for b"]
    assert replies[3] is not None and replies[3].startswith("*Captain Oduya")
    assert llm_stub.pending() == []


async def test_a_scripted_429_carries_retry_after(llm_stub: StubControl, sdk: AsyncOpenAI) -> None:
    llm_stub.script(status=429, retry_after_s=1.5, error_message="rate limited, easy there")
    with pytest.raises(openai.RateLimitError) as caught:
        await sdk.chat.completions.create(model="m", messages=MESSAGES)
    headers = caught.value.response.headers
    assert headers["retry-after"] == "2" and headers["retry-after-ms"] == "1500"
    assert caught.value.body == {
        "message": "rate limited, easy there",
        "type": "rate_limit_exceeded",
        "param": None,
        "code": "rate_limit_exceeded",
    }


async def test_a_scripted_500_is_a_server_error(llm_stub: StubControl, sdk: AsyncOpenAI) -> None:
    llm_stub.script(status=500, times=2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await sdk.chat.completions.create(model="m", messages=MESSAGES)
    await sdk.chat.completions.create(model="m", messages=MESSAGES)


async def test_a_scripted_disconnect_drops_the_stream_after_n_tokens(llm_stub: StubControl, sdk: AsyncOpenAI) -> None:
    llm_stub.script(content="one two three four five", disconnect_after_tokens=2)
    stream = await sdk.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    text = ""
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            text += chunk.choices[0].delta.content or ""
    assert text == "one two"


async def test_malformed_json_is_json_cut_in_half(llm_stub: StubControl, sdk: AsyncOpenAI) -> None:
    llm_stub.script(malformed_json=True)
    reply = await sdk.chat.completions.create(
        model="m",
        messages=MESSAGES,
        response_format={"type": "json_object"},
    )
    content = reply.choices[0].message.content or ""
    assert content.startswith("{")
    with pytest.raises(json.JSONDecodeError):
        json.loads(content)


async def test_pacing_follows_the_settings_the_headers_and_the_script(llm_stub: StubControl, sdk: AsyncOpenAI) -> None:
    llm_stub.script(ttft_ms=300, content="slow start")
    started = time.monotonic()
    await sdk.chat.completions.create(model="m", messages=MESSAGES)
    assert time.monotonic() - started >= 0.3

    started = time.monotonic()
    stream = await sdk.chat.completions.create(
        model="m",
        messages=MESSAGES,
        stream=True,
        extra_headers={"X-Stub-Tokens-Per-Second": "100", "X-Stub-Reply-Tokens": "30"},
    )
    arrivals = [time.monotonic() async for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
    assert len(arrivals) == 30
    assert 0.25 <= arrivals[-1] - arrivals[0] <= 0.6  # 29 gaps at 10 ms
    assert arrivals[-1] - started < 1.0

    reply = await sdk.chat.completions.create(
        model="m",
        messages=MESSAGES,
        metadata={"stub_reply_tokens": "12"},
    )
    assert reply.usage is not None and reply.usage.completion_tokens == 12


async def test_requests_are_recorded_with_headers_and_messages(llm_stub: StubControl, sdk: AsyncOpenAI) -> None:
    await sdk.chat.completions.create(
        model="m",
        messages=MESSAGES,
        extra_headers={"X-Title": "Orrery"},
    )
    (request,) = llm_stub.chat_requests()
    assert request["messages"] == MESSAGES
    assert request["model"] == "m" and request["stream"] is False
    assert request["headers"]["x-title"] == "Orrery"
    assert request["headers"]["authorization"] == "Bearer test-key"
    llm_stub.reset()
    assert llm_stub.requests() == []


async def test_images_are_small_valid_pngs(sdk: AsyncOpenAI) -> None:
    result = await sdk.images.generate(model="gpt-image-1", prompt="a storm at sea", size="1024x1024")
    assert result.data is not None
    png = base64.b64decode(result.data[0].b64_json or "")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    again = await sdk.images.generate(model="gpt-image-1", prompt="a storm at sea", size="1024x1024")
    assert again.data is not None and again.data[0].b64_json == result.data[0].b64_json


def test_bad_scripts_are_rejected(llm_stub: StubControl) -> None:
    response = httpx.post(f"{llm_stub.root_url}/_stub/script", json={"steps": [{"status": 200}]})
    assert response.status_code == 422
