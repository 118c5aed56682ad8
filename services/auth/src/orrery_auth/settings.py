"""Settings of the auth service (prefix ORRERY_AUTH_)."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from orrery_shared.auth import DEFAULT_AUDIENCE, DEFAULT_ISSUER
from orrery_shared.settings import DatabaseServiceSettings, Environment, load_settings

DEV_SMTP_HOST = "127.0.0.1"
DEV_SMTP_PORT = 2525  # the development mail sink, `python -m orrery_auth.dev_mailbox`

Network = IPv4Network | IPv6Network


def _is_prod(info: ValidationInfo) -> bool:
    return info.data.get("environment") is Environment.PROD


class AuthSettings(DatabaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORRERY_AUTH_", extra="ignore")

    port: int = Field(8001, ge=1, le=65535)
    database_url: str = "postgresql+psycopg://orrery_auth:orrery_auth@127.0.0.1:55432/orrery"
    db_schema: str = "auth"

    # --- tokens -------------------------------------------------------------------------------------
    public_base_url: str = Field(
        "http://127.0.0.1:8000", description="the gateway's public URL; links point to <this>/auth/verify?token="
    )
    issuer: str = DEFAULT_ISSUER
    audience: str = DEFAULT_AUDIENCE
    access_token_ttl_seconds: int = Field(900, ge=60, le=3600)
    refresh_token_ttl_seconds: int = Field(30 * 24 * 3600, ge=3600)
    magic_link_ttl_seconds: int = Field(900, ge=60, le=24 * 3600)

    # --- signing keys -------------------------------------------------------------------------------
    signing_key: SecretStr | None = Field(None, description="PEM private key that signs access tokens")
    signing_key_file: Path | None = Field(None, description="file holding that PEM private key")
    previous_key: SecretStr | None = Field(None, description="PEM (public or private) key still accepted")
    previous_key_file: Path | None = Field(None, description="file holding that PEM key")
    dev_key_dir: Path = Field(
        Path(".orrery/auth-keys"), description="dev only: where keys are generated and kept when none are configured"
    )

    # --- mail ---------------------------------------------------------------------------------------
    smtp_host: str = Field("", validate_default=True, description="dev default: the local mail sink")
    smtp_port: int = Field(0, ge=0, le=65535, validate_default=True, description="dev 2525, prod 587")
    smtp_tls: bool = Field(False, description="implicit TLS from the first byte (usually port 465)")
    smtp_starttls: bool | None = Field(None, validate_default=True, description="upgrade with STARTTLS (prod default)")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_ca_file: Path | None = Field(None, description="CA bundle to trust for the SMTP server's certificate")
    smtp_timeout_seconds: float = Field(10.0, gt=0, le=120)
    mail_from: str = Field("Orrery <no-reply@orrery.localhost>", description="From: of sign-in mails")

    # --- abuse limits -------------------------------------------------------------------------------
    trusted_proxies: Annotated[list[Network], NoDecode] = Field(
        default_factory=list, description="comma-separated addresses/CIDRs whose X-Forwarded-For is believed"
    )
    redis_key_prefix: str = "orrery:auth:"
    magic_link_window_seconds: int = Field(900, ge=1)
    magic_links_per_email: int = Field(5, ge=1)
    magic_links_per_ip: int = Field(20, ge=1)
    ip_window_seconds: int = Field(60, ge=1)
    verifications_per_ip: int = Field(30, ge=1)
    guests_per_ip: int = Field(10, ge=1)

    @field_validator("public_base_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return url.rstrip("/")

    @field_validator("signing_key_file")
    @classmethod
    def _prod_needs_a_signing_key(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        if path is None and info.data.get("signing_key") is None and _is_prod(info):
            raise ValueError("set ORRERY_AUTH_SIGNING_KEY or ORRERY_AUTH_SIGNING_KEY_FILE in production")
        return path

    @field_validator("smtp_host")
    @classmethod
    def _smtp_host(cls, host: str, info: ValidationInfo) -> str:
        if host:
            return host
        if _is_prod(info):
            raise ValueError("required in production")
        return DEV_SMTP_HOST

    @field_validator("smtp_port")
    @classmethod
    def _smtp_port(cls, port: int, info: ValidationInfo) -> int:
        return port or (587 if _is_prod(info) else DEV_SMTP_PORT)

    @field_validator("smtp_starttls")
    @classmethod
    def _smtp_starttls(cls, starttls: bool | None, info: ValidationInfo) -> bool:
        if starttls is None:
            return _is_prod(info) and not info.data.get("smtp_tls", False)
        return starttls

    @field_validator("smtp_password")
    @classmethod
    def _no_plaintext_password_in_prod(cls, password: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        encrypted = info.data.get("smtp_tls") or info.data.get("smtp_starttls")
        if password is not None and _is_prod(info) and not encrypted:
            raise ValueError("refusing to send SMTP credentials without TLS or STARTTLS in production")
        return password

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip()]
        return value


def load() -> AuthSettings:
    return load_settings(AuthSettings)
