"""Misconfiguration stops a service at start with one clear line naming the setting."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from orrery_chat.settings import ChatSettings
from orrery_shared.settings import describe_validation_error


def test_a_bad_database_url_is_named_by_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORRERY_CHAT_DATABASE_URL", "mysql://nope")
    with pytest.raises(ValidationError) as caught:
        ChatSettings()
    line = describe_validation_error(ChatSettings, caught.value)
    assert line.startswith("ORRERY_CHAT_DATABASE_URL: ")
    assert "postgresql+psycopg://" in line


def test_production_refuses_the_development_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORRERY_ENV", "prod")
    with pytest.raises(ValidationError, match="development password"):
        ChatSettings()


def test_a_service_with_bad_settings_exits_with_one_line() -> None:
    env = {"ORRERY_CHAT_PORT": "not-a-port", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "orrery_chat"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("configuration error: ORRERY_CHAT_PORT: ")
