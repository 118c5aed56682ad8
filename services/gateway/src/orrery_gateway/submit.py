"""Turning a user's intent into a command on Kafka: a chat turn or a roulette spin (WebSocket, SSE and REST)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from uuid import UUID, uuid4

from orrery_gateway import turns
from orrery_gateway.context import Gateway
from orrery_gateway.limits import Limit
from orrery_shared import telemetry
from orrery_shared.auth import Principal
from orrery_shared.events import CharacterRequested, ChatTurnRequested, TraitOverrides, TurnMode
from orrery_shared.http import ApiError
from orrery_shared.kafka import publish_event


@dataclass(frozen=True)
class KnownConversation:
    conversation_id: UUID
    character_id: UUID
    project_id: UUID | None


@dataclass(frozen=True)
class Submitted:
    turn_id: UUID
    conversation: KnownConversation


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"no such {what}")


async def rate_limited(gw: Gateway, limit: Limit, user_id: UUID) -> None:
    verdict = await gw.limiter.hit(limit, str(user_id))
    if not verdict.allowed:
        raise ApiError(
            429,
            "rate_limited",
            f"too many {limit.name}; try again in {verdict.retry_after}s",
            headers={"Retry-After": str(verdict.retry_after)},
        )


def checked_content(gw: Gateway, content: str) -> str:
    text = content.strip()
    if not text:
        raise ApiError(422, "invalid", "the message is empty")
    if len(text) > gw.settings.max_message_chars:
        raise ApiError(413, "too_large", f"messages are limited to {gw.settings.max_message_chars} characters")
    return text


# A conversation exists in chat only from its first turn on. Until then the gateway keeps what it was started
# with in Redis, so its first message may come through any socket of any gateway instance (a client that
# reconnects between starting a conversation and its first message keeps it).
NEW_CONVERSATION_TTL_SECONDS = 24 * 3600


def _new_conversation_key(conversation_id: UUID) -> str:
    return f"conversation:{conversation_id}:new"


async def existing_conversation(
    gw: Gateway, principal: Principal, authorization: str, conversation_id: UUID
) -> KnownConversation:
    """A conversation the caller owns: one chat knows, or one the caller started that has no turn yet (404
    otherwise)."""
    found = await gw.upstreams.conversation(authorization, conversation_id)
    if found is not None:
        return KnownConversation(conversation_id, UUID(found["character"]["character_id"]), UUID(found["project_id"]))
    raw: bytes | None = await gw.redis.get(_new_conversation_key(conversation_id))  # type: ignore[assignment]
    started = json.loads(raw) if raw else None
    if started is None or started["user_id"] != str(principal.user_id):
        raise not_found("conversation")
    return KnownConversation(conversation_id, UUID(started["character_id"]), UUID(started["project_id"]))


async def conversation_id_of(gw: Gateway, authorization: str, message_id: UUID) -> UUID:
    """Which conversation one of the caller's messages is in, as chat locates it (404 `no such message`
    otherwise)."""
    found = await gw.upstreams.message(authorization, message_id)
    if found is None:
        raise not_found("message")
    return UUID(found["conversation_id"])


async def conversation_of_message(
    gw: Gateway, principal: Principal, authorization: str, message_id: UUID
) -> KnownConversation:
    """The conversation of one of the caller's messages (404 when the message is not theirs)."""
    conversation_id = await conversation_id_of(gw, authorization, message_id)
    return await existing_conversation(gw, principal, authorization, conversation_id)


async def new_conversation(
    gw: Gateway, principal: Principal, authorization: str, character_id: UUID, project_id: UUID | None
) -> tuple[KnownConversation, dict[str, object]]:
    """A fresh conversation with a character the caller may see; chat creates it with the first turn."""
    character = await gw.upstreams.character(authorization, character_id)
    if character is None:
        raise not_found("character")
    # The project is fixed here so every reply can name it before chat has stored anything.
    known = KnownConversation(uuid4(), character_id, project_id or uuid4())
    started = {
        "user_id": str(principal.user_id),
        "character_id": str(character_id),
        "project_id": str(known.project_id),
    }
    await gw.redis.set(
        _new_conversation_key(known.conversation_id), json.dumps(started), ex=NEW_CONVERSATION_TTL_SECONDS
    )
    return known, character


# The turns that carry the user's text; the others (regenerate, continue) carry none.
WITH_CONTENT: tuple[TurnMode, ...] = ("reply", "edit")


async def submit_turn(
    gw: Gateway,
    principal: Principal,
    conversation: KnownConversation,
    content: str,
    client_msg_id: str | None,
    mode: TurnMode = "reply",
    message_id: UUID | None = None,
) -> Submitted:
    """Publish `chat.turn-requested.v1`; the reply arrives on the Redis stream `turn:{turn_id}`.

    `mode` is `reply` (answer `content`), `regenerate` (another alternative of the character's message
    `message_id`), `continue` (more of it) or `edit` (a new alternative of `message_id` with `content`); only
    reply and edit carry content, and every mode but reply names its message.

    The turn's trace starts here (under the HTTP request's span for REST and SSE) and follows the command
    through chat and its LLM call.
    """
    with telemetry.span("chat.turn submit", {"orrery.conversation_id": str(conversation.conversation_id)}) as span:
        if mode != "reply" and message_id is None:
            raise ApiError(422, "invalid", f"a {mode} turn needs a message_id")
        text = checked_content(gw, content) if mode in WITH_CONTENT else ""
        turn_id = uuid4()
        span.set_attribute("orrery.turn_id", str(turn_id))
        # One round trip's wait for both: a turn refused by the limit leaves only a claim that expires unused.
        await asyncio.gather(
            rate_limited(gw, gw.message_limit, principal.user_id), turns.claim(gw.redis, turn_id, principal.user_id)
        )
        event = ChatTurnRequested(
            correlation_id=str(turn_id),
            turn_id=turn_id,
            conversation_id=conversation.conversation_id,
            user_id=principal.user_id,
            character_id=conversation.character_id,
            project_id=conversation.project_id,
            content=text,
            client_msg_id=client_msg_id,
            mode=mode,
            message_id=message_id,
        )
        await publish_or_503(gw, event)
        return Submitted(turn_id, conversation)


async def submit_spin(gw: Gateway, principal: Principal, traits: TraitOverrides | None) -> UUID:
    """Publish `character.requested.v1`; `character.ready` or `character.failed` follows as a notification."""
    with telemetry.span("character.spin submit") as span:
        await rate_limited(gw, gw.spin_limit, principal.user_id)
        request_id = uuid4()
        span.set_attribute("orrery.request_id", str(request_id))
        event = CharacterRequested(
            correlation_id=str(request_id),
            request_id=request_id,
            user_id=principal.user_id,
            traits=traits or TraitOverrides(),
        )
        await publish_or_503(gw, event)
        return request_id


async def publish_or_503(gw: Gateway, event: ChatTurnRequested | CharacterRequested) -> None:
    try:
        await publish_event(gw.broker, event)
    except Exception:
        raise ApiError(503, "unavailable", "the platform cannot take requests right now; try again") from None
