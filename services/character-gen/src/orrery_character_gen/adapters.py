"""Adapters from the LLM layer to the use cases: the persona writer and the portrait provider chain."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from orrery_character_gen import metrics
from orrery_character_gen.domain import PersonaDraft, Portrait, Traits, image_prompt_for, persona_messages
from orrery_character_gen.handlers import PersonaFailedError
from orrery_character_gen.imaging import ImageRejectedError, to_png
from orrery_character_gen.procedural import MODEL, PROVIDER, SVG_TYPE, ProceduralPortraits
from orrery_shared.llm import (
    AllRoutesFailedError,
    ImageGenerator,
    ImageRequest,
    LLMClient,
    LLMConfigError,
    LLMError,
    ProviderError,
    StructuredOutputError,
)
from orrery_shared.llm.images import generate_with_timeout, sniff_mime

log = logging.getLogger(__name__)

PERSONA_TASK = "persona"


class LLMPersonaWriter:
    """Writes personas with the LLM layer's structured output (task `persona`)."""

    def __init__(self, llm: LLMClient, *, max_tokens: int = 1_500, temperature: float = 0.9) -> None:
        self.llm = llm
        self.max_tokens = max_tokens
        self.temperature = temperature

    async def write(self, traits: Traits, avoid_names: Sequence[str]) -> PersonaDraft:
        """A validated persona; raises PersonaFailedError saying whether another spin may succeed."""
        messages: list[Any] = persona_messages(traits, avoid_names)
        try:
            result = await self.llm.complete_structured(
                messages,
                PersonaDraft,
                task=PERSONA_TASK,
                max_tokens=self.max_tokens,
                temperature=self.temperature,
            )
        except StructuredOutputError as error:
            log.warning("persona reply unusable", extra={"error": str(error)[:500]})
            raise PersonaFailedError("the character writer returned an unusable persona", retryable=True) from error
        except AllRoutesFailedError as error:
            retryable = any(getattr(f, "retryable", False) for f in error.failures) or not error.failures
            log.warning("persona writer unavailable", extra={"error": str(error)[:500]})
            raise PersonaFailedError("the character writer is unavailable right now", retryable=retryable) from error
        except ProviderError as error:
            raise PersonaFailedError("the character writer refused the request", retryable=error.retryable) from error
        except (LLMConfigError, LLMError) as error:
            log.error("persona writer misconfigured", extra={"error": str(error)[:500]})
            raise PersonaFailedError("the character writer is misconfigured", retryable=False) from error
        return result.value


class PortraitChain:
    """Tries each configured image provider in turn; the procedural portrait is the last resort and never fails."""

    def __init__(
        self,
        providers: Sequence[tuple[str, ImageGenerator]],
        procedural: ProceduralPortraits,
        *,
        timeout_s: float = 60.0,
        size: int = 1024,
        max_bytes: int = 8 * 1024 * 1024,
        max_pixels: int = 4096 * 4096,
    ) -> None:
        self.providers = list(providers)
        self.procedural_provider = procedural
        self.timeout_s = timeout_s
        self.size = size
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels

    async def paint(self, traits: Traits, image_prompt: str, seed: int) -> Portrait:
        """The first provider's portrait that arrives in time and is a real image; else the procedural one."""
        failed: list[str] = []
        request = ImageRequest(
            prompt=image_prompt_for(traits, image_prompt), width=self.size, height=self.size, seed=seed % 2**31
        )
        for name, generator in self.providers:
            try:
                image = await generate_with_timeout(generator, request, self.timeout_s)
                mime = sniff_mime(image.data)
                if mime is None or len(image.data) > self.max_bytes:
                    raise ImageRejectedError(f"{len(image.data)} bytes of {mime or 'unknown type'}")
                png = None if mime == "image/png" else await asyncio.to_thread(to_png, image.data, self.max_pixels)
                return Portrait(
                    data=image.data,
                    content_type=mime,
                    provider=name,
                    model=image.model,
                    png=png,
                    fell_back_from=tuple(failed),
                )
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # Any provider failure (HTTP, timeout, garbage bytes) only costs the character its fancier picture.
                metrics.PORTRAIT_FAILURES.labels(name).inc()
                log.warning("image provider failed; trying the next", extra={"provider": name, "error": str(error)})
                failed.append(name)
        portrait = await self.procedural(traits, seed)
        return Portrait(
            data=portrait.data,
            content_type=portrait.content_type,
            provider=portrait.provider,
            model=portrait.model,
            png=portrait.png,
            fell_back_from=tuple(failed),
        )

    async def procedural(self, traits: Traits, seed: int) -> Portrait:
        """The procedural portrait as SVG (its PNG is drawn on demand by `procedural_png`)."""
        svg = self.procedural_provider.svg(traits, seed)
        return Portrait(data=svg, content_type=SVG_TYPE, provider=PROVIDER, model=MODEL)

    async def procedural_png(self, traits: Traits, seed: int) -> bytes:
        """The procedural portrait as PNG, drawn off the event loop."""
        return await asyncio.to_thread(self.procedural_provider.png, traits, seed)

    async def aclose(self) -> None:
        """Close every provider's connections."""
        for _, generator in self.providers:
            try:
                await generator.aclose()
            except Exception:
                log.debug("closing an image provider failed", exc_info=True)
