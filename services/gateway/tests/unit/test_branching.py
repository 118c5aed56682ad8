"""Turns on an existing message (regenerate, continue, edit) and branch selection: over the socket and over REST.

The gateway is assembled from fakes: chat's lookups (`GET /conversations/messages/{id}`, the conversation, `PUT
…/active`), the broker (what was published), Redis (turn claims), the rate limiter and the turn streams.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, cast
from uuid import UUID, uuid4

import pytest
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient
from pydantic import TypeAdapter, ValidationError
from starlette.websockets import WebSocketState

from orrery_gateway import api
from orrery_gateway.context import Gateway
from orrery_gateway.hub import Connection, Hub
from orrery_gateway.limits import Verdict
from orrery_gateway.protocol import CLIENT_FRAME, Continue, Edit, Message, Regenerate, Select
from orrery_gateway.settings import GatewaySettings
from orrery_gateway.ws import Session
from orrery_shared.auth import Principal
from orrery_shared.events import ChatTurnRequested
from orrery_shared.http import install_error_handlers
from orrery_shared.turn_keys import owner_key

AUTHORIZATION = "Bearer t"


class RecordingSocket:
    application_state = WebSocketState.CONNECTED

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_json(self, frame: dict[str, Any]) -> None:
        self.sent.append(frame)


class FakeChat:
    """Chat's read API as the gateway's upstreams ask it: one user's conversation and its messages."""

    def __init__(self, user_id: UUID) -> None:
        self.user_id = user_id
        self.conversation_id = uuid4()
        self.character_id = uuid4()
        self.project_id = uuid4()
        self.messages: dict[UUID, str] = {}  # message_id -> role
        self.calls: list[tuple[str, str, Any]] = []  # (what, authorization, argument)

    def add(self, role: str) -> UUID:
        message_id = uuid4()
        self.messages[message_id] = role
        return message_id

    async def message(self, authorization: str, message_id: UUID) -> dict[str, Any] | None:
        self.calls.append(("message", authorization, message_id))
        if message_id not in self.messages:
            return None
        return {
            "message_id": str(message_id),
            "conversation_id": str(self.conversation_id),
            "role": self.messages[message_id],
        }

    async def conversation(self, authorization: str, conversation_id: UUID) -> dict[str, Any] | None:
        self.calls.append(("conversation", authorization, conversation_id))
        if conversation_id != self.conversation_id:
            return None
        return {
            "conversation_id": str(conversation_id),
            "project_id": str(self.project_id),
            "character": {"character_id": str(self.character_id), "name": "Ada", "portrait_url": None},
        }

    async def select_branch(self, authorization: str, conversation_id: UUID, message_id: UUID) -> dict[str, Any] | None:
        self.calls.append(("select", authorization, (conversation_id, message_id)))
        if conversation_id != self.conversation_id or message_id not in self.messages:
            return None
        return {"conversation_id": str(conversation_id), "active_leaf_id": str(message_id)}


class FakeBroker:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, message: bytes, topic: str, **_: Any) -> None:
        self.published.append((topic, message))

    def turns(self) -> list[ChatTurnRequested]:
        return [
            ChatTurnRequested.model_validate_json(body)
            for topic, body in self.published
            if topic == ChatTurnRequested.TOPIC
        ]


class FakeRedis:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def get(self, key: str) -> Any:
        return self.values.get(key)

    async def set(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = value.encode() if isinstance(value, str) else value


class AllowingLimiter:
    def __init__(self) -> None:
        self.hits = 0

    async def hit(self, *_: object) -> Verdict:
        self.hits += 1
        return Verdict(True)


class ScriptedStreams:
    """Each followed turn gives a short reply: one delta, then done."""

    def __init__(self) -> None:
        self.followed: list[UUID] = []

    async def follow(self, turn_id: UUID, after_seq: int = 0, *_: Any, **__: Any) -> AsyncIterator[dict[str, Any]]:
        self.followed.append(turn_id)
        reply_id = str(uuid4())
        yield {"type": "delta", "turn_id": str(turn_id), "seq": 1, "text": "Once more."}
        yield {"type": "turn.done", "turn_id": str(turn_id), "seq": 2, "message_id": reply_id, "status": "complete"}


class Fakes:
    def __init__(self) -> None:
        self.principal = Principal(uuid4(), "guest-1", True, {"jti": "t1", "exp": 4_000_000_000})
        self.chat = FakeChat(self.principal.user_id)
        self.broker = FakeBroker()
        self.redis = FakeRedis()
        self.limiter = AllowingLimiter()
        self.streams = ScriptedStreams()
        self.hub = Hub()
        self.gateway = Gateway(
            settings=GatewaySettings(),
            broker=cast(Any, self.broker),
            redis=cast(Any, self.redis),
            verifier=cast(Any, None),  # the caller is given (sockets) or overridden (REST)
            upstreams=cast(Any, self.chat),
            hub=self.hub,
            limiter=cast(Any, self.limiter),
            streams=cast(Any, self.streams),
            sockets=cast(Any, None),
        )


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


def session_of(fakes: Fakes) -> tuple[Session, RecordingSocket]:
    socket = RecordingSocket()
    connection = Connection(cast(WebSocket, socket), fakes.principal.user_id)
    return Session(fakes.gateway, connection, fakes.principal, AUTHORIZATION), socket


async def relayed(fakes: Fakes) -> None:
    """Let the background relays finish."""
    await asyncio.gather(*fakes.hub.replies)


# --- frames -------------------------------------------------------------------------------------------


def test_the_four_frames_validate_with_their_fields() -> None:
    message_id = uuid4()
    regenerate = CLIENT_FRAME.validate_python({"type": "regenerate", "message_id": str(message_id)})
    assert isinstance(regenerate, Regenerate) and regenerate.message_id == message_id
    assert regenerate.client_msg_id is None
    cont = CLIENT_FRAME.validate_python({"type": "continue", "message_id": str(message_id), "client_msg_id": "c-1"})
    assert isinstance(cont, Continue) and cont.client_msg_id == "c-1"
    edit = CLIENT_FRAME.validate_python({"type": "edit", "message_id": str(message_id), "content": "Hi again."})
    assert isinstance(edit, Edit) and edit.content == "Hi again."
    select = CLIENT_FRAME.validate_python({"type": "select", "message_id": str(message_id)})
    assert isinstance(select, Select) and select.message_id == message_id
    # Unknown members are ignored, as on every frame.
    assert isinstance(
        CLIENT_FRAME.validate_python({"type": "regenerate", "message_id": str(message_id), "x": 1}), Regenerate
    )


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "regenerate"},
        {"type": "regenerate", "message_id": "not-a-uuid"},
        {"type": "continue"},
        {"type": "edit", "message_id": "6f7c0c7e-0000-4000-8000-000000000000"},
        {"type": "edit", "content": "text but no message"},
        {"type": "select"},
        {"type": "regenerate", "message_id": "6f7c0c7e-0000-4000-8000-000000000000", "client_msg_id": "x" * 101},
    ],
)
def test_a_frame_without_what_it_needs_is_invalid(frame: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CLIENT_FRAME.validate_python(frame)


@pytest.mark.parametrize("kind", ["regenerate", "continue", "edit", "select"])
async def test_an_invalid_new_frame_is_answered_invalid_naming_the_field(fakes: Fakes, kind: str) -> None:
    session, socket = session_of(fakes)
    await session.handle(json.dumps({"type": kind}))
    [answer] = socket.sent
    assert answer["type"] == "error" and answer["code"] == "invalid"
    assert ["message_id"] in [f["loc"] for f in answer["fields"]]
    assert fakes.broker.published == [] and fakes.chat.calls == []


# --- regenerate, continue, edit -------------------------------------------------------------------------


async def test_regenerate_publishes_a_regenerate_turn_in_the_messages_conversation_and_relays_its_reply(
    fakes: Fakes,
) -> None:
    reply = fakes.chat.add("assistant")
    session, socket = session_of(fakes)
    await session.handle(json.dumps({"type": "regenerate", "message_id": str(reply), "client_msg_id": "r-1"}))
    await relayed(fakes)

    [turn] = fakes.broker.turns()
    assert turn.mode == "regenerate" and turn.message_id == reply
    assert turn.conversation_id == fakes.chat.conversation_id
    assert (turn.character_id, turn.project_id) == (fakes.chat.character_id, fakes.chat.project_id)
    assert turn.user_id == fakes.principal.user_id
    assert turn.content == "" and turn.client_msg_id == "r-1"
    assert ("message", AUTHORIZATION, reply) in fakes.chat.calls  # asked as the caller

    accepted, delta, done = socket.sent
    assert accepted == {
        "type": "turn.accepted",
        "turn_id": str(turn.turn_id),
        "client_msg_id": "r-1",
        "conversation_id": str(fakes.chat.conversation_id),
        "mode": "regenerate",
    }
    assert (delta["type"], delta["turn_id"]) == ("delta", str(turn.turn_id))
    assert (done["type"], done["turn_id"]) == ("turn.done", str(turn.turn_id))
    # Resumable and cancellable as a message's turn: the caller owns it.
    assert fakes.redis.values[owner_key(turn.turn_id)].decode().startswith(str(fakes.principal.user_id))
    assert fakes.limiter.hits == 1


async def test_continue_publishes_a_continue_turn_without_content(fakes: Fakes) -> None:
    reply = fakes.chat.add("assistant")
    session, socket = session_of(fakes)
    await session.handle(json.dumps({"type": "continue", "message_id": str(reply), "content": "ignored"}))
    await relayed(fakes)
    [turn] = fakes.broker.turns()
    assert (turn.mode, turn.message_id, turn.content) == ("continue", reply, "")
    assert socket.sent[0]["type"] == "turn.accepted" and socket.sent[0]["mode"] == "continue"


async def test_edit_publishes_its_content_trimmed(fakes: Fakes) -> None:
    mine = fakes.chat.add("user")
    session, socket = session_of(fakes)
    await session.handle(json.dumps({"type": "edit", "message_id": str(mine), "content": "  What about the moon?  "}))
    await relayed(fakes)
    [turn] = fakes.broker.turns()
    assert (turn.mode, turn.message_id, turn.content) == ("edit", mine, "What about the moon?")
    assert turn.conversation_id == fakes.chat.conversation_id
    assert socket.sent[0]["mode"] == "edit"


@pytest.mark.parametrize("content", ["", "   "])
async def test_an_edit_to_nothing_is_invalid_and_publishes_nothing(fakes: Fakes, content: str) -> None:
    mine = fakes.chat.add("user")
    session, socket = session_of(fakes)
    await session.handle(json.dumps({"type": "edit", "message_id": str(mine), "content": content}))
    [answer] = socket.sent
    assert (answer["type"], answer["code"]) == ("error", "invalid")
    assert fakes.broker.published == []


async def test_an_edit_longer_than_a_message_may_be_is_too_large(fakes: Fakes) -> None:
    mine = fakes.chat.add("user")
    session, socket = session_of(fakes)
    long = "x" * (fakes.gateway.settings.max_message_chars + 1)
    await session.handle(json.dumps({"type": "edit", "message_id": str(mine), "content": long}))
    assert socket.sent[0]["code"] == "too_large" and fakes.broker.published == []


@pytest.mark.parametrize("kind", ["regenerate", "continue", "edit", "select"])
async def test_a_message_that_is_not_the_callers_is_not_found(fakes: Fakes, kind: str) -> None:
    session, socket = session_of(fakes)
    frame = {"type": kind, "message_id": str(uuid4()), "content": "hi"}
    await session.handle(json.dumps(frame))
    [answer] = socket.sent
    assert (answer["type"], answer["code"]) == ("error", "not_found")
    assert "message" in answer["message"]
    assert fakes.broker.published == []
    assert [call[0] for call in fakes.chat.calls] == ["message"]  # nothing asked of chat after the lookup


async def test_a_message_frame_still_gets_turn_accepted_with_mode_reply(fakes: Fakes) -> None:
    session, socket = session_of(fakes)
    conversation_id = fakes.chat.conversation_id
    frame = {"type": "message", "conversation_id": str(conversation_id), "content": "Hello.", "client_msg_id": "m-1"}
    await session.handle(json.dumps(frame))
    await relayed(fakes)
    [turn] = fakes.broker.turns()
    assert (turn.mode, turn.message_id, turn.content) == ("reply", None, "Hello.")
    assert socket.sent[0] == {
        "type": "turn.accepted",
        "turn_id": str(turn.turn_id),
        "client_msg_id": "m-1",
        "conversation_id": str(conversation_id),
        "mode": "reply",
    }


def test_the_message_frame_is_unchanged() -> None:
    frame = CLIENT_FRAME.validate_python({"type": "message", "message": "idol text", "user_id": "u"})
    assert isinstance(frame, Message) and frame.content == "idol text"


# --- select -------------------------------------------------------------------------------------------


async def test_select_asks_chat_to_make_the_path_active_and_answers_branch_selected(fakes: Fakes) -> None:
    other = fakes.chat.add("assistant")
    session, socket = session_of(fakes)
    await session.handle(json.dumps({"type": "select", "message_id": str(other)}))
    assert ("select", AUTHORIZATION, (fakes.chat.conversation_id, other)) in fakes.chat.calls
    assert socket.sent == [
        {"type": "branch.selected", "conversation_id": str(fakes.chat.conversation_id), "active_leaf_id": str(other)}
    ]
    assert fakes.broker.published == []


async def test_select_of_a_message_chat_no_longer_has_is_not_found(fakes: Fakes) -> None:
    gone = fakes.chat.add("assistant")
    session, socket = session_of(fakes)

    async def deleted_meanwhile(*_: Any) -> None:
        return None

    fakes.chat.select_branch = deleted_meanwhile  # type: ignore[method-assign,assignment]
    await session.handle(json.dumps({"type": "select", "message_id": str(gone)}))
    assert [(f["type"], f["code"]) for f in socket.sent] == [("error", "not_found")]


# --- REST -----------------------------------------------------------------------------------------------

CHAT_IN: TypeAdapter[Any] = TypeAdapter(api.ChatIn)
MESSAGE = "6f7c0c7e-0000-4000-8000-000000000000"


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"text": "Hello."}, api.ChatReplyIn),
        ({"mode": "reply", "text": "Hello.", "session_id": MESSAGE}, api.ChatReplyIn),
        ({"mode": "regenerate", "message_id": MESSAGE}, api.ChatRegenerateIn),
        ({"mode": "continue", "message_id": MESSAGE, "client_msg_id": "c"}, api.ChatContinueIn),
        ({"mode": "edit", "message_id": MESSAGE, "text": "Better."}, api.ChatEditIn),
        ({"mode": "regenerate", "message_id": MESSAGE, "session_id": MESSAGE}, api.ChatRegenerateIn),
    ],
)
def test_chat_bodies_of_each_mode_are_accepted(
    body: dict[str, Any], kind: type[api.ChatReplyIn | api.ChatRework]
) -> None:
    parsed = CHAT_IN.validate_python(body)
    assert isinstance(parsed, kind)
    assert parsed.mode == body.get("mode", "reply")


@pytest.mark.parametrize(
    "body",
    [
        {},  # a reply needs text
        {"text": "   "},
        {"mode": "reply"},
        {"mode": "reply", "text": "Hi.", "message_id": MESSAGE},  # a reply names no message
        {"mode": "regenerate"},  # the others need message_id
        {"mode": "continue"},
        {"mode": "edit", "text": "Better."},
        {"mode": "edit", "message_id": MESSAGE},  # edit needs text too
        {"mode": "edit", "message_id": MESSAGE, "text": " "},
        {"mode": "regenerate", "message_id": MESSAGE, "text": "no text here"},
        {"mode": "continue", "message_id": MESSAGE, "character_id": MESSAGE},
        {"mode": "rewrite", "message_id": MESSAGE},
        {"mode": None, "text": "Hi."},
        {"text": "Hi.", "sesion_id": MESSAGE},  # still: a misspelt member is refused
    ],
)
def test_chat_bodies_missing_what_their_mode_needs_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CHAT_IN.validate_python(body)


def rest_client(fakes: Fakes) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(api.router)
    app.state.gateway = fakes.gateway
    app.dependency_overrides[api.caller] = lambda: fakes.principal
    return TestClient(app, headers={"Authorization": AUTHORIZATION})


def test_rest_regenerate_publishes_the_turn_in_the_messages_conversation_and_answers_the_reply(fakes: Fakes) -> None:
    reply = fakes.chat.add("assistant")
    answer = rest_client(fakes).post("/api/chat", json={"mode": "regenerate", "message_id": str(reply)})
    assert answer.status_code == 200, answer.text
    [turn] = fakes.broker.turns()
    assert (turn.mode, turn.message_id, turn.content) == ("regenerate", reply, "")
    assert turn.conversation_id == fakes.chat.conversation_id
    body = answer.json()
    assert body["reply"] == "Once more." and body["session_id"] == str(fakes.chat.conversation_id)
    assert body["turn_id"] == str(turn.turn_id)


def test_rest_edit_publishes_its_text(fakes: Fakes) -> None:
    mine = fakes.chat.add("user")
    body = {"mode": "edit", "message_id": str(mine), "text": "Better.", "session_id": str(fakes.chat.conversation_id)}
    answer = rest_client(fakes).post("/api/chat/stream", json=body)
    assert answer.status_code == 200, answer.text
    [turn] = fakes.broker.turns()
    assert (turn.mode, turn.message_id, turn.content) == ("edit", mine, "Better.")
    assert answer.headers["X-Turn-Id"] == str(turn.turn_id)
    assert '"type": "text"' in answer.text and '"type": "done"' in answer.text


def test_rest_a_message_of_another_conversation_than_session_id_is_refused(fakes: Fakes) -> None:
    reply = fakes.chat.add("assistant")
    body = {"mode": "continue", "message_id": str(reply), "session_id": str(uuid4())}
    answer = rest_client(fakes).post("/api/chat", json=body)
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "invalid"
    assert fakes.broker.published == []


def test_rest_a_message_that_is_not_the_callers_is_404(fakes: Fakes) -> None:
    answer = rest_client(fakes).post("/api/chat", json={"mode": "regenerate", "message_id": str(uuid4())})
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    assert fakes.broker.published == []


def test_rest_a_body_missing_its_message_is_422_naming_it(fakes: Fakes) -> None:
    answer = rest_client(fakes).post("/api/chat", json={"mode": "regenerate"})
    assert answer.status_code == 422
    assert fakes.broker.published == []


@pytest.mark.parametrize(
    ("reason", "status", "code"),
    [
        ("message_not_found", 404, "not_found"),
        ("not_allowed: only the character's messages can be regenerated", 409, "not_allowed"),
        ("not_found", 404, "not_found"),
        ("the character could not answer right now; please try again", 502, "turn_failed"),
    ],
)
def test_a_refused_turn_is_the_clients_to_fix(reason: str, status: int, code: str) -> None:
    refused = api._turn_failed(reason)
    assert (refused.status, refused.code) == (status, code)
    if code == "not_allowed":
        assert refused.message == "only the character's messages can be regenerated"
