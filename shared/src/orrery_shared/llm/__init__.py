"""Orrery's LLM access layer: one client for chat, streaming, structured output and images.

Names are imported lazily so that light users (the stub server reads only `tokens`) do not pay for
loading the OpenAI SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orrery_shared.llm.client import ChatResult, ChatStream, LLMClient, StructuredResult
    from orrery_shared.llm.errors import (
        AllRoutesFailedError,
        ImageGenerationError,
        ImageTimeoutError,
        LLMConfigError,
        LLMError,
        ProviderError,
        ProviderRejectedError,
        ProviderTimeoutError,
        ProviderUnavailableError,
        RateLimitedError,
        StreamInterruptedError,
        StructuredOutputError,
    )
    from orrery_shared.llm.images import (
        GeneratedImage,
        ImageGenerator,
        ImageRequest,
        OpenAIImageGenerator,
        build_image_generator,
        register_image_provider,
    )
    from orrery_shared.llm.leonardo import LeonardoImageGenerator
    from orrery_shared.llm.messages import ChatMessage, assistant, system, user
    from orrery_shared.llm.settings import LLMSettings, ProviderProfile, RouteEntry, load_llm_settings
    from orrery_shared.llm.tokens import estimate_message_tokens, estimate_tokens
    from orrery_shared.llm.usage import InMemoryUsageSink, MetricsUsageSink, Usage, UsageSink

_WHERE = {
    "client": ("ChatResult", "ChatStream", "LLMClient", "StructuredResult"),
    "errors": (
        "AllRoutesFailedError",
        "ImageGenerationError",
        "ImageTimeoutError",
        "LLMConfigError",
        "LLMError",
        "ProviderError",
        "ProviderRejectedError",
        "ProviderTimeoutError",
        "ProviderUnavailableError",
        "RateLimitedError",
        "StreamInterruptedError",
        "StructuredOutputError",
    ),
    "images": (
        "GeneratedImage",
        "ImageGenerator",
        "ImageRequest",
        "OpenAIImageGenerator",
        "build_image_generator",
        "register_image_provider",
    ),
    "leonardo": ("LeonardoImageGenerator",),
    "messages": ("ChatMessage", "assistant", "system", "user"),
    "settings": ("LLMSettings", "ProviderProfile", "RouteEntry", "load_llm_settings"),
    "tokens": ("estimate_message_tokens", "estimate_tokens"),
    "usage": ("InMemoryUsageSink", "MetricsUsageSink", "Usage", "UsageSink"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = [
    "AllRoutesFailedError",
    "ChatMessage",
    "ChatResult",
    "ChatStream",
    "GeneratedImage",
    "ImageGenerationError",
    "ImageGenerator",
    "ImageRequest",
    "ImageTimeoutError",
    "InMemoryUsageSink",
    "LLMClient",
    "LLMConfigError",
    "LLMError",
    "LLMSettings",
    "LeonardoImageGenerator",
    "MetricsUsageSink",
    "OpenAIImageGenerator",
    "ProviderError",
    "ProviderProfile",
    "ProviderRejectedError",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "RateLimitedError",
    "RouteEntry",
    "StreamInterruptedError",
    "StructuredOutputError",
    "StructuredResult",
    "Usage",
    "UsageSink",
    "assistant",
    "build_image_generator",
    "estimate_message_tokens",
    "estimate_tokens",
    "load_llm_settings",
    "register_image_provider",
    "system",
    "user",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
