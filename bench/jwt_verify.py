"""Access-token verifications per second of `orrery_shared.auth.JwtVerifier` on one core, against baselines.

Measured in one process pinned to one CPU, with the same EdDSA token, in interleaved rounds of a fixed time each;
the best round of each counts, so load from other processes on the machine disturbs the ratio less:

* raw Ed25519 signature check (`cryptography`): the floor no JWT library can beat;
* bare `jwt.decode` with the public key object, audience, issuer and leeway: the baseline;
* the verifier with static keys, and with a JWKS source whose cache is warm (the gateway's steady state).

The verifier's overhead is printed as a ratio to the baseline. Finishes in about 25 s.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519

from orrery_shared.auth import JwksKeySource, JwtVerifier, StaticKeys, public_jwk

ROUNDS = 5
SECONDS = 1.0
WARMUP = 0.2


def pin_to_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned (no sched_setaffinity)"


def measure(call: Callable[[], object]) -> float:
    end = time.perf_counter() + WARMUP
    while time.perf_counter() < end:
        call()
    n, start = 0, time.perf_counter()
    end = start + SECONDS
    while True:
        for _ in range(200):
            call()
        n += 200
        now = time.perf_counter()
        if now >= end:
            return n / (now - start)


async def measure_async(call: Callable[[], Awaitable[object]]) -> float:
    end = time.perf_counter() + WARMUP
    while time.perf_counter() < end:
        await call()
    n, start = 0, time.perf_counter()
    end = start + SECONDS
    while True:
        for _ in range(200):
            await call()
        n += 200
        now = time.perf_counter()
        if now >= end:
            return n / (now - start)


async def main() -> None:
    pinning = pin_to_one_core()
    key = ed25519.Ed25519PrivateKey.generate()
    jwk = public_jwk(key)
    now = int(time.time())
    claims = {
        "sub": str(uuid.uuid4()),
        "name": "Zorblax",
        "guest": False,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 3600,
        "iss": "orrery-auth",
        "aud": "orrery",
    }
    token = jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": jwk["kid"]})
    public = key.public_key()

    signing_input, _, signature_b64 = token.rpartition(".")
    signature = base64.urlsafe_b64decode(signature_b64 + "=" * (-len(signature_b64) % 4))

    def raw() -> None:
        public.verify(signature, signing_input.encode())

    def bare() -> object:
        return jwt.decode(token, public, algorithms=["EdDSA"], audience="orrery", issuer="orrery-auth", leeway=30)

    static = JwtVerifier(StaticKeys.from_jwks({"keys": [jwk]}))
    document = json.dumps({"keys": [jwk]}).encode()
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=document))
    source = JwksKeySource("http://auth.invalid/.well-known/jwks.json", client=httpx.AsyncClient(transport=transport))
    fetching = JwtVerifier(source)
    await fetching.verify(token)  # fills the cache; what follows is the steady state

    best = {"raw": 0.0, "bare": 0.0, "static": 0.0, "jwks": 0.0}
    for _ in range(ROUNDS):
        best["raw"] = max(best["raw"], measure(raw))
        best["bare"] = max(best["bare"], measure(bare))
        best["static"] = max(best["static"], await measure_async(lambda: static.verify(token)))
        best["jwks"] = max(best["jwks"], await measure_async(lambda: fetching.verify(token)))
    await fetching.aclose()
    baseline, with_static, with_jwks = best["bare"], best["static"], best["jwks"]

    print(f"JWT verification, EdDSA, one core ({pinning}), best of {ROUNDS} interleaved rounds of {SECONDS:.0f} s")
    print(f"  raw Ed25519 signature check      {best['raw']:>10,.0f} /s")
    print(f"  baseline: bare jwt.decode        {baseline:>10,.0f} /s")
    print(f"  JwtVerifier, static keys         {with_static:>10,.0f} /s   {with_static / baseline:.2f}x baseline")
    print(f"  JwtVerifier, JWKS cache warm     {with_jwks:>10,.0f} /s   {with_jwks / baseline:.2f}x baseline")
    print(f"  per verification: {1e6 / with_jwks:.1f} µs (baseline {1e6 / baseline:.1f} µs)")


if __name__ == "__main__":
    asyncio.run(main())
