"""Errors as JSON `{"error": {"code", "message"}}` with the right status; never a stack trace to a client."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orrery_shared.text import unstorable_text

log = logging.getLogger(__name__)

# The largest value of a PostgreSQL `integer`: every integer a request may carry (path, query, body) is bounded by
# it where it reaches such a column, so a larger one is a 422, not a database error.
PG_INT_MAX = 2**31 - 1

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(Exception):
    """Raise from a route to answer `status` with a stable machine-readable `code`."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = _CODES.get(exc.status_code, "error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return JSONResponse(error_body("invalid", "request validation failed", fields=fields), 422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return JSONResponse(error_body("internal", "internal error"), 500)


class BodyLimit:
    """Answers 413 to a request body larger than `max_bytes`, declared or streamed, before it is parsed: no route
    of any service reads more than that into memory (every service's app has it, see orrery_shared.service)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # An HTTPException, so FastAPI's body reading passes it on to the JSON error handler.
                    raise HTTPException(413, f"the request body exceeds {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(error_body("too_large", f"the request body exceeds {self.max_bytes} bytes"), 413)
        await response(scope, receive, send)


class StorableText:
    """Answers 422 `invalid` to a request whose JSON body, query or path holds text PostgreSQL cannot store (see
    orrery_shared.text). Inside BodyLimit, so the body it reads to check is already capped; the app then reads
    the same bytes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if b"%00" in scope.get("raw_path", b"") or b"%00" in (scope.get("query_string") or b""):
            await self._refuse(scope, receive, send, "the address contains the NUL character")
            return
        headers = dict(scope.get("headers") or [])
        if b"json" not in headers.get(b"content-type", b""):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            try:
                message = await receive()
            except HTTPException as refused:  # BodyLimit: the body passed the cap while it was read here
                code = _CODES.get(refused.status_code, "error")
                response = JSONResponse(error_body(code, str(refused.detail)), refused.status_code)
                await response(scope, receive, send)
                return
            if message["type"] != "http.request":
                await self.app(scope, _replay(message, receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = _body_problem(body)
        if problem is not None:
            await self._refuse(scope, receive, send, problem)
            return
        await self.app(scope, _replay({"type": "http.request", "body": body, "more_body": False}, receive), send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, message: str) -> None:
        response = JSONResponse(error_body("invalid", message), 422)
        await response(scope, receive, send)


def _body_problem(body: bytes) -> str | None:
    # Only the escapes can spell what is refused (raw NUL bytes are not valid JSON text): most bodies skip parsing.
    if b"\\u" not in body:
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None  # not JSON: the route answers that in its own words
    found = unstorable_text(document)
    return None if found is None else f"{found[0]} {found[1]}"


def _replay(first: Message, receive: Receive) -> Receive:
    """A receive that hands out `first` (what was read already), then goes on with the original."""
    pending: list[Message] = [first]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
