"""What the gateway checks of an HTTP request before any route reads it.

Every route under `/api` but sign-in needs a bearer token. It is verified here, before a byte of the body is
read, so an anonymous client cannot make the gateway take in (and parse) a body at all; the routes then find the
caller in `request.state.principal`. Bodies of signed-in callers are capped by the service-wide body limit
(orrery_shared.http.BodyLimit).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs
from uuid import UUID

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from orrery_shared.auth import JwtVerifier, Principal, authenticate
from orrery_shared.http import ApiError, error_body

# Whether a user's tokens are refused before they expire (an erased account); see orrery_shared.auth.revoked.
Revoked = Callable[[UUID], Awaitable[bool]]

OPEN_PREFIXES = ("/api/auth/",)


def authorization_of(scope: Scope) -> str | None:
    """The Authorization header, or a `?access_token=` (<img src> and download links cannot send headers)."""
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            return str(value.decode("latin-1"))
    query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
    tokens = query.get("access_token")
    return f"Bearer {tokens[0]}" if tokens else None


async def admit(verifier: JwtVerifier, revoked: Revoked, authorization: str | None) -> Principal:
    """The caller of a valid token whose user still exists; raises ApiError (401, or 503 if that cannot be told)."""
    principal = await authenticate(verifier, authorization)
    try:
        refused = await revoked(principal.user_id)
    except Exception:
        raise ApiError(503, "unavailable", "sign-in cannot be checked right now; try again") from None
    if refused:
        raise ApiError(
            401,
            "user_not_found",
            "this user no longer exists; sign in again",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token", error_description="user_not_found"'},
        )
    return principal


class AuthenticateFirst:
    def __init__(self, app: ASGIApp, verifier: JwtVerifier, revoked: Revoked) -> None:
        self.app = app
        self.verifier = verifier
        self.revoked = revoked

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/api/") or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        try:
            principal = await admit(self.verifier, self.revoked, authorization_of(scope))
        except ApiError as error:
            response = JSONResponse(error_body(error.code, error.message), error.status, headers=error.headers)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)
