"""FastAPI dependencies turning `Authorization: Bearer <token>` into a Principal, or a JSON 401."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from orrery_shared.auth.errors import MalformedToken, MissingToken, TokenError
from orrery_shared.auth.principal import Principal
from orrery_shared.auth.verifier import JwtVerifier
from orrery_shared.http import ApiError

STATE_KEY = "jwt_verifier"


def install_verifier(app: FastAPI, verifier: JwtVerifier) -> None:
    """Make `verifier` the one `current_principal` and `optional_principal` use in `app`."""
    setattr(app.state, STATE_KEY, verifier)


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer` header value; raises MissingToken or MalformedToken."""
    if not authorization:
        raise MissingToken("an Authorization: Bearer token is required")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise MalformedToken("the Authorization header must be `Bearer <token>`")
    return token.strip()


def api_error(error: TokenError) -> ApiError:
    """The HTTP answer for a refused token: 401 (or 503 when keys are unavailable) with the error's code."""
    headers = {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{error.code}"'}
    if error.status != 401:
        headers = {"Retry-After": "1"}
    return ApiError(error.status, error.code, error.message, headers=headers)


async def authenticate(verifier: JwtVerifier, authorization: str | None) -> Principal:
    """Verify an Authorization header value; raises ApiError (401/503) for the edge to answer."""
    try:
        return await verifier.verify(bearer_token(authorization))
    except TokenError as error:
        raise api_error(error) from None


def _verifier_of(request: Request) -> JwtVerifier:
    verifier = getattr(request.app.state, STATE_KEY, None)
    if not isinstance(verifier, JwtVerifier):
        raise RuntimeError("no JwtVerifier installed; call install_verifier(app, verifier)")
    return verifier


async def current_principal(request: Request) -> Principal:
    """Dependency: the caller's principal (401 when the bearer token is missing or refused)."""
    return await authenticate(_verifier_of(request), request.headers.get("authorization"))


async def optional_principal(request: Request) -> Principal | None:
    """Dependency: the caller's principal, or None without an Authorization header (a bad token is still 401)."""
    authorization = request.headers.get("authorization")
    if authorization is None:
        return None
    return await authenticate(_verifier_of(request), authorization)


def principal_dependency(verifier: JwtVerifier) -> Callable[[Request], Awaitable[Principal]]:
    """A required-principal dependency bound to `verifier` rather than the app's installed one."""

    async def dependency(request: Request) -> Principal:
        return await authenticate(verifier, request.headers.get("authorization"))

    return dependency


def optional_principal_dependency(verifier: JwtVerifier) -> Callable[[Request], Awaitable[Principal | None]]:
    """Like `principal_dependency`, but None when the request has no Authorization header."""

    async def dependency(request: Request) -> Principal | None:
        authorization = request.headers.get("authorization")
        return None if authorization is None else await authenticate(verifier, authorization)

    return dependency


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]
