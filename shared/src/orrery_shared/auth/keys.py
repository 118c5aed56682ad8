"""Verification keys: a static set (JWKS or PEM) or a JWKS fetched over HTTP and cached."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import httpx
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from jwt import PyJWK
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.exceptions import PyJWKError

from orrery_shared.auth.errors import KeysUnavailable, UnknownKid

log = logging.getLogger(__name__)

# Symmetric algorithms (HS*) and `none` are absent on purpose: a verifier must never accept them.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)

PublicKey = ed25519.Ed25519PublicKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_THUMBPRINT_MEMBERS = {"OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 thumbprint (SHA-256, base64url): the key id every Orrery key is published under."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise ValueError(f"no thumbprint for key type {jwk.get('kty')!r}")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def algorithm_for_key(key: PublicKey | PrivateKey) -> str:
    """The JWS algorithm Orrery uses with a key of this type."""
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "EdDSA"
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise ValueError("RSA keys must have at least 2048 bits")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        try:
            return _EC_ALGORITHMS[key.curve.name]
        except KeyError:
            raise ValueError(f"unsupported elliptic curve {key.curve.name}") from None
    raise ValueError(f"unsupported key type {type(key).__name__}")


def public_jwk(key: PublicKey | PrivateKey) -> dict[str, Any]:
    """The public JWK of `key` with `kid` (its thumbprint), `alg` and `use`."""
    public = key.public_key() if isinstance(key, PrivateKey) else key
    alg = algorithm_for_key(public)
    jwk: dict[str, Any]
    if isinstance(public, ed25519.Ed25519PublicKey):
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    jwk.pop("key_ops", None)
    return {**jwk, "kid": jwk_thumbprint(jwk), "alg": alg, "use": "sig"}


def load_pem_keys(pem: str | bytes) -> list[PublicKey]:
    """Public keys from PEM text holding one or more PUBLIC KEY or PRIVATE KEY blocks."""
    text = pem.decode() if isinstance(pem, bytes) else pem
    keys: list[PublicKey] = []
    for block in text.split("-----END ")[:-1]:
        start = block.find("-----BEGIN ")
        if start < 0:
            raise ValueError("not PEM text")
        label = block[start + len("-----BEGIN ") :].split("-----", 1)[0]
        data = (block[start:] + "-----END " + label + "-----\n").encode()
        if "PRIVATE" in label:
            private = load_pem_private_key(data, password=None)
            if not isinstance(private, PrivateKey):
                raise ValueError(f"unsupported private key type {type(private).__name__}")
            keys.append(private.public_key())
        else:
            public = load_pem_public_key(data)
            if not isinstance(public, PublicKey):
                raise ValueError(f"unsupported public key type {type(public).__name__}")
            keys.append(public)
    if not keys:
        raise ValueError("no PEM key found")
    return keys


def parse_jwks(
    jwks: Mapping[str, Any] | str | bytes, algorithms: Iterable[str] = ASYMMETRIC_ALGORITHMS
) -> dict[str, PyJWK]:
    """The signing keys of a JWKS by kid, keeping only keys usable with `algorithms`."""
    document = json.loads(jwks) if isinstance(jwks, str | bytes) else jwks
    entries = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(entries, list):
        raise ValueError("a JWKS is an object with a `keys` array")
    allowed = set(algorithms) & ASYMMETRIC_ALGORITHMS
    keys: dict[str, PyJWK] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid or entry.get("kty") == "oct":
            continue
        try:
            key = PyJWK(entry)
        except PyJWKError as error:
            log.warning("ignoring an unusable JWKS key", extra={"kid": kid, "error": str(error)})
            continue
        if key.algorithm_name in allowed:
            keys[kid] = key
    return keys


class KeySource(Protocol):
    """Where a verifier finds the public key for a token's `kid`."""

    async def get(self, kid: str) -> PyJWK:
        """The key named `kid`; raises UnknownKid, or KeysUnavailable when keys cannot be obtained."""
        ...

    async def aclose(self) -> None:
        """Release connections, if any."""
        ...


class StaticKeys:
    """A fixed key set, for services that are configured with the public keys instead of fetching them."""

    def __init__(self, keys: Mapping[str, PyJWK]) -> None:
        if not keys:
            raise ValueError("a static key set needs at least one asymmetric signing key")
        self._keys = dict(keys)

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any] | str | bytes) -> StaticKeys:
        """From a JWKS document (as published at /.well-known/jwks.json)."""
        return cls(parse_jwks(jwks))

    @classmethod
    def from_pem(cls, pem: str | bytes) -> StaticKeys:
        """From PEM public (or private) keys; each is known by its RFC 7638 thumbprint, as the issuer names it."""
        return cls.from_jwks({"keys": [public_jwk(key) for key in load_pem_keys(pem)]})

    @property
    def kids(self) -> list[str]:
        """The key ids in the set."""
        return list(self._keys)

    async def get(self, kid: str) -> PyJWK:
        """The key named `kid`; raises UnknownKid."""
        try:
            return self._keys[kid]
        except KeyError:
            raise UnknownKid("the token is signed by a key this service does not know") from None

    async def aclose(self) -> None:
        """Nothing to release."""


class JwksKeySource:
    """A JWKS fetched over HTTP, cached for `cache_seconds`.

    A `kid` missing from the cache triggers a refetch (a key was rotated in), but at most once per
    `min_refresh_seconds`, so tokens with made-up key ids cannot turn the verifier into a load generator
    against the issuer. While the issuer is unreachable the last keys fetched stay in use.
    """

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient | None = None,
        algorithms: Iterable[str] = ASYMMETRIC_ALGORITHMS,
        cache_seconds: float = 300.0,
        min_refresh_seconds: float = 10.0,
        retry_seconds: float = 1.0,
        timeout: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._owns_client = client is None
        self._algorithms = frozenset(algorithms)
        self._cache_seconds = cache_seconds
        self._min_refresh = min_refresh_seconds
        self._retry = retry_seconds
        self._clock = clock
        self._keys: dict[str, PyJWK] | None = None
        self._fresh_until = float("-inf")
        self._last_attempt = float("-inf")
        self._last_failed = False
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def get(self, kid: str) -> PyJWK:
        """The key named `kid`, fetching the JWKS when the cache is stale or the kid is new (rate-limited)."""
        keys = self._keys
        if keys is not None and self._clock() < self._fresh_until:
            key = keys.get(kid)
            if key is not None:
                return key
        keys = await self._refresh_if_allowed(kid)
        key = keys.get(kid)
        if key is None:
            raise UnknownKid("the token is signed by a key the issuer does not publish")
        return key

    async def _refresh_if_allowed(self, kid: str) -> dict[str, PyJWK]:
        async with self._lock:
            now = self._clock()
            keys = self._keys
            fresh = keys is not None and now < self._fresh_until
            if fresh and keys is not None and kid in keys:
                return keys  # another caller refreshed while this one waited for the lock
            since_last = now - self._last_attempt
            if self._last_failed:
                may_fetch = since_last >= self._retry
            elif fresh:
                may_fetch = since_last >= self._min_refresh  # an unknown kid
            else:
                may_fetch = True  # never fetched, or the cache has expired
            if may_fetch:
                return await self._fetch()
            if keys is None:
                raise KeysUnavailable("the issuer's keys could not be fetched")
            return keys

    async def _fetch(self) -> dict[str, PyJWK]:
        self._last_attempt = self._clock()
        self.fetches += 1
        try:
            response = await self._client.get(self.url, headers={"Accept": "application/json"})
            response.raise_for_status()
            keys = parse_jwks(response.content, self._algorithms)
        except (httpx.HTTPError, ValueError) as error:
            self._last_failed = True
            log.warning("fetching the JWKS failed", extra={"url": self.url, "error": repr(error)})
            if self._keys is None:
                raise KeysUnavailable("the issuer's keys could not be fetched") from None
            return self._keys
        self._last_failed = False
        self._keys = keys
        self._fresh_until = self._clock() + self._cache_seconds
        return keys

    async def aclose(self) -> None:
        """Close the HTTP client if this source created it."""
        if self._owns_client:
            await self._client.aclose()
