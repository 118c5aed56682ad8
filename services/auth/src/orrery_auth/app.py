"""Composition root of the auth service: the only module that wires Kafka, Postgres, Redis, SMTP and HTTP."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from uuid import UUID

from fastapi import FastAPI
from redis.exceptions import RedisError

from orrery_auth.api import auth_router
from orrery_auth.domain import Unavailable
from orrery_auth.handlers import AuthHandlers, Policy
from orrery_auth.keys import AccessTokens, load_key_ring
from orrery_auth.mail import Mailer, SmtpMailer
from orrery_auth.ratelimit import RedisRateLimiter
from orrery_auth.settings import AuthSettings, load
from orrery_shared.auth import JwtVerifier
from orrery_shared.auth.revoked import revoke_users
from orrery_shared.runtime import Runtime
from orrery_shared.service import build_app


def policy_of(settings: AuthSettings) -> Policy:
    return Policy(
        link_base_url=settings.public_base_url,
        mail_from=settings.mail_from,
        magic_link_ttl=timedelta(seconds=settings.magic_link_ttl_seconds),
        refresh_ttl=timedelta(seconds=settings.refresh_token_ttl_seconds),
        magic_link_window_seconds=settings.magic_link_window_seconds,
        magic_links_per_email=settings.magic_links_per_email,
        magic_links_per_ip=settings.magic_links_per_ip,
        ip_window_seconds=settings.ip_window_seconds,
        verifications_per_ip=settings.verifications_per_ip,
        guests_per_ip=settings.guests_per_ip,
    )


def create_app(settings: AuthSettings | None = None, *, mailer: Mailer | None = None) -> FastAPI:
    settings = settings or load()
    runtime = Runtime("auth", settings, use_redis=True)
    assert runtime.redis is not None
    keys = load_key_ring(settings)
    access_tokens = AccessTokens(
        keys, issuer=settings.issuer, audience=settings.audience, ttl_seconds=settings.access_token_ttl_seconds
    )
    # The service checks its own tokens (/me, a guest presenting itself) against its own keys, without HTTP.
    verifier = JwtVerifier(
        keys.verification_keys(), issuer=settings.issuer, audience=settings.audience, algorithms=keys.algorithms()
    )
    redis = runtime.redis
    # Long enough that no token issued before the erasure outlives the refusal, clock leeway included.
    revocation_seconds = settings.access_token_ttl_seconds + 300

    async def revoke_tokens(user_ids: Sequence[UUID]) -> None:
        try:
            await revoke_users(redis, user_ids, revocation_seconds)
        except RedisError:
            raise Unavailable() from None

    handlers = AuthHandlers(
        runtime.database,
        access_tokens,
        mailer or SmtpMailer(settings),
        RedisRateLimiter(runtime.redis, settings.redis_key_prefix),
        policy_of(settings),
        revoke_tokens,
    )
    app = build_app(runtime, "Orrery auth", [auth_router(handlers, keys, verifier, settings.trusted_proxies)])
    app.state.handlers = handlers
    return app
