"""Image generation: one protocol, interchangeable providers, chosen by ORRERY_LLM_IMAGE_PROVIDER.

Built in: "openai" (OpenAI's Images API, or anything speaking it, like the stub) and "leonardo"
(Leonardo.Ai's REST API). Other providers plug in with `register_image_provider`, e.g. a procedural
generator that needs no network at all.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import httpx
import openai
from openai import AsyncOpenAI, Timeout

from orrery_shared.llm.errors import ImageGenerationError, ImageTimeoutError, LLMConfigError
from orrery_shared.llm.retry import BackoffPolicy, parse_retry_after, retry_delay
from orrery_shared.llm.settings import LLMSettings, ProviderProfile, load_llm_settings


@dataclass(frozen=True)
class ImageRequest:
    """What to draw. Providers round the size to what they support."""

    prompt: str
    negative_prompt: str | None = None
    width: int = 1024
    height: int = 1024
    seed: int | None = None


@dataclass(frozen=True)
class GeneratedImage:
    """An image's bytes and where they came from."""

    data: bytes
    mime_type: str
    provider: str
    model: str
    latency_s: float
    revised_prompt: str | None = None
    source_url: str | None = None


@runtime_checkable
class ImageGenerator(Protocol):
    """Anything that turns an ImageRequest into an image."""

    name: str

    async def generate(self, request: ImageRequest) -> GeneratedImage:
        """Draw one image."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def sniff_mime(data: bytes) -> str | None:
    """The MIME type of PNG, JPEG, WebP or GIF bytes, or None if they are none of these."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


class OpenAIImageGenerator:
    """OpenAI's Images API (b64 PNG), through a provider profile."""

    name = "openai"

    def __init__(
        self,
        profile: ProviderProfile,
        model: str,
        *,
        provider_name: str = "openai",
        max_attempts: int = 3,
        backoff: BackoffPolicy | None = None,
    ) -> None:
        if profile.base_url is None:
            raise LLMConfigError(f"image provider profile {provider_name!r} has no base_url")
        self.profile = profile
        self.model = model
        self.provider_name = provider_name
        self.max_attempts = max_attempts
        self.backoff = backoff or BackoffPolicy()
        self._client = AsyncOpenAI(
            api_key=profile.api_key.get_secret_value() if profile.api_key else "unused",
            base_url=profile.base_url,
            # Retries are ours, as for chat: backoff with jitter and the provider's Retry-After.
            max_retries=0,
            timeout=Timeout(profile.total_timeout_s, connect=profile.connect_timeout_s),
            default_headers=profile.request_headers(),
        )

    async def generate(self, request: ImageRequest) -> GeneratedImage:
        """Draw one image; the size is sent as WIDTHxHEIGHT."""
        started = time.monotonic()
        extra: dict[str, Any] = {}
        # DALL-E models answer with a URL unless asked for base64; GPT image models reject the parameter.
        if self.model.startswith("dall-e"):
            extra["response_format"] = "b64_json"
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = await self._client.images.generate(
                    model=self.model, prompt=request.prompt, n=1, size=f"{request.width}x{request.height}", **extra
                )
                break
            except openai.APIStatusError as error:
                status = error.status_code
                failure = ImageGenerationError(
                    _openai_message(error), provider=self.provider_name, model=self.model, status_code=status
                )
                transient = status == 429 or status >= 500
                retry_after = parse_retry_after(error.response.headers)
            except openai.APIError as error:
                failure = ImageGenerationError(error.message, provider=self.provider_name, model=self.model)
                transient, retry_after = isinstance(error, openai.APIConnectionError), None
            if not transient or attempt == self.max_attempts:
                raise failure
            await asyncio.sleep(retry_delay(attempt, self.backoff, retry_after))
        image = response.data[0] if response.data else None
        if image is None:
            raise ImageGenerationError("no image in the reply", provider=self.provider_name, model=self.model)
        if image.b64_json:
            data = base64.b64decode(image.b64_json)
        elif image.url:
            data = await _fetch_bytes(image.url, self.provider_name, self.model)
        else:
            raise ImageGenerationError("image had neither data nor URL", provider=self.provider_name, model=self.model)
        mime = sniff_mime(data)
        if mime is None:
            raise ImageGenerationError("reply is not an image", provider=self.provider_name, model=self.model)
        return GeneratedImage(
            data=data,
            mime_type=mime,
            provider=self.provider_name,
            model=self.model,
            latency_s=time.monotonic() - started,
            revised_prompt=image.revised_prompt,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.close()


def _openai_message(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return error.message


async def _fetch_bytes(url: str, provider: str, model: str) -> bytes:
    if url.startswith("data:"):
        return base64.b64decode(url.partition(",")[2])
    async with httpx.AsyncClient(timeout=60, follow_redirects=True) as client:
        response = await client.get(url)
    if response.status_code >= 400:
        raise ImageGenerationError(
            f"fetching the image failed: {response.text[:200]}",
            provider=provider,
            model=model,
            status_code=response.status_code,
        )
    return response.content


ImageProviderFactory = Callable[[LLMSettings], ImageGenerator]


def _openai_factory(settings: LLMSettings) -> ImageGenerator:
    name = settings.image_profile or "openai"
    return OpenAIImageGenerator(
        settings.profile(name),
        settings.image_model,
        provider_name=name,
        max_attempts=settings.max_attempts,
        backoff=BackoffPolicy(base_s=settings.backoff_base_s, max_s=settings.backoff_max_s),
    )


def _leonardo_factory(settings: LLMSettings) -> ImageGenerator:
    from orrery_shared.llm.leonardo import LeonardoImageGenerator

    if settings.leonardo_api_key is None:
        raise LLMConfigError("ORRERY_LLM_LEONARDO_API_KEY is not set")
    return LeonardoImageGenerator(
        settings.leonardo_api_key.get_secret_value(),
        base_url=settings.leonardo_base_url,
        model_id=settings.leonardo_model_id,
        poll_interval_s=settings.leonardo_poll_interval_s,
        timeout_s=settings.leonardo_timeout_s,
    )


_PROVIDERS: dict[str, ImageProviderFactory] = {"openai": _openai_factory, "leonardo": _leonardo_factory}


def register_image_provider(name: str, factory: ImageProviderFactory) -> None:
    """Make `name` selectable with ORRERY_LLM_IMAGE_PROVIDER (replaces an earlier registration)."""
    _PROVIDERS[name] = factory


def build_image_generator(settings: LLMSettings | None = None, *, provider: str | None = None) -> ImageGenerator:
    """The image generator the settings select (or `provider`, overriding them)."""
    settings = settings if settings is not None else load_llm_settings()
    name = provider or settings.image_provider
    factory = _PROVIDERS.get(name)
    if factory is None:
        known = ", ".join(sorted(_PROVIDERS))
        raise LLMConfigError(f"ORRERY_LLM_IMAGE_PROVIDER is {name!r}, which is not registered (known: {known})")
    return factory(settings)


async def generate_with_timeout(generator: ImageGenerator, request: ImageRequest, timeout_s: float) -> GeneratedImage:
    """`generator.generate(request)`, raising ImageTimeoutError after `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            return await generator.generate(request)
    except TimeoutError:
        raise ImageTimeoutError(f"no image within {timeout_s}s", provider=generator.name) from None
