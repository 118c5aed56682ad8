"""The LLM client: chat, streamed chat and structured output, routed per task with retries and fallbacks."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, cast

import httpx2
import openai
from openai import AsyncOpenAI, DefaultAioHttpClient, Timeout
from openai.types.chat.completion_create_params import ResponseFormat
from pydantic import BaseModel, ValidationError

from orrery_shared.llm.errors import (
    AllRoutesFailedError,
    ProviderError,
    ProviderRejectedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
    StreamInterruptedError,
    StructuredOutputError,
)
from orrery_shared.llm.messages import ChatMessage
from orrery_shared.llm.retry import BackoffPolicy, RetryBudget, parse_retry_after, retry_delay
from orrery_shared.llm.settings import LLMSettings, ProviderProfile, RouteEntry, load_llm_settings
from orrery_shared.llm.sse import STREAMED_BODY_HEADERS, ChunkStream, chunk_text, chunk_usage
from orrery_shared.llm.structured import (
    describe_errors,
    parse_reply,
    repair_messages,
    response_format,
    with_schema_instruction,
)
from orrery_shared.llm.tokens import estimate_message_tokens, estimate_tokens
from orrery_shared.llm.usage import MetricsUsageSink, Outcome, Usage, UsageSink, record_attempt_failure
from orrery_shared.telemetry import record_llm_call

log = logging.getLogger("orrery.llm")

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")


@dataclass(frozen=True)
class ChatResult:
    """A finished chat completion."""

    text: str
    finish_reason: str | None
    usage: Usage


@dataclass(frozen=True)
class StructuredResult(Generic[T]):
    """A reply validated into `value`; `repaired` says whether the repair retry was needed."""

    value: T
    raw_text: str
    repaired: bool
    usage: Usage


@dataclass(frozen=True)
class _Options:
    """Per-call request parameters."""

    max_tokens: int | None = None
    temperature: float | None = None
    stop: list[str] | None = None
    seed: int | None = None
    extra_body: Mapping[str, object] | None = None
    extra_headers: Mapping[str, str] | None = None

    def request_kwargs(self, profile: ProviderProfile) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.max_tokens is not None:
            kwargs[profile.max_tokens_field] = self.max_tokens
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.stop:
            kwargs["stop"] = self.stop
        if self.seed is not None:
            kwargs["seed"] = self.seed
        if self.extra_body:
            kwargs["extra_body"] = dict(self.extra_body)
        if self.extra_headers:
            kwargs["extra_headers"] = dict(self.extra_headers)
        return kwargs


@dataclass
class _Exchange:
    """What one successful request returned."""

    text: str
    finish_reason: str | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class _ChunkState:
    """Accumulates what a stream's chunks say besides text."""

    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def absorb(self, chunk: dict[str, Any]) -> str:
        """Take one chunk; return its text (possibly empty)."""
        usage = chunk_usage(chunk)
        if usage is not None:
            self.prompt_tokens, self.completion_tokens = usage
        text, finish_reason = chunk_text(chunk)
        if finish_reason is not None:
            self.finish_reason = finish_reason
        return text


@dataclass
class _OpenStream:
    """A stream that has produced its first text (or finished without any)."""

    entry: RouteEntry
    stream: ChunkStream
    chunks: AsyncIterator[dict[str, Any]]
    first_text: str
    state: _ChunkState
    total_deadline: float
    read_timeout: float  # the longest a read of the body may stall before it fails
    ended: bool = False


def provider_message(error: openai.APIError) -> str:
    """The provider's own error message, without the SDK's decoration."""
    body = error.body
    if isinstance(body, Mapping):
        message = body.get("message")
        if isinstance(message, str) and message:
            return message
    if isinstance(body, str) and body:
        return body
    cause = error.__cause__
    if isinstance(error, openai.APIConnectionError) and cause is not None and str(cause):
        return f"{error.message} ({cause})"
    return error.message


def translate_error(error: openai.APIError, entry: RouteEntry) -> ProviderError:
    """Map an SDK error to our typed errors, keeping the provider's message and Retry-After."""
    message = provider_message(error)
    provider, model = entry.provider, entry.model
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        retry_after = parse_retry_after(error.response.headers)
        if status == 429:
            return RateLimitedError(
                message, provider=provider, model=model, status_code=status, retry_after_s=retry_after
            )
        if status >= 500 or status in (408, 409):
            return ProviderUnavailableError(
                message, provider=provider, model=model, status_code=status, retry_after_s=retry_after
            )
        return ProviderRejectedError(message, provider=provider, model=model, status_code=status)
    if isinstance(error, openai.APITimeoutError):
        return ProviderTimeoutError(message, provider=provider, model=model)
    # Connection failures and errors reported inside a stream are both transient from our side.
    return ProviderUnavailableError(message, provider=provider, model=model)


class LLMClient:
    """One client for every task; safe to share across concurrent calls. Close with `aclose()`."""

    def __init__(
        self,
        settings: LLMSettings | None = None,
        *,
        usage_sink: UsageSink | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings if settings is not None else load_llm_settings()
        self.usage_sink: UsageSink = usage_sink if usage_sink is not None else MetricsUsageSink()
        self._rand = rand
        self._policy = BackoffPolicy(base_s=self.settings.backoff_base_s, max_s=self.settings.backoff_max_s)
        self._openai: dict[str, AsyncOpenAI] = {}

    @classmethod
    def from_env(cls, *, usage_sink: UsageSink | None = None) -> LLMClient:
        """A client configured from ORRERY_LLM_* (raises LLMConfigError if they are unusable)."""
        return cls(load_llm_settings(), usage_sink=usage_sink)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every provider connection pool."""
        clients, self._openai = self._openai, {}
        for client in clients.values():
            await client.close()

    def open_routed_providers(self) -> None:
        """Create the SDK client of every provider a route names now, at startup: building one (its TLS
        context above all) takes ~0.1 s, which the first request after a start would otherwise wait out."""
        for entries in self.settings.routes.values():
            for entry in entries:
                self.openai_client(entry.provider)

    def openai_client(self, provider: str) -> AsyncOpenAI:
        """The SDK client of `provider`, created on first use."""
        client = self._openai.get(provider)
        if client is None:
            profile = self.settings.profile(provider)
            timeout = Timeout(profile.total_timeout_s, connect=profile.connect_timeout_s)
            client = AsyncOpenAI(
                api_key=profile.api_key.get_secret_value() if profile.api_key else "unused",
                base_url=profile.base_url,
                # Retries are ours: backoff with jitter, Retry-After, a per-call budget, then fallback.
                max_retries=0,
                timeout=timeout,
                default_headers=profile.request_headers(),
                # The SDK's aiohttp transport: its C parser and connection pool cost about half the CPU of the
                # default pure-Python stack per streamed request (the largest share of a chat turn's work).
                http_client=DefaultAioHttpClient(
                    timeout=timeout,
                    # Each open stream holds a connection; the pool must be as large as the
                    # concurrency wanted, while idle keep-alive stays bounded.
                    limits=httpx2.Limits(
                        max_connections=profile.max_connections,
                        max_keepalive_connections=min(profile.max_connections, 200),
                    ),
                ),
            )
            self._openai[provider] = client
        return client

    # -- public calls -------------------------------------------------------------------------------

    async def complete(
        self,
        messages: Iterable[ChatMessage],
        *,
        task: str = "chat",
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: list[str] | None = None,
        seed: int | None = None,
        extra_body: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> ChatResult:
        """A whole (non-streamed) completion for `task`."""
        msgs = list(messages)
        opts = _Options(max_tokens, temperature, stop, seed, extra_body, extra_headers)
        started = time.monotonic()

        async def attempt(entry: RouteEntry, profile: ProviderProfile) -> _Exchange:
            return await self._complete_once(entry, profile, msgs, None, opts)

        exchange, entry, requests = await self._with_fallbacks(task, attempt, msgs, started)
        usage = self._usage(task, entry, msgs, [exchange], started, None, requests, "ok")
        return ChatResult(exchange.text, exchange.finish_reason, usage)

    def stream_chat(
        self,
        messages: Iterable[ChatMessage],
        *,
        task: str = "chat",
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: list[str] | None = None,
        seed: int | None = None,
        extra_body: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> ChatStream:
        """A streamed completion for `task`: iterate it for text deltas, then read `.result`."""
        opts = _Options(max_tokens, temperature, stop, seed, extra_body, extra_headers)
        return ChatStream(self, task, list(messages), opts)

    async def complete_structured(
        self,
        messages: Iterable[ChatMessage],
        output: type[T],
        *,
        task: str = "extraction",
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        extra_body: Mapping[str, object] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> StructuredResult[T]:
        """A reply validated into `output` (json_schema where supported, else JSON mode + one repair)."""
        base = list(messages)
        opts = _Options(max_tokens, temperature, None, seed, extra_body, extra_headers)
        started = time.monotonic()
        used: list[_Exchange] = []
        repairs = 0

        async def attempt(entry: RouteEntry, profile: ProviderProfile) -> tuple[T, str, bool]:
            fmt = response_format(output, json_schema=profile.supports_json_schema)
            convo = base if profile.supports_json_schema else with_schema_instruction(base, output)
            first = await self._complete_once(entry, profile, convo, fmt, opts)
            used[:] = [first]
            try:
                return parse_reply(output, first.text), first.text, False
            except ValidationError as error:
                log.info(
                    "structured reply invalid, repairing",
                    extra={"provider": entry.provider, "model": entry.model, "errors": error.error_count()},
                )
                repair = repair_messages(convo, first.text, error)
            nonlocal repairs
            repairs += 1
            second = await self._complete_once(entry, profile, repair, fmt, opts)
            used.append(second)
            try:
                return parse_reply(output, second.text), second.text, True
            except ValidationError as error:
                raise StructuredOutputError(
                    f"reply does not match {output.__name__} after one repair:\n{describe_errors(error)}",
                    raw_text=second.text,
                    provider=entry.provider,
                    model=entry.model,
                ) from None

        try:
            (value, raw, repaired), entry, requests = await self._with_fallbacks(task, attempt, base, started)
        except AllRoutesFailedError as error:
            invalid = [f for f in error.failures if isinstance(f, StructuredOutputError)]
            if invalid:
                raise invalid[-1] from error
            raise
        usage = self._usage(task, entry, base, used, started, None, requests + repairs, "ok")
        return StructuredResult(value=value, raw_text=raw, repaired=repaired, usage=usage)

    # -- internals ----------------------------------------------------------------------------------

    async def _with_fallbacks(
        self,
        task: str,
        attempt: Callable[[RouteEntry, ProviderProfile], Awaitable[R]],
        messages: list[ChatMessage],
        started: float,
    ) -> tuple[R, RouteEntry, int]:
        """Run `attempt` along the task's route: retry transient failures within budget, then fall back."""
        route = self.settings.route(task)
        budget = RetryBudget(self.settings.retry_budget_s)
        failures: list[ProviderError] = []
        requests = 0
        for entry in route:
            profile = self.settings.profile(entry.provider)
            for try_number in range(1, self.settings.max_attempts + 1):
                requests += 1
                try:
                    return await attempt(entry, profile), entry, requests
                except ProviderError as error:
                    record_attempt_failure(entry.provider, entry.model, type(error).__name__)
                    last = error
                if not last.retryable or try_number == self.settings.max_attempts:
                    break
                delay = retry_delay(try_number, self._policy, last.retry_after_s, self._rand)
                if not budget.allows(delay):
                    break
                log.info(
                    "llm request failed, retrying",
                    extra={
                        "task": task,
                        "provider": entry.provider,
                        "model": entry.model,
                        "error": str(last),
                        "retry_in_s": round(delay, 3),
                    },
                )
                await asyncio.sleep(delay)
            failures.append(last)
            log.warning(
                "llm route entry failed",
                extra={"task": task, "provider": entry.provider, "model": entry.model, "error": str(last)},
            )
        last_entry = route[-1]
        self._record(
            Usage(
                task,
                last_entry.provider,
                last_entry.model,
                estimate_message_tokens(messages),
                0,
                time.monotonic() - started,
                None,
                True,
                requests,
                "failed",
            )
        )
        raise AllRoutesFailedError(task, failures)

    async def _complete_once(
        self,
        entry: RouteEntry,
        profile: ProviderProfile,
        messages: list[ChatMessage],
        fmt: ResponseFormat | None,
        opts: _Options,
    ) -> _Exchange:
        """One non-streamed request."""
        client = self.openai_client(entry.provider)
        kwargs = opts.request_kwargs(profile)
        if fmt is not None:
            kwargs["response_format"] = fmt
        try:
            async with asyncio.timeout(profile.total_timeout_s):
                completion = await client.chat.completions.create(
                    model=entry.model, messages=cast(Any, messages), stream=False, **kwargs
                )
        except TimeoutError:
            raise ProviderTimeoutError(
                f"no reply within {profile.total_timeout_s}s", provider=entry.provider, model=entry.model
            ) from None
        except openai.APIError as error:
            raise translate_error(error, entry) from error
        if not completion.choices:
            raise ProviderUnavailableError("reply had no choices", provider=entry.provider, model=entry.model)
        choice = completion.choices[0]
        usage = completion.usage
        return _Exchange(
            text=choice.message.content or "",
            finish_reason=choice.finish_reason,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
        )

    async def _open_stream(
        self, entry: RouteEntry, profile: ProviderProfile, messages: list[ChatMessage], opts: _Options
    ) -> _OpenStream:
        """Start a streamed request and read up to its first text, so failures so far can be retried."""
        client = self.openai_client(entry.provider)
        body: dict[str, Any] = {"model": entry.model, "messages": messages, "stream": True}
        headers = dict(STREAMED_BODY_HEADERS)
        for key, value in opts.request_kwargs(profile).items():
            if key == "extra_body":
                body.update(value)
            elif key == "extra_headers":
                headers.update(value)
            else:
                body[key] = value
        if profile.supports_stream_usage:
            body["stream_options"] = {"include_usage": True}
        loop = asyncio.get_running_loop()
        started = loop.time()
        stream: ChunkStream | None = None
        state = _ChunkState()
        try:
            async with asyncio.timeout_at(started + profile.first_token_timeout_s):
                # The SDK sends the request (auth, headers, error statuses as its exceptions); the body is
                # read as plain chunks (orrery_shared.llm.sse says why).
                response = await client.post(
                    "/chat/completions",
                    cast_to=httpx2.Response,
                    body=body,
                    options={
                        "headers": headers,
                        # An idle gap as long as the first-token allowance means the stream has stalled.
                        "timeout": Timeout(
                            profile.total_timeout_s,
                            connect=profile.connect_timeout_s,
                            read=profile.first_token_timeout_s,
                        ),
                    },
                )
                stream = ChunkStream(response)
                chunks = stream.__aiter__()
                async for chunk in chunks:
                    text = state.absorb(chunk)
                    if text:
                        return _OpenStream(
                            entry,
                            stream,
                            chunks,
                            text,
                            state,
                            started + profile.total_timeout_s,
                            profile.first_token_timeout_s,
                        )
        except TimeoutError:
            await _close(stream)
            raise ProviderTimeoutError(
                f"no first token within {profile.first_token_timeout_s}s",
                provider=entry.provider,
                model=entry.model,
            ) from None
        except openai.APIError as error:
            await _close(stream)
            raise translate_error(error, entry) from error
        except BaseException:
            await _close(stream)
            raise
        if state.finish_reason is None:
            await _close(stream)
            raise ProviderUnavailableError(
                "stream ended before any content", provider=entry.provider, model=entry.model
            )
        assert stream is not None
        deadline = started + profile.total_timeout_s
        return _OpenStream(entry, stream, chunks, "", state, deadline, profile.first_token_timeout_s, ended=True)

    def _usage(
        self,
        task: str,
        entry: RouteEntry,
        messages: list[ChatMessage],
        exchanges: list[_Exchange],
        started: float,
        ttft_s: float | None,
        requests: int,
        outcome: Outcome,
    ) -> Usage:
        """Build and record the usage of a call from the exchanges of the entry that answered."""
        estimated = any(x.prompt_tokens is None or x.completion_tokens is None for x in exchanges)
        prompt = sum(
            x.prompt_tokens if x.prompt_tokens is not None else estimate_message_tokens(messages) for x in exchanges
        )
        completion = sum(
            x.completion_tokens if x.completion_tokens is not None else estimate_tokens(x.text) for x in exchanges
        )
        usage = Usage(
            task=task,
            provider=entry.provider,
            model=entry.model,
            prompt_tokens=prompt,
            completion_tokens=completion,
            latency_s=time.monotonic() - started,
            ttft_s=ttft_s,
            estimated=estimated,
            requests=requests,
            outcome=outcome,
        )
        self._record(usage)
        return usage

    def _record(self, usage: Usage) -> None:
        record_llm_call(usage)  # the call's CLIENT span, written from its usage: nothing per streamed delta
        try:
            self.usage_sink.record(usage)
        except Exception:
            log.exception("usage sink failed")


async def _close(stream: ChunkStream | None) -> None:
    if stream is not None:
        try:
            await stream.close()
        except Exception:
            log.debug("closing a failed stream raised", exc_info=True)


class ChatStream:
    """Text deltas of a streamed completion; `.result` (text, finish reason, usage) once it has ended.

    Retries and fallbacks happen only before the first delta; after that a provider failure raises
    StreamInterruptedError carrying the text delivered so far.
    """

    def __init__(self, client: LLMClient, task: str, messages: list[ChatMessage], opts: _Options) -> None:
        self._client = client
        self._task = task
        self._messages = messages
        self._opts = opts
        self._parts: list[str] = []
        self._result: ChatResult | None = None
        self._gen = self._run()

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._parts)

    @property
    def result(self) -> ChatResult:
        """The finished completion; raises RuntimeError while the stream has not ended."""
        if self._result is None:
            raise RuntimeError("the stream has not ended")
        return self._result

    @property
    def usage(self) -> Usage:
        """Usage of the finished stream."""
        return self.result.usage

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        """Stop early and release the connection (usage is recorded as cancelled)."""
        await self._gen.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def collect(self) -> ChatResult:
        """Consume the whole stream and return its result."""
        async for _ in self:
            pass
        return self.result

    async def _run(self) -> AsyncGenerator[str, None]:
        client, task, messages = self._client, self._task, self._messages
        started = time.monotonic()

        async def attempt(entry: RouteEntry, profile: ProviderProfile) -> _OpenStream:
            return await client._open_stream(entry, profile, messages, self._opts)

        opened, entry, requests = await client._with_fallbacks(task, attempt, messages, started)
        state = opened.state
        ttft = time.monotonic() - started if opened.first_text else None
        outcome: Outcome = "cancelled"
        failure: ProviderError | None = None
        try:
            if opened.first_text:
                self._parts.append(opened.first_text)
                yield opened.first_text
            loop = asyncio.get_running_loop()
            while not opened.ended:
                try:
                    if opened.total_deadline - loop.time() > opened.read_timeout:
                        # A read that stalls fails on its own read timeout before the deadline: no timer per
                        # chunk (arming one costs more than reading a small chunk).
                        chunk = await opened.chunks.__anext__()
                    else:
                        async with asyncio.timeout_at(opened.total_deadline):
                            chunk = await opened.chunks.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    profile = client.settings.profile(entry.provider)
                    failure = ProviderTimeoutError(
                        f"stream exceeded its total timeout of {profile.total_timeout_s}s",
                        provider=entry.provider,
                        model=entry.model,
                    )
                    break
                except openai.APIError as error:
                    failure = translate_error(error, entry)
                    break
                text = state.absorb(chunk)
                if text:
                    if ttft is None:
                        ttft = time.monotonic() - started
                    self._parts.append(text)
                    yield text
            if failure is None and state.finish_reason is None:
                failure = ProviderUnavailableError(
                    "stream ended before the provider signalled completion",
                    provider=entry.provider,
                    model=entry.model,
                )
            outcome = "ok" if failure is None else "interrupted"
        finally:
            await _close(opened.stream)
            exchange = _Exchange(self.text, state.finish_reason, state.prompt_tokens, state.completion_tokens)
            if outcome != "ok":
                # A cut-short stream has no trustworthy provider counts for the text that did arrive.
                exchange.completion_tokens = None
            usage = client._usage(task, entry, messages, [exchange], started, ttft, requests, outcome)
        if failure is not None:
            record_attempt_failure(entry.provider, entry.model, type(failure).__name__)
            raise StreamInterruptedError(
                failure.message,
                partial_text=self.text,
                usage=usage,
                provider=entry.provider,
                model=entry.model,
                status_code=failure.status_code,
            ) from failure
        self._result = ChatResult(self.text, state.finish_reason, usage)
