"""Keys fetched from the issuer's JWKS over HTTP: cached, refetched for new kids at a bounded rate."""

from __future__ import annotations

import asyncio

import pytest

from orrery_shared.auth import JwksKeySource, JwtSettings, JwtVerifier, KeysUnavailable, UnknownKid

from .conftest import JwksServer, SigningKey, Tokens


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def verifier(server: JwksServer, clock: Clock, **options: float) -> JwtVerifier:
    source = JwksKeySource(
        server.url,
        clock=clock,
        cache_seconds=options.get("cache_seconds", 300),
        min_refresh_seconds=options.get("min_refresh_seconds", 10),
    )
    return JwtVerifier(source)


async def test_keys_are_fetched_once_and_served_from_the_cache(
    jwks_server: JwksServer, signing_key: SigningKey, tokens: Tokens
) -> None:
    jwks_server.keys = [signing_key.jwk]
    v = verifier(jwks_server, Clock())
    for _ in range(20):
        await v.verify(tokens.sign())
    assert jwks_server.fetches == 1
    await v.aclose()


async def test_concurrent_first_verifications_share_one_fetch(
    jwks_server: JwksServer, signing_key: SigningKey, tokens: Tokens
) -> None:
    jwks_server.keys = [signing_key.jwk]
    v = verifier(jwks_server, Clock())
    await asyncio.gather(*(v.verify(tokens.sign()) for _ in range(25)))
    assert jwks_server.fetches == 1
    await v.aclose()


async def test_an_unknown_kid_triggers_at_most_one_refresh_per_interval(
    jwks_server: JwksServer, signing_key: SigningKey, tokens: Tokens
) -> None:
    jwks_server.keys = [signing_key.jwk]
    clock = Clock()
    v = verifier(jwks_server, clock, min_refresh_seconds=10)
    await v.verify(tokens.sign())
    clock.now += 11
    for _ in range(50):
        with pytest.raises(UnknownKid):
            await v.verify(tokens.sign(key=SigningKey()))
    assert jwks_server.fetches == 2
    clock.now += 11
    with pytest.raises(UnknownKid):
        await v.verify(tokens.sign(key=SigningKey()))
    assert jwks_server.fetches == 3
    await v.aclose()


async def test_a_key_rotated_in_is_picked_up_by_refetching_on_its_unknown_kid(
    jwks_server: JwksServer, signing_key: SigningKey, tokens: Tokens
) -> None:
    jwks_server.keys = [signing_key.jwk]
    clock = Clock()
    v = verifier(jwks_server, clock)
    await v.verify(tokens.sign())
    clock.now += 30
    rotated = SigningKey()
    jwks_server.keys = [rotated.jwk, signing_key.jwk]
    assert (await v.verify(tokens.sign(key=rotated))).name == "Zorblax"
    assert (await v.verify(tokens.sign())).name == "Zorblax"
    assert jwks_server.fetches == 2
    await v.aclose()


async def test_the_cache_expires_and_keys_are_refetched(
    jwks_server: JwksServer, signing_key: SigningKey, tokens: Tokens
) -> None:
    jwks_server.keys = [signing_key.jwk]
    clock = Clock()
    v = verifier(jwks_server, clock, cache_seconds=60)
    await v.verify(tokens.sign())
    clock.now += 61
    await v.verify(tokens.sign())
    assert jwks_server.fetches == 2
    await v.aclose()


async def test_the_last_keys_stay_in_use_while_the_issuer_is_down(
    jwks_server: JwksServer, signing_key: SigningKey, tokens: Tokens
) -> None:
    jwks_server.keys = [signing_key.jwk]
    clock = Clock()
    v = verifier(jwks_server, clock, cache_seconds=60)
    await v.verify(tokens.sign())
    jwks_server.failing = True
    clock.now += 120
    for _ in range(10):
        assert (await v.verify(tokens.sign())).name == "Zorblax"
    assert jwks_server.fetches == 2  # retried once, then backs off
    await v.aclose()


async def test_without_any_keys_an_unreachable_issuer_is_a_503_not_a_401(
    jwks_server: JwksServer, tokens: Tokens
) -> None:
    jwks_server.failing = True
    v = verifier(jwks_server, Clock())
    with pytest.raises(KeysUnavailable) as caught:
        await v.verify(tokens.sign())
    assert caught.value.status == 503
    await v.aclose()


async def test_settings_without_static_keys_fetch_from_the_configured_url(
    jwks_server: JwksServer, signing_key: SigningKey, tokens: Tokens
) -> None:
    jwks_server.keys = [signing_key.jwk]
    v = JwtVerifier.from_settings(JwtSettings(jwks_url=jwks_server.url))
    assert isinstance(v.keys, JwksKeySource)
    assert (await v.verify(tokens.sign())).name == "Zorblax"
    await v.aclose()
