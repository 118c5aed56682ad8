"""LLM settings: presets, routes, and one clear line when a provider is misconfigured."""

from __future__ import annotations

import pytest

from orrery_shared.llm import LLMClient, LLMConfigError, RouteEntry, load_llm_settings
from orrery_shared.llm.providers import STUB_BASE_URL


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for name in list(os.environ):
        if name.startswith("ORRERY_LLM_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_with_nothing_configured_every_task_goes_to_the_local_stub() -> None:
    settings = load_llm_settings()
    assert settings.providers["stub"].base_url == STUB_BASE_URL == "http://127.0.0.1:18080/v1"
    for task in ("chat", "persona", "extraction", "summary"):
        assert settings.route(task) == [RouteEntry(provider="stub", model="orrery-stub-1")]
    assert settings.image_profile == "stub"


def test_a_task_routed_to_a_provider_without_a_key_fails_at_load_naming_the_setting(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("ORRERY_LLM_ROUTES__CHAT", '["openrouter/meta-llama/llama-3.1-8b-instruct:free"]')
    with pytest.raises(LLMConfigError) as caught:
        load_llm_settings()
    message = str(caught.value)
    assert message == (
        "ORRERY_LLM_PROVIDERS__OPENROUTER__API_KEY is not set, but task 'chat' is routed to provider 'openrouter'"
    )
    assert "\n" not in message
    with pytest.raises(LLMConfigError, match="ORRERY_LLM_PROVIDERS__OPENROUTER__API_KEY"):
        LLMClient.from_env()


def test_a_custom_provider_without_a_base_url_fails_naming_the_setting(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ORRERY_LLM_ROUTES", '{"summary": ["lab/qwen2.5-7b"]}')
    clean_env.setenv("ORRERY_LLM_PROVIDERS__LAB__API_KEY", "k")
    with pytest.raises(LLMConfigError, match=r"^ORRERY_LLM_PROVIDERS__LAB__BASE_URL is not set, but task 'summary'"):
        load_llm_settings()


def test_bad_json_in_a_variable_is_named() -> None:
    import os

    os.environ["ORRERY_LLM_ROUTES"] = '{"chat": '
    try:
        with pytest.raises(LLMConfigError, match=r"^ORRERY_LLM_ROUTES is not valid JSON"):
            load_llm_settings()
    finally:
        del os.environ["ORRERY_LLM_ROUTES"]


def test_a_malformed_route_entry_is_named() -> None:
    with pytest.raises(LLMConfigError, match=r"^ORRERY_LLM_ROUTES__CHAT__0: .*'provider/model'"):
        load_llm_settings(routes={"chat": ["no-slash-here"]})


def test_presets_fill_in_what_a_known_provider_needs(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ORRERY_LLM_PROVIDERS__OPENROUTER__API_KEY", "sk-or")
    clean_env.setenv("ORRERY_LLM_PROVIDERS__OPENROUTER__REFERER", "https://orrery.example")
    clean_env.setenv(
        "ORRERY_LLM_ROUTES__CHAT", '["openrouter/anthropic/claude-3.5-haiku", "groq/llama-3.1-8b-instant"]'
    )
    clean_env.setenv("ORRERY_LLM_PROVIDERS__GROQ__API_KEY", "gsk")
    settings = load_llm_settings()
    openrouter = settings.profile("openrouter")
    assert openrouter.base_url == "https://openrouter.ai/api/v1"
    assert openrouter.request_headers() == {"HTTP-Referer": "https://orrery.example", "X-Title": "Orrery"}
    assert settings.profile("groq").supports_json_schema is False
    assert settings.route("chat") == [
        RouteEntry(provider="openrouter", model="anthropic/claude-3.5-haiku"),
        RouteEntry(provider="groq", model="llama-3.1-8b-instant"),
    ]
    # Tasks without a route of their own follow the chat route.
    assert settings.route("summary") == settings.route("chat")


def test_a_single_configured_provider_becomes_the_default(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ORRERY_LLM_PROVIDERS__OPENAI__API_KEY", "sk-test")
    settings = load_llm_settings()
    assert settings.route("persona") == [RouteEntry(provider="openai", model="gpt-4o-mini")]
    assert settings.profile("openai").max_tokens_field == "max_completion_tokens"
    assert settings.image_profile == "openai"


def test_local_providers_need_no_key(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ORRERY_LLM_ROUTES__CHAT", '["ollama/llama3.1:8b"]')
    clean_env.setenv("ORRERY_LLM_PROVIDERS__VLLM__BASE_URL", "http://127.0.0.1:8000/v1")
    clean_env.setenv("ORRERY_LLM_ROUTES__SUMMARY", '["vllm/Qwen/Qwen2.5-7B-Instruct"]')
    settings = load_llm_settings()
    assert settings.route("chat")[0].model == "llama3.1:8b"
    assert settings.profile("ollama").base_url == "http://127.0.0.1:11434/v1"
    assert settings.route("summary")[0].model == "Qwen/Qwen2.5-7B-Instruct"


def test_an_unrouted_task_is_a_config_error() -> None:
    with pytest.raises(LLMConfigError, match="ORRERY_LLM_ROUTES__MODERATION"):
        load_llm_settings().route("moderation")


def test_provider_names_are_case_insensitive() -> None:
    settings = load_llm_settings(providers={"OpenRouter": {"api_key": "k"}}, routes={"chat": ["OpenRouter/some/model"]})
    assert settings.route("chat") == [RouteEntry(provider="openrouter", model="some/model")]
    assert settings.profile("openrouter").base_url == "https://openrouter.ai/api/v1"
