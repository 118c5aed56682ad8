"""HTTP routes of the gateway: SSE and blocking chat, spins, and the services' APIs passed through."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import httpx
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from orrery_gateway import turns
from orrery_gateway.context import Gateway
from orrery_gateway.edge import admit, authorization_of
from orrery_gateway.export import chunks_of, export_archive
from orrery_gateway.public_routes import METHODS as ALL_METHODS
from orrery_gateway.public_routes import PublicRoutes, allow_header
from orrery_gateway.public_routes import document as public_document
from orrery_gateway.submit import (
    KnownConversation,
    Submitted,
    conversation_of_message,
    existing_conversation,
    new_conversation,
    rate_limited,
    submit_spin,
    submit_turn,
)
from orrery_gateway.upstream import HOP_HEADERS, Upstream
from orrery_shared.auth import Principal
from orrery_shared.events import TraitOverrides
from orrery_shared.http import PG_INT_MAX, ApiError
from orrery_shared.text import NOT_BLANK

router = APIRouter()


def gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


GatewayDep = Annotated[Gateway, Depends(gateway)]


def _authorization(request: Request) -> str | None:
    return authorization_of(request.scope)


async def caller(request: Request, gw: GatewayDep) -> Principal:
    # Verified before the route read anything (orrery_gateway.edge); verified here if a route is mounted elsewhere.
    principal = getattr(request.state, "principal", None)
    if isinstance(principal, Principal):
        return principal
    return await admit(gw.verifier, gw.revoked, _authorization(request))


Caller = Annotated[Principal, Depends(caller)]


# --- chat ---------------------------------------------------------------------------------------------


class _ChatRequest(BaseModel):
    # An unknown member is refused, so that a misspelt `session_id` does not start a new conversation unnoticed.
    model_config = ConfigDict(extra="forbid")

    session_id: UUID | None = None
    client_msg_id: str | None = Field(None, max_length=100)


class ChatReplyIn(_ChatRequest):
    """The story bot's chat request: `text` answered at the end of the conversation `session_id` (a new
    conversation when absent: with `character_id`, or else the first preset character)."""

    mode: Literal["reply"] = "reply"
    text: str = Field(max_length=100_000, pattern=NOT_BLANK)
    project_id: UUID | None = None
    character_id: UUID | None = None


class ChatRegenerateIn(_ChatRequest):
    """Another reply in place of the character's message `message_id`, as a new alternative beside it. The
    conversation is the message's; `session_id`, if given, must name it."""

    mode: Literal["regenerate"]
    message_id: UUID


class ChatContinueIn(_ChatRequest):
    """More of the character's message `message_id`: the reply is the text that extends it. The conversation is
    the message's; `session_id`, if given, must name it."""

    mode: Literal["continue"]
    message_id: UUID


class ChatEditIn(_ChatRequest):
    """A new alternative of the message `message_id` with `text` (an edited user message is answered anew, an
    edited message of the character is stored as it is). The conversation is the message's; `session_id`, if
    given, must name it."""

    mode: Literal["edit"]
    message_id: UUID
    text: str = Field(max_length=100_000, pattern=NOT_BLANK)


def _mode_of(body: Any) -> Any:
    """Which kind of request a body is: its `mode`, `reply` when it has none."""
    if isinstance(body, dict):
        return body.get("mode", "reply")
    return getattr(body, "mode", None)


ChatRework = ChatRegenerateIn | ChatContinueIn | ChatEditIn
# One of the four shapes, told apart by `mode` (absent: a reply), so that the schema says what each needs.
ChatIn = Annotated[
    Annotated[ChatReplyIn, Tag("reply")]
    | Annotated[ChatRegenerateIn, Tag("regenerate")]
    | Annotated[ChatContinueIn, Tag("continue")]
    | Annotated[ChatEditIn, Tag("edit")],
    Discriminator(_mode_of),
]


class ChatOut(BaseModel):
    reply: str
    status: str
    session_id: UUID
    project_id: UUID | None
    turn_id: UUID
    message_id: UUID


async def _conversation_for(
    gw: Gateway, principal: Principal, authorization: str, body: ChatReplyIn
) -> KnownConversation:
    if body.session_id is not None:
        return await existing_conversation(gw, principal, authorization, body.session_id)
    character_id = body.character_id or await _default_character(gw, authorization)
    known, _ = await new_conversation(gw, principal, authorization, character_id, body.project_id)
    return known


async def _default_character(gw: Gateway, authorization: str) -> UUID:
    """Without a character, a new session talks to the first preset (as the story bot had one voice)."""
    page = await gw.upstreams.characters.get_json("/characters", authorization, params={"limit": 1})
    presets = (page or {}).get("presets") or []
    if not presets:
        raise ApiError(422, "invalid", "character_id is required (no preset character is available)")
    return UUID(presets[0]["id"])


async def _submit(request: Request, gw: Gateway, principal: Principal, body: ChatReplyIn | ChatRework) -> Submitted:
    authorization = _authorization(request) or ""
    if isinstance(body, ChatReplyIn):
        conversation = await _conversation_for(gw, principal, authorization, body)
        return await submit_turn(gw, principal, conversation, body.text, body.client_msg_id)
    conversation = await conversation_of_message(gw, principal, authorization, body.message_id)
    if body.session_id is not None and body.session_id != conversation.conversation_id:
        raise ApiError(422, "invalid", "message_id is not a message of the conversation session_id")
    content = body.text if isinstance(body, ChatEditIn) else ""
    return await submit_turn(
        gw, principal, conversation, content, body.client_msg_id, mode=body.mode, message_id=body.message_id
    )


def _sse(data: dict[str, Any], event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


async def _reply_events(gw: Gateway, turn_id: UUID, after_seq: int, with_end: bool) -> AsyncIterator[bytes]:
    """A turn's reply as server-sent events after `after_seq`: `text`, `restart`, `error` (and `end` when
    `with_end`). Each carries its `id:` (`<turn_id>:<seq>`), so a client that lost the connection resumes exactly
    after it (`Last-Event-ID`)."""
    try:
        async for frame in gw.streams.follow(turn_id, after_seq, gw.settings.turn_timeout_seconds):
            event_id = f"{turn_id}:{frame['seq']}"
            if frame["type"] == "delta":
                yield _sse({"type": "text", "content": frame["text"]}, event_id)
            elif frame["type"] == "turn.restart":
                yield _sse({"type": "restart"}, event_id)
            elif frame["type"] == "turn.failed":
                error = {"code": "turn_failed", "message": frame["reason"], "retryable": frame["retryable"]}
                yield _sse({"type": "error", "error": error}, event_id)
            elif frame["type"] == "turn.done" and with_end:
                yield _sse({"type": "end", "status": frame["status"], "message_id": frame["message_id"]}, event_id)
    except turns.TurnSilent:
        yield _sse({"type": "error", "error": {"code": "timeout", "message": "the reply did not arrive"}})


SSE_EVENT = {
    "type": "object",
    "description": "one server-sent event; its `data` is a JSON object",
    "required": ["data"],
    "properties": {
        "data": {"type": "string", "contentMediaType": "application/json"},
        "event": {"type": "string"},
        "id": {"type": "string", "description": "`<turn_id>:<seq>`: send it back as `Last-Event-ID` to resume"},
    },
}
EVENT_STREAM: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"schema": SSE_EVENT}}, "description": "server-sent events"}
}


@router.post("/api/chat/stream", tags=["chat"], response_class=StreamingResponse, responses=EVENT_STREAM)
async def chat_stream(request: Request, body: ChatIn, gw: GatewayDep, principal: Caller) -> StreamingResponse:
    """Server-sent events: `text` frames as the reply streams, then `metadata`, then `done`. The body is a
    message (`mode` reply, the default) or, with `mode` and `message_id`, a regenerate, continue or edit of a
    message of the conversation (a continue streams the text added). A client that goes away does not stop the
    reply: it is generated and stored, and `GET /api/turns/{turn_id}/stream` (the turn is in the `X-Turn-Id`
    header) picks it up again; `POST /api/turns/{turn_id}/cancel` stops it."""
    submitted = await _submit(request, gw, principal, body)
    project_id = submitted.conversation.project_id
    watch = gw.hub.watch_project(project_id) if project_id else None

    async def frames() -> AsyncIterator[bytes]:
        try:
            async for event in _reply_events(gw, submitted.turn_id, 0, with_end=False):
                yield event
        finally:
            updated = watch.is_set() if watch else False
            if project_id:
                gw.hub.unwatch_project(project_id, watch)
        metadata = {
            "session_id": str(submitted.conversation.conversation_id),
            "project_id": str(project_id) if project_id else None,
            "dossier_updated": updated,
        }
        yield _sse({"type": "metadata", "metadata": metadata})
        yield _sse({"type": "done"})

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Turn-Id": str(submitted.turn_id)}
    return StreamingResponse(frames(), media_type="text/event-stream", headers=headers)


# `<turn_id>:<seq>` as this gateway writes `id:` lines, or a bare seq; nine digits stay below PG_INT_MAX.
LAST_EVENT_ID = r"^([0-9a-fA-F-]{36}:)?[0-9]{1,9}$"


def _resume_after(turn_id: UUID, last_event_id: str | None, after_seq: int | None) -> int:
    if after_seq is not None:
        return after_seq
    if not last_event_id:
        return 0
    named, _, seq = last_event_id.strip().rpartition(":")
    if named and named.lower() != str(turn_id):
        raise ApiError(404, "not_found", "Last-Event-ID names an event of another turn")
    return int(seq)


@router.get(
    "/api/turns/{turn_id}/stream",
    tags=["chat"],
    response_class=StreamingResponse,
    responses={**EVENT_STREAM, 410: {"description": "the reply is no longer kept (`gone`): read the messages"}},
)
async def turn_stream(
    request: Request,
    turn_id: UUID,
    gw: GatewayDep,
    principal: Caller,
    last_event_id: Annotated[str | None, Header(pattern=LAST_EVENT_ID)] = None,
    after_seq: Annotated[int | None, Query(ge=0, le=PG_INT_MAX)] = None,
) -> StreamingResponse:
    """A turn's reply as server-sent events, from its start or after `Last-Event-ID` (or `?after_seq=`): what an
    `EventSource` reconnecting, or a client that lost `POST /api/chat/stream`'s connection, needs. Ends with
    `end {status, message_id}` or `error`."""
    after = _resume_after(turn_id, last_event_id, after_seq)
    authorization = _authorization(request) or ""
    lookup = functools.partial(gw.upstreams.turn, authorization)
    await turns.followable(gw.redis, turn_id, principal.user_id, gw.settings.turn_timeout_seconds, lookup)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Turn-Id": str(turn_id)}
    events = _reply_events(gw, turn_id, after, with_end=True)
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


class CancelOut(BaseModel):
    turn_id: UUID
    status: str = "cancelling"


@router.post("/api/turns/{turn_id}/cancel", tags=["chat"], response_model=CancelOut, status_code=202)
async def cancel_turn(turn_id: UUID, gw: GatewayDep, principal: Caller) -> CancelOut:
    """Stop a reply (REST clients; sockets send `cancel`): it ends as `cancelled`, keeping what was streamed."""
    if not await turns.owned_by(gw.redis, turn_id, principal.user_id):
        raise ApiError(404, "not_found", "no such turn")
    await turns.request_cancel(gw.redis, turn_id)
    return CancelOut(turn_id=turn_id)


# Turns refused for what they name, as chat reports them: the client's to fix, not the platform's failure.
NOT_FOUND_REASONS = {
    "not_found": "conversation or project",
    "unknown_character": "character",
    "message_not_found": "message",
}
# A regenerate, continue or edit chat refuses for the message it names (`not_allowed: <why>`).
NOT_ALLOWED = "not_allowed"


def _turn_failed(reason: str) -> ApiError:
    if reason in NOT_FOUND_REASONS:
        return ApiError(404, "not_found", f"no such {NOT_FOUND_REASONS[reason]}")
    code, _, why = reason.partition(":")
    if code == NOT_ALLOWED:
        return ApiError(409, NOT_ALLOWED, why.strip() or "this cannot be done to that message")
    return ApiError(502, "turn_failed", reason)


@router.post(
    "/api/chat",
    tags=["chat"],
    response_model=ChatOut,
    responses={409: {"description": "the message cannot be regenerated, continued or edited so (`not_allowed`)"}},
)
async def chat(request: Request, body: ChatIn, gw: GatewayDep, principal: Caller) -> ChatOut:
    """Send a message and wait for the whole reply; or, with `mode` and `message_id`, regenerate, continue or
    edit a message of the conversation and wait for that reply (after a continue, `reply` is the text added)."""
    submitted = await _submit(request, gw, principal, body)
    parts: list[str] = []
    try:
        async for frame in gw.streams.follow(submitted.turn_id, 0, gw.settings.turn_timeout_seconds):
            if frame["type"] == "delta":
                parts.append(frame["text"])
            elif frame["type"] == "turn.restart":
                parts.clear()
            elif frame["type"] == "turn.failed":
                raise _turn_failed(frame["reason"])
            elif frame["type"] == "turn.done":
                return ChatOut(
                    reply="".join(parts),
                    status=frame["status"],
                    session_id=submitted.conversation.conversation_id,
                    project_id=submitted.conversation.project_id,
                    turn_id=submitted.turn_id,
                    message_id=UUID(frame["message_id"]),
                )
    except turns.TurnSilent:
        raise ApiError(504, "timeout", "the reply did not arrive in time") from None
    raise ApiError(502, "turn_failed", "the reply ended unexpectedly")


# --- characters ---------------------------------------------------------------------------------------


class SpinIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    traits: TraitOverrides | None = None


class SpinOut(BaseModel):
    request_id: UUID


@router.post("/api/characters/spin", tags=["characters"], response_model=SpinOut, status_code=202)
async def spin(gw: GatewayDep, principal: Caller, body: SpinIn | None = None) -> SpinOut:
    """Spin the roulette; `character.ready` (or `character.failed`) arrives on the user's sockets."""
    return SpinOut(request_id=await submit_spin(gw, principal, body.traits if body else None))


# --- pass-through -------------------------------------------------------------------------------------

PASSED_BACK = (
    "content-type",
    "etag",
    "cache-control",
    "last-modified",
    "retry-after",
    "www-authenticate",
    "location",
    "x-content-type-options",
    "content-security-policy",
    "content-disposition",
    "allow",
)


async def forward(
    request: Request, upstream: Upstream, path: str, extra_headers: dict[str, str] | None = None
) -> Response:
    """Relay a request to a service and its answer back, with the caller's credentials."""
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS and k.lower() != "cookie"}
    if (authorization := _authorization(request)) is not None:
        headers["authorization"] = authorization
    headers.update(extra_headers or {})
    params: list[tuple[str, str | int | float | bool | None]] = [
        (k, v) for k, v in request.query_params.multi_items() if k != "access_token"
    ]
    body = await request.body()  # at most the gateway's max_body_bytes (orrery_shared.http.BodyLimit)
    try:
        response = await upstream.client.request(request.method, path, params=params, headers=headers, content=body)
    except httpx.InvalidURL:
        raise ApiError(400, "bad_request", "the path cannot be passed on") from None
    except httpx.HTTPError:
        raise ApiError(503, "unavailable", f"the {upstream.name} service is unreachable") from None
    if response.status_code == 503:
        pass  # "unavailable" (a model down, say) is the service's own answer: the client should see it
    elif response.status_code >= 500:
        raise ApiError(502, "upstream_error", f"the {upstream.name} service failed; try again")
    kept = {k: v for k, v in response.headers.items() if k.lower() in PASSED_BACK}
    return Response(response.content, response.status_code, headers=kept)


def _forwarded_for(request: Request) -> dict[str, str]:
    peer = request.client.host if request.client else ""
    chain = request.headers.get("x-forwarded-for")
    return {"x-forwarded-for": f"{chain}, {peer}" if chain else peer}


PUBLIC = PublicRoutes(public_document())
AUTH_ACTIONS = {"magic-link", "verify", "guest", "refresh", "logout"}


# The passed-on routes are documented by the auth service's own models (scripts/public_openapi.py).
@router.api_route("/api/auth/{rest:path}", methods=["POST"], include_in_schema=False)
async def auth_api(request: Request, rest: str, gw: GatewayDep) -> Response:
    """Sign-in: magic-link, verify, guest, refresh, logout (see the auth service's documentation)."""
    if rest not in AUTH_ACTIONS:
        raise ApiError(404, "not_found", f"no such sign-in action {rest!r}")
    return await forward(request, gw.upstreams.auth, f"/auth/{rest}", _forwarded_for(request))


@router.api_route("/api/me", methods=["GET", "DELETE"], include_in_schema=False)
async def me(request: Request, gw: GatewayDep) -> Response:
    """The signed-in user (GET), or erase them and everything every service holds of them (DELETE)."""
    return await forward(request, gw.upstreams.auth, "/me", _forwarded_for(request))


@router.get(
    "/api/me/export",
    tags=["auth"],
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            "description": "the user's data as a zip archive",
        }
    },
)
async def export_me(request: Request, gw: GatewayDep, principal: Caller) -> StreamingResponse:
    """Everything the platform holds of the caller as one zip archive: characters as cards, chats as JSONL,
    dossiers, usage (see orrery_gateway.export for the layout)."""
    await rate_limited(gw, gw.export_limit, principal.user_id)
    authorization = _authorization(request)
    assert authorization is not None  # the edge let the request in
    archive, size = await export_archive(gw.upstreams, authorization)
    day = datetime.now(UTC).strftime("%Y%m%d")
    headers = {
        "Content-Disposition": f'attachment; filename="orrery-export-{day}.zip"',
        "Content-Length": str(size),
        "Cache-Control": "no-store",
    }
    return StreamingResponse(chunks_of(archive), media_type="application/zip", headers=headers)


@router.get("/.well-known/jwks.json", include_in_schema=False)
async def jwks(request: Request, gw: GatewayDep) -> Response:
    return await forward(request, gw.upstreams.auth, "/.well-known/jwks.json")


def _plain_path(request: Request, rest: str) -> bool:
    """Whether the path names something under its resource and nothing else: no `.` or `..` segment and no
    encoded slash or backslash, which the service (or the HTTP client on the way) would resolve to a route
    outside the resource (`/api/conversations/..%2Fmetrics` is not chat's /metrics)."""
    raw = request.scope.get("raw_path", b"").lower()
    if b"%2f" in raw or b"%5c" in raw or "\\" in rest:
        return False
    return not any(segment in (".", "..") for segment in rest.split("/"))


# Declared last: the specific routes above take precedence. Every method reaches it, so that a method a public
# path does not have is answered 405 with the methods it has.
@router.api_route("/api/{resource}", methods=list(ALL_METHODS), include_in_schema=False)
@router.api_route("/api/{resource}/{rest:path}", methods=list(ALL_METHODS), include_in_schema=False)
async def service_api(request: Request, resource: str, gw: GatewayDep, principal: Caller, rest: str = "") -> Response:
    """`/api/characters|conversations|dossiers/...` → the owning service, for the paths and methods of the public
    document only (the token checked here first)."""
    allowed = PUBLIC.methods(request.url.path) if _plain_path(request, rest) else frozenset()
    if not allowed:
        raise ApiError(404, "not_found", f"no such resource {request.url.path}")
    if request.method not in allowed:
        raise ApiError(
            405,
            "method_not_allowed",
            f"{request.method} is not a method of this path",
            headers={"Allow": allow_header(allowed)},
        )
    upstream = gw.upstreams.by_prefix.get(resource)
    if upstream is None:  # a path of the gateway's own, in a method another of its routes serves
        raise ApiError(404, "not_found", f"no such resource {request.url.path}")
    if request.method == "POST" and rest.rstrip("/") == "import":
        # Imports are the largest bodies and the most work a request can ask for: limited per user.
        await rate_limited(gw, gw.import_limit, principal.user_id)
    # Passed on as the client encoded it (less `/api`): decoded, a path with control characters could not be.
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    return await forward(request, upstream, raw_path.decode("latin-1").removeprefix("/api"))
