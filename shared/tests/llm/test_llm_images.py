"""Image providers: OpenAI's Images API against the stub, Leonardo.Ai against a local fake of its API."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from orrery_shared.llm import (
    ImageGenerationError,
    ImageRequest,
    ImageTimeoutError,
    LeonardoImageGenerator,
    LLMConfigError,
    OpenAIImageGenerator,
    build_image_generator,
    register_image_provider,
)
from orrery_shared.llm.images import GeneratedImage, ImageGenerator
from orrery_shared.llm.settings import LLMSettings, ProviderProfile
from tests.support.llm_stub import StubControl

# The fake Leonardo API comes from this directory's conftest (fixture `fake_leonardo`).
FakeLeonardo = Any


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def leonardo(fake: FakeLeonardo, *, timeout_s: float = 5.0, key: str | None = None) -> LeonardoImageGenerator:
    return LeonardoImageGenerator(
        key or fake.api_key,
        base_url=f"{fake.base_url}/api/rest/v1",
        model_id="model-x",
        poll_interval_s=0.02,
        timeout_s=timeout_s,
    )


async def test_openai_images_from_the_stub_are_valid_pngs(llm_stub: StubControl) -> None:
    generator = build_image_generator(llm_stub.settings(image_model="gpt-image-1"))
    assert isinstance(generator, OpenAIImageGenerator)
    try:
        image = await generator.generate(ImageRequest("a lighthouse at dusk", width=1536, height=1024))
    finally:
        await generator.aclose()
    assert image.mime_type == "image/png"
    assert png_size(image.data) == (64, 43)
    assert (image.provider, image.model) == ("stub", "gpt-image-1")
    request = llm_stub.requests(path="/v1/images/generations")[0]
    assert request["body"]["prompt"] == "a lighthouse at dusk"
    assert request["body"]["size"] == "1536x1024"
    assert "response_format" not in request["body"]


async def test_a_rate_limited_image_request_is_retried(llm_stub: StubControl) -> None:
    llm_stub.script(endpoint="images", status=429, retry_after_s=0.05, times=2)
    generator = OpenAIImageGenerator(ProviderProfile(base_url=llm_stub.base_url, api_key="k"), "gpt-image-1")
    try:
        image = await generator.generate(ImageRequest("a lighthouse"))
    finally:
        await generator.aclose()
    assert image.mime_type == "image/png"
    assert len(llm_stub.requests(path="/v1/images/generations")) == 3


async def test_an_image_provider_error_carries_its_message(llm_stub: StubControl) -> None:
    llm_stub.script(endpoint="images", status=400, error_message="prompt rejected by safety system")
    generator = OpenAIImageGenerator(ProviderProfile(base_url=llm_stub.base_url, api_key="k"), "dall-e-3")
    try:
        with pytest.raises(ImageGenerationError, match="prompt rejected by safety system") as caught:
            await generator.generate(ImageRequest("something"))
    finally:
        await generator.aclose()
    assert caught.value.status_code == 400


async def test_leonardo_creates_polls_and_fetches_an_image(fake_leonardo: FakeLeonardo) -> None:
    fake_leonardo.polls_until_complete = 3
    generator = leonardo(fake_leonardo)
    try:
        image = await generator.generate(
            ImageRequest("a lighthouse", negative_prompt="people", width=1000, height=770, seed=7)
        )
    finally:
        await generator.aclose()
    assert image.data == fake_leonardo.png and image.mime_type == "image/png"
    assert image.provider == "leonardo" and image.model == "model-x"
    assert image.source_url is not None and image.source_url.endswith(".png")
    (created,) = fake_leonardo.created
    assert created == {
        "prompt": "a lighthouse",
        "width": 1000,
        "height": 768,
        "num_images": 1,
        "modelId": "model-x",
        "negative_prompt": "people",
        "seed": 7,
    }
    assert list(fake_leonardo.polls.values()) == [3]
    api_calls = [auth for path, auth in fake_leonardo.auth_headers if path.startswith("/api/")]
    cdn_calls = [auth for path, auth in fake_leonardo.auth_headers if path.startswith("/cdn/")]
    assert api_calls == [f"Bearer {fake_leonardo.api_key}"] * 4
    assert cdn_calls == [None]  # the key never goes to the image host


async def test_leonardo_gives_up_after_its_timeout(fake_leonardo: FakeLeonardo) -> None:
    fake_leonardo.polls_until_complete = -1  # never completes
    generator = leonardo(fake_leonardo, timeout_s=0.3)
    try:
        with pytest.raises(ImageTimeoutError, match=r"did not complete within 0\.3s"):
            await generator.generate(ImageRequest("a lighthouse"))
    finally:
        await generator.aclose()
    assert sum(fake_leonardo.polls.values()) >= 3


async def test_leonardo_reports_a_failed_generation(fake_leonardo: FakeLeonardo) -> None:
    fake_leonardo.outcome = "FAILED"
    generator = leonardo(fake_leonardo)
    try:
        with pytest.raises(ImageGenerationError, match="failed"):
            await generator.generate(ImageRequest("a lighthouse"))
    finally:
        await generator.aclose()


async def test_leonardo_passes_on_the_apis_error_message(fake_leonardo: FakeLeonardo) -> None:
    generator = leonardo(fake_leonardo, key="wrong")
    try:
        with pytest.raises(ImageGenerationError, match="Invalid API key") as caught:
            await generator.generate(ImageRequest("a lighthouse"))
    finally:
        await generator.aclose()
    assert caught.value.status_code == 401


def test_leonardo_is_chosen_by_settings_and_needs_its_key() -> None:
    with pytest.raises(LLMConfigError, match="ORRERY_LLM_LEONARDO_API_KEY is not set"):
        from orrery_shared.llm.settings import load_llm_settings

        load_llm_settings(image_provider="leonardo")
    settings = LLMSettings(image_provider="leonardo", leonardo_api_key="k", leonardo_model_id="m")
    assert isinstance(build_image_generator(settings), LeonardoImageGenerator)


async def test_a_registered_provider_can_be_selected() -> None:
    class Procedural:
        name = "procedural"

        async def generate(self, request: ImageRequest) -> GeneratedImage:
            return GeneratedImage(b"\x89PNG\r\n\x1a\n", "image/png", "procedural", "v1", 0.0)

        async def aclose(self) -> None:
            return None

    register_image_provider("procedural", lambda settings: Procedural())
    generator = build_image_generator(LLMSettings(image_provider="procedural"))
    assert isinstance(generator, ImageGenerator)
    assert (await generator.generate(ImageRequest("x"))).provider == "procedural"
    with pytest.raises(LLMConfigError, match="not registered"):
        build_image_generator(LLMSettings(image_provider="nonexistent"))
