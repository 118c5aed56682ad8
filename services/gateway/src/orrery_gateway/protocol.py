"""The WebSocket protocol: client frames as validated models, server frames as plain dicts.

The AI-idol router's protocol stays valid: `start_conversation`, `message` (text in `message` instead of
`content`) and `ping` are ours, and its `user_id` field is ignored — the token says who is calling.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from orrery_shared.events import TraitOverrides
from orrery_shared.http import PG_INT_MAX


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Ping(_Frame):
    type: Literal["ping"]


class Spin(_Frame):
    type: Literal["spin"]
    traits: TraitOverrides | None = None


class StartConversation(_Frame):
    type: Literal["start_conversation"]
    character_id: UUID | None = None
    conversation_id: UUID | None = None
    project_id: UUID | None = None


class Message(_Frame):
    type: Literal["message"]
    conversation_id: UUID | None = None
    content: str = Field("", max_length=100_000)
    client_msg_id: str | None = Field(None, max_length=100)

    @model_validator(mode="before")
    @classmethod
    def _idol_router_text(cls, data: Any) -> Any:
        # The idol router's clients send the text as `message`.
        if isinstance(data, dict) and not data.get("content") and isinstance(data.get("message"), str):
            return {**data, "content": data["message"]}
        return data


class Regenerate(_Frame):
    """Another reply in place of the character's message `message_id` (a new alternative beside it)."""

    type: Literal["regenerate"]
    message_id: UUID
    client_msg_id: str | None = Field(None, max_length=100)


class Continue(_Frame):
    """More of the character's message `message_id`: the reply extends it."""

    type: Literal["continue"]
    message_id: UUID
    client_msg_id: str | None = Field(None, max_length=100)


class Edit(_Frame):
    """A new alternative of the message `message_id` with `content`; an edited user message is answered anew."""

    type: Literal["edit"]
    message_id: UUID
    content: str = Field(max_length=100_000)
    client_msg_id: str | None = Field(None, max_length=100)


class Select(_Frame):
    """Make the path through the message `message_id` the conversation's active one."""

    type: Literal["select"]
    message_id: UUID


class Cancel(_Frame):
    type: Literal["cancel"]
    turn_id: UUID


class Resume(_Frame):
    type: Literal["resume"]
    turn_id: UUID
    after_seq: int = Field(0, ge=0, le=PG_INT_MAX)


# The frames that ask chat for a turn on an existing message, with the mode their turn has.
Rework = Regenerate | Continue | Edit

ClientFrame = Annotated[
    Ping | Spin | StartConversation | Message | Regenerate | Continue | Edit | Select | Cancel | Resume,
    Field(discriminator="type"),
]
CLIENT_FRAME = TypeAdapter(ClientFrame)
CLIENT_TYPES = (
    "ping",
    "spin",
    "start_conversation",
    "message",
    "regenerate",
    "continue",
    "edit",
    "select",
    "cancel",
    "resume",
)


def error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """An `error` frame; the socket stays open."""
    return {"type": "error", "code": code, "message": message, **extra}


WS_PROTOCOL_DOC = """
### WebSocket `/ws` (alias `/ws/chat`)

Authenticate with the access token as a `Sec-WebSocket-Protocol` value (`bearer, <token>` or just `<token>`)
or as `?token=`. A missing, bad or expired token closes the socket with code **4401**. Frames are JSON text.

Client → server: `start_conversation {character_id?, conversation_id?, project_id?}` ·
`spin {traits?}` · `message {conversation_id, content (or message), client_msg_id}` ·
`regenerate {message_id, client_msg_id?}` · `continue {message_id, client_msg_id?}` ·
`edit {message_id, content, client_msg_id?}` · `select {message_id}` · `cancel {turn_id}` ·
`resume {turn_id, after_seq}` · `ping`

`regenerate` (another reply in place of a message of the character's), `continue` (more of it) and `edit` (a new
alternative of a message with `content`) act in the message's conversation and stream their reply as `message`
does; `select` makes the path through a message the conversation's active one.

Server → client: `conversation.started {conversation_id, character, greeting}` ·
`character.generating {request_id}` · `character.ready {request_id, character}` ·
`character.failed {request_id, reason, retryable}` ·
`turn.accepted {turn_id, client_msg_id, conversation_id, mode}` (`mode`: `reply`, `regenerate`, `continue` or
`edit`) · `delta {turn_id, seq, text}` · `turn.done {turn_id, seq, message_id, status}` ·
`turn.restart {turn_id, seq}` · `turn.failed {turn_id, reason, retryable}` ·
`branch.selected {conversation_id, active_leaf_id}` · `dossier.updated {project_id, version}` ·
`error {code, message}` (`bad_json`, `unknown_type`, `invalid`, `too_large`, `not_found`, `rate_limited` with
`retry_after`, `unavailable`; the socket stays open) · `pong`

A client that lost its socket mid-reply reconnects (to any gateway instance) and sends
`resume {turn_id, after_seq}` with the last `seq` it received: it gets exactly the entries after it.
The server closes with **1001** when it shuts down, with **4408** after a long silence, and with **1011** if it
fails while serving the socket.
"""
