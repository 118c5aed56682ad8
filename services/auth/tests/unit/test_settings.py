"""Auth settings: development defaults point at the local mail sink; production demands real configuration."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import ip_network

import pytest
from pydantic import ValidationError

from orrery_auth.keys import generate_private_key_pem
from orrery_auth.settings import AuthSettings
from orrery_shared.settings import describe_validation_error

PROD_DB = "postgresql+psycopg://orrery_auth:s3cret@db:5432/orrery"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ORRERY_ENV", "ORRERY_AUTH_SMTP_HOST", "ORRERY_AUTH_SMTP_PORT", "ORRERY_AUTH_SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)


def test_in_development_mail_goes_to_the_dev_mailbox_in_plain_smtp() -> None:
    settings = AuthSettings()
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_starttls) == ("127.0.0.1", 2525, False)
    assert settings.public_base_url == "http://127.0.0.1:8000"


def test_production_requires_a_signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORRERY_ENV", "prod")
    monkeypatch.setenv("ORRERY_AUTH_DATABASE_URL", PROD_DB)
    monkeypatch.setenv("ORRERY_AUTH_SMTP_HOST", "smtp.example.com")
    with pytest.raises(ValidationError) as caught:
        AuthSettings()
    assert describe_validation_error(AuthSettings, caught.value).startswith("ORRERY_AUTH_SIGNING_KEY_FILE: ")


def test_production_requires_an_smtp_host_and_defaults_to_starttls_on_587(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORRERY_ENV", "prod")
    monkeypatch.setenv("ORRERY_AUTH_DATABASE_URL", PROD_DB)
    monkeypatch.setenv("ORRERY_AUTH_SIGNING_KEY", generate_private_key_pem().decode())
    with pytest.raises(ValidationError) as caught:
        AuthSettings()
    assert describe_validation_error(AuthSettings, caught.value).startswith("ORRERY_AUTH_SMTP_HOST: ")
    monkeypatch.setenv("ORRERY_AUTH_SMTP_HOST", "smtp.example.com")
    settings = AuthSettings()
    assert (settings.smtp_port, settings.smtp_starttls) == (587, True)


def test_production_refuses_smtp_credentials_over_plaintext(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORRERY_ENV", "prod")
    monkeypatch.setenv("ORRERY_AUTH_DATABASE_URL", PROD_DB)
    monkeypatch.setenv("ORRERY_AUTH_SIGNING_KEY", generate_private_key_pem().decode())
    monkeypatch.setenv("ORRERY_AUTH_SMTP_HOST", "smtp.example.com")
    monkeypatch.setenv("ORRERY_AUTH_SMTP_STARTTLS", "false")
    monkeypatch.setenv("ORRERY_AUTH_SMTP_PASSWORD", "hunter2")
    with pytest.raises(ValidationError, match="without TLS"):
        AuthSettings()


def test_trusted_proxies_are_a_comma_separated_list_of_addresses_or_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORRERY_AUTH_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8,::1")
    assert AuthSettings().trusted_proxies == [ip_network("127.0.0.1"), ip_network("10.0.0.0/8"), ip_network("::1")]


def test_secrets_do_not_show_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    pem = generate_private_key_pem().decode()
    settings = AuthSettings(signing_key=pem, smtp_password="hunter2")
    assert "hunter2" not in repr(settings) and "PRIVATE KEY" not in repr(settings)


def test_the_service_stops_with_one_line_naming_a_bad_setting() -> None:
    env = {"ORRERY_AUTH_TRUSTED_PROXIES": "not-an-address", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "orrery_auth"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("configuration error: ORRERY_AUTH_TRUSTED_PROXIES")
