"""LLM settings (env prefix ORRERY_LLM_): provider profiles, per-task routes, retries and images."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from orrery_shared.llm.errors import LLMConfigError
from orrery_shared.llm.providers import STUB_PROVIDER, preset_for

ENV_PREFIX = "ORRERY_LLM_"
KNOWN_TASKS = ("chat", "persona", "extraction", "summary")


def provider_env(provider: str, field: str) -> str:
    """The environment variable that sets `field` of provider profile `provider`."""
    return f"{ENV_PREFIX}PROVIDERS__{provider.upper()}__{field.upper()}"


class ProviderProfile(BaseModel):
    """How to reach one OpenAI-compatible endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str | None = None
    api_key: SecretStr | None = None
    api_key_required: bool = True
    headers: dict[str, str] = Field(default_factory=dict)
    referer: str | None = Field(None, description="sent as HTTP-Referer (OpenRouter app attribution)")
    title: str | None = Field(None, description="sent as X-Title (OpenRouter app attribution)")
    connect_timeout_s: float = Field(5.0, gt=0)
    first_token_timeout_s: float = Field(30.0, gt=0)
    total_timeout_s: float = Field(120.0, gt=0)
    max_connections: int = Field(1000, ge=1, description="concurrent requests (streams) to this provider")
    supports_json_schema: bool = False
    supports_stream_usage: bool = True
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    default_model: str | None = None

    def request_headers(self) -> dict[str, str]:
        """Extra headers sent with every request to this provider."""
        headers = dict(self.headers)
        if self.referer:
            headers.setdefault("HTTP-Referer", self.referer)
        if self.title:
            headers.setdefault("X-Title", self.title)
        return headers


class RouteEntry(BaseModel):
    """One (provider, model) step of a task's fallback list."""

    model_config = ConfigDict(frozen=True)

    provider: str
    model: str

    @model_validator(mode="before")
    @classmethod
    def _from_compact(cls, value: Any) -> Any:
        # "provider/model" splits at the first slash: model names may contain slashes and colons.
        if isinstance(value, str):
            provider, sep, model = value.partition("/")
            if not sep or not provider or not model:
                raise ValueError(f"route entry {value!r} is not 'provider/model'")
            return {"provider": provider.lower(), "model": model}
        if isinstance(value, list | tuple) and len(value) == 2:
            return {"provider": str(value[0]).lower(), "model": value[1]}
        if isinstance(value, dict) and isinstance(value.get("provider"), str):
            return {**value, "provider": value["provider"].lower()}
        return value

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


class LLMSettings(BaseSettings):
    """Everything the LLM layer reads from the environment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore")

    providers: dict[str, ProviderProfile] = Field(default_factory=dict)
    routes: dict[str, list[RouteEntry]] = Field(default_factory=dict)
    default_provider: str | None = Field(
        None,
        description="provider of tasks without a route; default: the first fully configured provider, else stub",
    )

    max_attempts: int = Field(3, ge=1, le=10, description="tries per route entry before the next fallback")
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(8.0, ge=0)
    retry_budget_s: float = Field(30.0, ge=0, description="time per call after which no retry is started")

    image_provider: str = Field("openai", description="openai, leonardo, or a registered provider name")
    image_profile: str | None = Field(
        None, description="provider profile the 'openai' images use; default: openai if configured, else stub"
    )
    image_model: str = "gpt-image-1"
    leonardo_api_key: SecretStr | None = None
    leonardo_base_url: str = "https://cloud.leonardo.ai/api/rest/v1"
    leonardo_model_id: str | None = None
    leonardo_poll_interval_s: float = Field(2.0, gt=0)
    leonardo_timeout_s: float = Field(120.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _apply_presets(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        given = data.get("providers") or {}
        merged: dict[str, Any] = {}
        for raw_name, raw_profile in {STUB_PROVIDER: {}, **given}.items():
            # Environment variable names are case-insensitive, so provider names are too.
            name = str(raw_name).lower()
            profile = raw_profile
            if isinstance(profile, ProviderProfile):
                profile = profile.model_dump(exclude_unset=True)
            merged[name] = {**preset_for(name), **merged.get(name, {}), **(profile or {})}
        return {**data, "providers": merged}

    @model_validator(mode="after")
    def _check_routes(self) -> LLMSettings:
        for entries in self.routes.values():
            for entry in entries:
                # A route may name a preset provider without configuring anything else about it.
                if entry.provider not in self.providers and preset_for(entry.provider):
                    self.providers[entry.provider] = ProviderProfile(**preset_for(entry.provider))
        default = self.default_provider or next(
            (name for name in self.providers if name != STUB_PROVIDER and self._ready(name)), STUB_PROVIDER
        )
        if default not in self.providers:
            raise ValueError(f"{ENV_PREFIX}DEFAULT_PROVIDER names {default!r}, which has no profile")
        for task in KNOWN_TASKS:
            if task in self.routes:
                continue
            if "chat" in self.routes:
                self.routes[task] = list(self.routes["chat"])
                continue
            model = self.providers[default].default_model
            if model is None:
                raise ValueError(
                    f"{ENV_PREFIX}ROUTES__{task.upper()} is not set and provider {default!r} has no "
                    f"default model ({provider_env(default, 'default_model')})"
                )
            self.routes[task] = [RouteEntry(provider=default, model=model)]
        for task, entries in self.routes.items():
            if not entries:
                raise ValueError(f"{ENV_PREFIX}ROUTES__{task.upper()} is empty")
            for entry in entries:
                self._check_usable(entry.provider, f"task {task!r} is routed to provider {entry.provider!r}")
        if self.image_provider == "openai":
            # OpenAI is the one hosted provider here with an Images API; the stub mimics it offline.
            self.image_profile = self.image_profile or ("openai" if "openai" in self.providers else STUB_PROVIDER)
            self._check_usable(self.image_profile, f"{ENV_PREFIX}IMAGE_PROFILE is provider {self.image_profile!r}")
        elif self.image_provider == "leonardo" and self.leonardo_api_key is None:
            raise ValueError(f"{ENV_PREFIX}LEONARDO_API_KEY is not set, but {ENV_PREFIX}IMAGE_PROVIDER is 'leonardo'")
        return self

    def _ready(self, provider: str) -> bool:
        """Whether a provider could serve a task on its own (reachable, keyed, with a default model)."""
        profile = self.providers[provider]
        keyed = profile.api_key is not None or not profile.api_key_required
        return profile.base_url is not None and keyed and profile.default_model is not None

    def _check_usable(self, provider: str, why: str) -> None:
        profile = self.providers.get(provider)
        if profile is None or profile.base_url is None:
            raise ValueError(f"{provider_env(provider, 'base_url')} is not set, but {why}")
        if profile.api_key_required and profile.api_key is None:
            raise ValueError(f"{provider_env(provider, 'api_key')} is not set, but {why}")

    def route(self, task: str) -> list[RouteEntry]:
        """The ordered fallback list of `task`."""
        try:
            return self.routes[task]
        except KeyError:
            known = ", ".join(sorted(self.routes))
            raise LLMConfigError(
                f"no route for task {task!r} (set {ENV_PREFIX}ROUTES__{task.upper()}; routed tasks: {known})"
            ) from None

    def profile(self, provider: str) -> ProviderProfile:
        """The profile of `provider`."""
        try:
            return self.providers[provider]
        except KeyError:
            raise LLMConfigError(f"{provider_env(provider, 'base_url')} is not set") from None


def describe_settings_error(error: ValidationError) -> str:
    """One line naming the ORRERY_LLM_* variable(s) at fault."""
    parts = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")
        loc = "__".join(str(p) for p in item["loc"]).upper()
        parts.append(f"{ENV_PREFIX}{loc}: {message}" if loc else message)
    return "; ".join(parts)


def load_llm_settings(**overrides: Any) -> LLMSettings:
    """Read LLMSettings from the environment, raising LLMConfigError with one clear line if unusable."""
    try:
        return LLMSettings(**overrides)
    except ValidationError as error:
        raise LLMConfigError(describe_settings_error(error)) from None
    except SettingsError as error:
        field = re.search(r'field "(\w+)"', str(error))
        name = f"{ENV_PREFIX}{field.group(1).upper()}" if field else f"{ENV_PREFIX}*"
        cause = f" ({error.__cause__})" if error.__cause__ else ""
        raise LLMConfigError(f"{name} is not valid JSON{cause}") from None
