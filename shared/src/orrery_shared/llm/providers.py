"""Built-in provider presets: the defaults a profile gets when its name matches one of them."""

from __future__ import annotations

from typing import Any

STUB_PROVIDER = "stub"
STUB_BASE_URL = "http://127.0.0.1:18080/v1"

# Only facts a deployment would otherwise have to look up; every field can still be overridden.
PRESETS: dict[str, dict[str, Any]] = {
    STUB_PROVIDER: {
        "base_url": STUB_BASE_URL,
        "api_key": "orrery-stub",
        "api_key_required": False,
        "supports_json_schema": True,
        "default_model": "orrery-stub-1",
    },
    "openai": {
        "base_url": "https://api.openai.com/v1",
        "supports_json_schema": True,
        # Newer OpenAI models reject max_tokens.
        "max_tokens_field": "max_completion_tokens",
        "default_model": "gpt-4o-mini",
    },
    "openrouter": {
        "base_url": "https://openrouter.ai/api/v1",
        "supports_json_schema": True,
        "title": "Orrery",
        "default_model": "openai/gpt-4o-mini",
    },
    "groq": {
        "base_url": "https://api.groq.com/openai/v1",
        # Groq accepts json_schema only on some models; JSON mode plus validation works on all.
        "supports_json_schema": False,
        "default_model": "llama-3.1-8b-instant",
    },
    "ollama": {
        "base_url": "http://127.0.0.1:11434/v1",
        "api_key": "ollama",
        "api_key_required": False,
        "supports_json_schema": True,
        "first_token_timeout_s": 120.0,
    },
    "vllm": {
        "api_key": "vllm",
        "api_key_required": False,
        "supports_json_schema": True,
    },
}


def preset_for(name: str) -> dict[str, Any]:
    """The preset of a provider name, or an empty mapping for a custom provider."""
    return dict(PRESETS.get(name, {}))
