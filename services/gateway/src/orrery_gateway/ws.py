"""The WebSocket endpoint: one session per socket, translating frames into commands and replies into frames."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from fastapi import WebSocket
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect, WebSocketState

from orrery_gateway import turns
from orrery_gateway.context import Gateway
from orrery_gateway.hub import Connection
from orrery_gateway.protocol import (
    CLIENT_FRAME,
    CLIENT_TYPES,
    Cancel,
    Edit,
    Message,
    Ping,
    Resume,
    Rework,
    Select,
    Spin,
    StartConversation,
    error,
)
from orrery_gateway.submit import (
    KnownConversation,
    Submitted,
    conversation_id_of,
    existing_conversation,
    new_conversation,
    not_found,
    submit_spin,
    submit_turn,
)
from orrery_shared.auth import Principal, TokenError
from orrery_shared.events import TurnMode
from orrery_shared.http import ApiError
from orrery_shared.text import unstorable_text

log = logging.getLogger(__name__)
# Served by `serve`, which the app calls straight from its outermost ASGI callable: an idle socket then holds
# none of the HTTP middleware stack's wrappers, exit stacks and coroutine frames, a few KiB each across
# thousands of sockets.
PATHS = ("/ws", "/ws/chat")

CLOSE_UNAUTHORIZED = 4401
CLOSE_IDLE = 4408
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TOO_MANY_SOCKETS = 4429
CLOSE_TRY_AGAIN_LATER = 1013


def route_path(scope: Scope) -> str:
    """The path below the app's root path, as routes see it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


async def serve(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI app of the socket paths. An unexpected failure is logged here and the client hears a plain
    close (1011), never the error; one before the handshake is answered by the server with a bare 500."""
    websocket = WebSocket(scope, receive=receive, send=send)
    try:
        await websocket_endpoint(websocket)
    except WebSocketDisconnect:
        return  # the peer left while a frame was being sent
    except Exception:
        if websocket.application_state is WebSocketState.CONNECTING:
            raise
        log.exception("socket failed", extra={"path": scope.get("path")})
        if websocket.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close(CLOSE_INTERNAL_ERROR, "internal error")


def credentials(websocket: WebSocket) -> tuple[str | None, str | None]:
    """The access token and the subprotocol to echo: `Sec-WebSocket-Protocol: bearer, <token>` or `?token=`."""
    offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    if offered:
        token = offered[-1]
        return token, ("bearer" if offered[0].lower() == "bearer" and len(offered) > 1 else token)
    return websocket.query_params.get("token"), None


def forget_handshake(websocket: WebSocket) -> None:
    """Drop what only the handshake needed: its headers, query string and offered subprotocols (the access
    token among them). An idle socket then keeps the token once, as its session's `authorization`."""
    scope = websocket.scope
    scope["headers"] = ()
    scope["query_string"] = b""
    scope["subprotocols"] = ()
    vars(websocket).pop("_headers", None)  # Starlette's parsed copies, made on first use
    vars(websocket).pop("_query_params", None)


def lean(principal: Principal) -> Principal:
    """The principal with only the claims a socket reads again (expiry, token id), not every verified one."""
    claims = principal.claims
    return Principal(
        principal.user_id, principal.name, principal.is_guest, {"exp": claims["exp"], "jti": claims["jti"]}
    )


async def websocket_endpoint(websocket: WebSocket) -> None:
    gw: Gateway = websocket.app.state.gateway
    token, subprotocol = credentials(websocket)
    try:
        principal = lean(await gw.verifier.verify(token or ""))
    except TokenError as refused:
        await websocket.accept(subprotocol=subprotocol)
        await websocket.close(CLOSE_UNAUTHORIZED, refused.code)
        return
    try:
        erased = await gw.revoked(principal.user_id)
    except Exception:
        await websocket.accept(subprotocol=subprotocol)
        await websocket.close(CLOSE_TRY_AGAIN_LATER, "unavailable")
        return
    if erased:
        await websocket.accept(subprotocol=subprotocol)
        await websocket.close(CLOSE_UNAUTHORIZED, "user_not_found")
        return
    if gw.hub.closing:
        await websocket.accept(subprotocol=subprotocol)
        await websocket.close(1001, "server shutting down")
        return
    lease = gw.sockets.new_lease()
    if not await gw.sockets.admit(principal.user_id, lease):
        await websocket.accept(subprotocol=subprotocol)
        await websocket.close(CLOSE_TOO_MANY_SOCKETS, "too many sockets")
        return
    try:
        await websocket.accept(subprotocol=subprotocol)
        forget_handshake(websocket)
        connection = Connection(websocket, principal.user_id, lease)
        session = Session(gw, connection, principal, f"Bearer {token}")
        del token, subprotocol  # this frame lives as long as the socket
        gw.hub.add(connection)
        try:
            await session.run()
        finally:
            gw.hub.remove(connection)
    finally:
        await gw.sockets.release(principal.user_id, lease)


class Session:
    __slots__ = ("authorization", "connection", "conversations", "current", "gw", "principal")

    def __init__(self, gw: Gateway, connection: Connection, principal: Principal, authorization: str) -> None:
        self.gw = gw
        self.connection = connection
        self.principal = principal
        self.authorization = authorization
        self.conversations: dict[UUID, KnownConversation] = {}
        self.current: UUID | None = None

    async def run(self) -> None:
        websocket, settings = self.connection.websocket, self.gw.settings
        while True:
            try:
                async with asyncio.timeout(settings.idle_timeout_seconds):
                    message = await websocket.receive()
            except TimeoutError:
                await self.connection.close(CLOSE_IDLE, "idle")
                return
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            if self.principal.expires_at < datetime.now(UTC):
                await self.connection.close(CLOSE_UNAUTHORIZED, "expired")
                return
            if await self.erased():
                await self.connection.close(CLOSE_UNAUTHORIZED, "user_not_found")
                return
            raw = message.get("text")
            if raw is None:
                raw = (message.get("bytes") or b"").decode(errors="replace")
            if len(raw) > settings.max_frame_bytes:
                await self.send(error("too_large", f"frames are limited to {settings.max_frame_bytes} bytes"))
                continue
            await self.handle(raw)

    async def send(self, frame: dict[str, Any]) -> bool:
        return await self.connection.send(frame)

    async def erased(self) -> bool:
        """Whether the user erased their account since the socket opened (its other sockets included)."""
        try:
            return await self.gw.revoked(self.principal.user_id)
        except Exception:
            return False

    async def handle(self, raw: str) -> None:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
            await self.send(error("bad_json", "frames must be JSON objects"))
            return
        if not isinstance(data, dict) or data.get("type") not in CLIENT_TYPES:
            kind = data.get("type") if isinstance(data, dict) else None
            await self.send(
                error("unknown_type", f"unknown frame type {kind!r}; expected one of {', '.join(CLIENT_TYPES)}")
            )
            return
        if (unstorable := unstorable_text(data)) is not None:
            where, why = unstorable
            await self.send(error("invalid", f"invalid {data['type']} frame: {where} {why}"))
            return
        try:
            frame = CLIENT_FRAME.validate_python(data)
        except ValidationError as invalid:
            details = [{"loc": [str(p) for p in e["loc"][1:]], "msg": e["msg"]} for e in invalid.errors()]
            await self.send(error("invalid", f"invalid {data['type']} frame", fields=details))
            return
        try:
            await self.dispatch(frame)
        except ApiError as refused:
            extra = {}
            if refused.code == "rate_limited" and refused.headers:
                extra["retry_after"] = int(refused.headers["Retry-After"])
            await self.send(error(refused.code, refused.message, **extra))
        except Exception:
            # A dependency failed (Redis, Kafka, a service): this request fails, the socket and its other
            # replies carry on, and the client hears a plain error it may retry.
            log.exception("frame failed", extra={"type": data["type"], "user_id": str(self.principal.user_id)})
            await self.send(error("unavailable", "the request could not be handled right now; try again"))

    async def dispatch(self, frame: object) -> None:
        if isinstance(frame, Ping):
            await self.send({"type": "pong"})
        elif isinstance(frame, Spin):
            request_id = await submit_spin(self.gw, self.principal, frame.traits)
            await self.send({"type": "character.generating", "request_id": str(request_id)})
        elif isinstance(frame, StartConversation):
            await self.start_conversation(frame)
        elif isinstance(frame, Message):
            await self.message(frame)
        elif isinstance(frame, Rework):
            await self.rework(frame)
        elif isinstance(frame, Select):
            await self.select(frame)
        elif isinstance(frame, Cancel):
            if not await turns.owned_by(self.gw.redis, frame.turn_id, self.principal.user_id):
                raise ApiError(404, "not_found", "no such turn")
            await turns.request_cancel(self.gw.redis, frame.turn_id)
        elif isinstance(frame, Resume):
            waits = self.gw.settings.turn_timeout_seconds
            lookup = functools.partial(self.gw.upstreams.turn, self.authorization)
            await turns.followable(self.gw.redis, frame.turn_id, self.principal.user_id, waits, lookup)
            self.relay(frame.turn_id, frame.after_seq)

    async def start_conversation(self, frame: StartConversation) -> None:
        if frame.conversation_id is not None:
            known = self.conversations.get(frame.conversation_id) or await existing_conversation(
                self.gw, self.principal, self.authorization, frame.conversation_id
            )
            character = await self.gw.upstreams.character(self.authorization, known.character_id) or {}
        elif frame.character_id is not None:
            known, character = await new_conversation(
                self.gw, self.principal, self.authorization, frame.character_id, frame.project_id
            )
        else:
            raise ApiError(422, "invalid", "start_conversation needs a character_id or a conversation_id")
        self.conversations[known.conversation_id] = known
        self.current = known.conversation_id
        await self.send(
            {
                "type": "conversation.started",
                "conversation_id": str(known.conversation_id),
                "project_id": str(known.project_id) if known.project_id else None,
                "character": character,
                "greeting": character.get("greeting", ""),
            }
        )

    async def known(self, conversation_id: UUID) -> KnownConversation:
        """One of the caller's conversations, asked of chat (or Redis) once per socket."""
        known = self.conversations.get(conversation_id)
        if known is None:
            known = await existing_conversation(self.gw, self.principal, self.authorization, conversation_id)
            self.conversations[conversation_id] = known
        return known

    async def message(self, frame: Message) -> None:
        conversation_id = frame.conversation_id or self.current
        if conversation_id is None:
            raise ApiError(422, "invalid", "send start_conversation first, or name a conversation_id")
        known = await self.known(conversation_id)
        submitted = await submit_turn(self.gw, self.principal, known, frame.content, frame.client_msg_id)
        await self.accepted(submitted, frame.client_msg_id, "reply")

    async def rework(self, frame: Rework) -> None:
        """`regenerate`, `continue` or `edit`: a turn on an existing message of the caller's, in its conversation."""
        known = await self.known(await conversation_id_of(self.gw, self.authorization, frame.message_id))
        content = frame.content if isinstance(frame, Edit) else ""
        submitted = await submit_turn(
            self.gw, self.principal, known, content, frame.client_msg_id, mode=frame.type, message_id=frame.message_id
        )
        await self.accepted(submitted, frame.client_msg_id, frame.type)

    async def accepted(self, submitted: Submitted, client_msg_id: str | None, mode: TurnMode) -> None:
        """Say the turn is on its way, then relay its reply."""
        await self.send(
            {
                "type": "turn.accepted",
                "turn_id": str(submitted.turn_id),
                "client_msg_id": client_msg_id,
                "conversation_id": str(submitted.conversation.conversation_id),
                "mode": mode,
            }
        )
        self.relay(submitted.turn_id, 0)

    async def select(self, frame: Select) -> None:
        """Make the path through a message the active one of its conversation."""
        conversation_id = await conversation_id_of(self.gw, self.authorization, frame.message_id)
        selected = await self.gw.upstreams.select_branch(self.authorization, conversation_id, frame.message_id)
        if selected is None:  # deleted between the two calls
            raise not_found("message")
        await self.send(
            {
                "type": "branch.selected",
                "conversation_id": str(conversation_id),
                "active_leaf_id": selected["active_leaf_id"],
            }
        )

    def relay(self, turn_id: UUID, after_seq: int) -> None:
        """Forward the turn's stream to this socket in the background (replies and new frames interleave)."""
        self.gw.hub.track(asyncio.create_task(self._relay(turn_id, after_seq)))

    async def _relay(self, turn_id: UUID, after_seq: int) -> None:
        connection = self.connection
        connection.relaying.add(turn_id)
        try:
            settings = self.gw.settings
            frames = self.gw.streams.follow(
                turn_id, after_seq, settings.turn_timeout_seconds, settings.turn_delay_notice_seconds
            )
            async for frame in frames:
                if not await connection.send(frame):
                    return  # the client left; it may resume elsewhere with after_seq
        except turns.TurnSilent:
            await connection.send(
                {"type": "turn.failed", "turn_id": str(turn_id), "reason": "timeout", "retryable": True}
            )
        except Exception:
            log.exception("relay failed", extra={"turn_id": str(turn_id)})
            await connection.send(
                {"type": "turn.failed", "turn_id": str(turn_id), "reason": "unavailable", "retryable": True}
            )
        finally:
            connection.relaying.discard(turn_id)


def _failed(turn_id: UUID, reason: str) -> dict[str, Any]:
    return {"type": "turn.failed", "turn_id": str(turn_id), "reason": reason, "retryable": True}
