"""What the gateway checks of an HTTP request before any route reads it.

Every route under `/api` but sign-in needs a bearer token. It is verified here, before a byte of the body is
read, so an anonymous client cannot make the gateway take in (and parse) a body at all; the routes then find the
caller in `request.state.principal`. Bodies of signed-in callers are capped by the service-wide body limit
(orrery_shared.http.BodyLimit).
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from orrery_shared.auth import JwtVerifier, authenticate
from orrery_shared.http import ApiError, error_body

OPEN_PREFIXES = ("/api/auth/",)


def authorization_of(scope: Scope) -> str | None:
    """The Authorization header, or a `?access_token=` (<img src> and download links cannot send headers)."""
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            return str(value.decode("latin-1"))
    query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
    tokens = query.get("access_token")
    return f"Bearer {tokens[0]}" if tokens else None


class AuthenticateFirst:
    def __init__(self, app: ASGIApp, verifier: JwtVerifier) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/api/") or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        try:
            principal = await authenticate(self.verifier, authorization_of(scope))
        except ApiError as error:
            response = JSONResponse(error_body(error.code, error.message), error.status, headers=error.headers)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)
