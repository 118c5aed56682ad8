"""Typed errors of the LLM layer; every one carries the provider's own message when there is one."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orrery_shared.llm.usage import Usage


class LLMConfigError(ValueError):
    """The LLM settings are unusable; the message is one line naming the setting at fault."""


class LLMError(Exception):
    """Base of every runtime error raised by the LLM client."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.status_code = status_code

    def __str__(self) -> str:
        where = "/".join(p for p in (self.provider, self.model) if p)
        status = f" HTTP {self.status_code}" if self.status_code is not None else ""
        return f"[{where}{status}] {self.message}" if where or status else self.message


class ProviderError(LLMError):
    """A provider answered with an error or could not be reached."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        status_code: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider, model=model, status_code=status_code)
        # The provider's Retry-After hint, honoured by the retry loop when present.
        self.retry_after_s = retry_after_s


class RateLimitedError(ProviderError):
    """HTTP 429."""

    retryable = True


class ProviderUnavailableError(ProviderError):
    """HTTP 5xx, a refused or dropped connection: worth another try."""

    retryable = True


class ProviderTimeoutError(ProviderError):
    """Connect, first-token or total timeout elapsed."""

    retryable = True


class ProviderRejectedError(ProviderError):
    """A 4xx other than 429 (bad request, auth, unknown model): retrying the same entry cannot help."""


class AllRoutesFailedError(LLMError):
    """Every (provider, model) entry of the task's route failed; `failures` lists each last error."""

    def __init__(self, task: str, failures: list[ProviderError]) -> None:
        last = failures[-1] if failures else None
        message = f"all {len(failures)} route entries for task {task!r} failed"
        if last is not None:
            message += f"; last: {last}"
        super().__init__(
            message,
            provider=last.provider if last else None,
            model=last.model if last else None,
            status_code=last.status_code if last else None,
        )
        self.task = task
        self.failures = failures

    def __str__(self) -> str:
        return self.message


class StreamInterruptedError(LLMError):
    """The provider failed after text had already been delivered; `partial_text` is what arrived."""

    def __init__(
        self,
        message: str,
        *,
        partial_text: str,
        usage: Usage | None = None,
        provider: str | None = None,
        model: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message, provider=provider, model=model, status_code=status_code)
        self.partial_text = partial_text
        self.usage = usage


class StructuredOutputError(ProviderError):
    """The reply could not be validated against the requested model, even after a repair attempt."""

    def __init__(
        self,
        message: str,
        *,
        raw_text: str,
        provider: str | None = None,
        model: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, model=model)
        self.raw_text = raw_text


class ImageGenerationError(LLMError):
    """An image provider failed or returned something that is not an image."""


class ImageTimeoutError(ImageGenerationError):
    """An image generation did not complete within its time limit."""
