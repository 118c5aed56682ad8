"""The whole platform through the gateway's public API, as clients use it (real processes, the LLM stub)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from tests.support.infra import ROOT
from tests.support.llm_stub import StubControl
from tests.support.platform import GATEWAY, extra_gateway
from tests.support.tokens import TokenMinter

pytestmark = pytest.mark.e2e


async def guest(base: str = GATEWAY) -> str:
    async with httpx.AsyncClient(base_url=base) as http:
        response = await http.post("/api/auth/guest", json={})
        assert response.status_code == 201, response.text
        token: str = response.json()["access_token"]
        return token


@asynccontextmanager
async def socket(token: str, base: str = GATEWAY, path: str = "/ws") -> AsyncIterator[ClientConnection]:
    url = base.replace("http://", "ws://") + path
    async with connect(url, subprotocols=["bearer", token], max_size=2**22) as ws:  # type: ignore[list-item]
        yield ws


async def send(ws: ClientConnection, frame: dict[str, Any]) -> None:
    await ws.send(json.dumps(frame))


async def receive_until(ws: ClientConnection, *types: str, timeout: float = 60) -> list[dict[str, Any]]:
    """Frames up to and including the first of `types`."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            frames.append(frame)
            if frame["type"] in types:
                return frames


async def spin_character(ws: ClientConnection) -> dict[str, Any]:
    await send(ws, {"type": "spin"})
    frames = await receive_until(ws, "character.ready", "character.failed", "error")
    assert frames[0]["type"] == "character.generating"
    assert frames[-1]["type"] == "character.ready", frames
    assert frames[-1]["request_id"] == frames[0]["request_id"]
    character: dict[str, Any] = frames[-1]["character"]
    return character


async def start(ws: ClientConnection, character_id: str) -> dict[str, Any]:
    await send(ws, {"type": "start_conversation", "character_id": character_id})
    [started] = await receive_until(ws, "conversation.started")
    return started


def text_of(frames: list[dict[str, Any]]) -> str:
    return "".join(f["text"] for f in frames if f["type"] == "delta")


async def test_a_guest_spins_meets_the_character_chats_and_finds_the_messages_listed(stub: StubControl) -> None:
    token = await guest()
    async with socket(token) as ws:
        character = await spin_character(ws)
        started = await start(ws, character["id"])
        assert started["greeting"] == character["greeting"] and started["greeting"]
        await send(
            ws,
            {
                "type": "message",
                "conversation_id": started["conversation_id"],
                "content": "Who are you?",
                "client_msg_id": "m-1",
            },
        )
        frames = await receive_until(ws, "turn.done", "turn.failed")
    accepted, *streamed, done = frames
    assert accepted["type"] == "turn.accepted" and accepted["client_msg_id"] == "m-1"
    assert done["type"] == "turn.done" and done["turn_id"] == accepted["turn_id"]
    assert [f["seq"] for f in streamed] == list(range(1, len(streamed) + 1))
    reply = text_of(streamed)
    assert reply

    async with httpx.AsyncClient(base_url=GATEWAY, headers={"Authorization": f"Bearer {token}"}) as http:
        listed = (await http.get(f"/api/conversations/{started['conversation_id']}/messages")).json()["messages"][::-1]
        portrait = await http.get(character["portrait_url"])
    assert [(m["role"], m["content"]) for m in listed] == [
        ("assistant", character["greeting"]),
        ("user", "Who are you?"),
        ("assistant", reply),
    ]
    assert listed[-1]["message_id"] == done["message_id"]
    assert portrait.status_code == 200 and portrait.headers["etag"]


async def conversation_with_character(token: str) -> tuple[str, str]:
    async with socket(token) as ws:
        character = await spin_character(ws)
        started = await start(ws, character["id"])
        await send(ws, {"type": "message", "conversation_id": started["conversation_id"], "content": "Hello."})
        await receive_until(ws, "turn.done")
    return started["conversation_id"], character["id"]


async def test_sse_streams_the_story_bots_exact_frames(stub: StubControl) -> None:
    token = await guest()
    conversation_id, _ = await conversation_with_character(token)
    stub.script(model="orrery-chat", content="The dunes sing at night.")
    async with (
        httpx.AsyncClient(base_url=GATEWAY, timeout=60) as http,
        http.stream(
            "POST",
            "/api/chat/stream",
            json={"text": "What do the dunes do?", "session_id": conversation_id},
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = (await response.aread()).decode()
    events = [json.loads(data) for _, data in sse_events(raw)]
    assert all(set(e) == {"type", "content"} for e in events[:-2])
    assert "".join(e["content"] for e in events[:-2]) == "The dunes sing at night."
    assert events[-2]["type"] == "metadata"
    assert set(events[-2]["metadata"]) == {"session_id", "project_id", "dossier_updated"}
    assert events[-2]["metadata"]["session_id"] == conversation_id
    assert events[-1] == {"type": "done"}


def sse_events(raw: str) -> list[tuple[str | None, str]]:
    """(id, data) of each event, as an EventSource reads them."""
    events = []
    for chunk in raw.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in chunk.splitlines())
        events.append((fields.get("id"), fields["data"]))
    return events


async def test_an_sse_reply_survives_its_connection_resumes_after_last_event_id_and_cancels_by_rest(
    stub: StubControl,
) -> None:
    token, stranger = await guest(), await guest()
    conversation_id, _ = await conversation_with_character(token)
    reply = " ".join(f"ember{i}" for i in range(60))
    stub.script(model="orrery-chat", content=reply, tokens_per_second=30)
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=60) as http:
        body = {"text": "Tell me of the embers.", "session_id": conversation_id}
        async with http.stream("POST", "/api/chat/stream", json=body, headers=auth) as response:
            turn_id = response.headers["x-turn-id"]
            seen: list[str] = []
            async for line in response.aiter_lines():
                if line.startswith("id: "):
                    seen.append(line.removeprefix("id: "))
                if len(seen) == 10:
                    break  # the connection drops mid-reply
        # Someone else can neither read nor stop it.
        foreign = {"Authorization": f"Bearer {stranger}"}
        assert (await http.get(f"/api/turns/{turn_id}/stream", headers=foreign)).status_code == 404
        assert (await http.post(f"/api/turns/{turn_id}/cancel", headers=foreign)).status_code == 404
        # The owner picks it up where the last event left off.
        resumed_from = {**auth, "Last-Event-ID": seen[-1]}
        async with http.stream("GET", f"/api/turns/{turn_id}/stream", headers=resumed_from) as response:
            rest = sse_events((await response.aread()).decode())
    ids = [int(i.rsplit(":", 1)[1]) for i in seen] + [int(i.rsplit(":", 1)[1]) for i, _ in rest if i]
    assert ids == list(range(1, len(ids) + 1))  # nothing repeated, nothing missed
    assert json.loads(rest[-1][1])["type"] == "end" and json.loads(rest[-1][1])["status"] == "complete"

    # A REST client stops a reply with the cancel route.
    stub.script(model="orrery-chat", content=" ".join(f"w{i}" for i in range(300)), tokens_per_second=30)
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=60) as http:
        body = {"text": "Go on forever.", "session_id": conversation_id}
        async with http.stream("POST", "/api/chat/stream", json=body, headers=auth) as response:
            turn_id = response.headers["x-turn-id"]
            async for line in response.aiter_lines():
                if line.startswith("data: ") and '"text"' in line:
                    break
        cancelled = await http.post(f"/api/turns/{turn_id}/cancel", headers=auth)
        assert cancelled.status_code == 202
        async with http.stream("GET", f"/api/turns/{turn_id}/stream", headers=auth) as response:
            events = [json.loads(data) for _, data in sse_events((await response.aread()).decode())]
    assert events[-1]["type"] == "end" and events[-1]["status"] == "cancelled"


async def test_post_chat_waits_and_returns_the_whole_reply(stub: StubControl) -> None:
    token = await guest()
    conversation_id, _ = await conversation_with_character(token)
    stub.script(model="orrery-chat", content="Patience is a compass.")
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=60, headers={"Authorization": f"Bearer {token}"}) as http:
        response = await http.post("/api/chat", json={"text": "Advice?", "session_id": conversation_id})
        unknown = await http.post(
            "/api/chat", json={"text": "Hi", "session_id": "00000000-0000-4000-8000-000000000000"}
        )
    assert response.status_code == 200, response.text
    assert response.json()["reply"] == "Patience is a compass."
    assert response.json()["session_id"] == conversation_id
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


async def test_a_client_written_for_the_idol_router_protocol_works(stub: StubControl) -> None:
    token = await guest()
    async with socket(token) as ws:
        character = await spin_character(ws)
    stub.script(model="orrery-chat", content="Greetings, traveller.")
    async with socket(token, path="/ws/chat") as ws:
        await send(ws, {"type": "ping"})
        assert json.loads(await ws.recv()) == {"type": "pong"}
        await send(ws, {"type": "start_conversation", "character_id": character["id"], "user_id": "ignored"})
        [started] = await receive_until(ws, "conversation.started")
        await send(
            ws,
            {
                "type": "message",
                "message": "Hello!",
                "user_id": "ignored",
                "conversation_id": started["conversation_id"],
            },
        )
        frames = await receive_until(ws, "turn.done")
    assert text_of(frames) == "Greetings, traveller."


async def test_a_reply_dropped_on_one_gateway_resumes_on_another_exactly(stub: StubControl, platform: str) -> None:
    token = await guest()
    conversation_id, _ = await conversation_with_character(token)
    reply = " ".join(f"lumen{i}" for i in range(80))
    stub.script(model="orrery-chat", content=reply, tokens_per_second=25)
    received: list[dict[str, Any]] = []
    async with socket(token) as ws:
        await send(ws, {"type": "message", "conversation_id": conversation_id, "content": "Tell the long tale."})
        [accepted] = await receive_until(ws, "turn.accepted")
        while len(received) < 20:
            received.append(json.loads(await ws.recv()))
    # The first socket is gone mid-reply; the client reconnects to another gateway instance.
    with extra_gateway(platform) as other:
        async with socket(token, base=other) as ws:
            await send(ws, {"type": "resume", "turn_id": accepted["turn_id"], "after_seq": received[-1]["seq"]})
            received += await receive_until(ws, "turn.done", timeout=90)
    seqs = [f["seq"] for f in received]
    assert seqs == list(range(1, len(seqs) + 1))  # no gap, no duplicate
    assert text_of(received) == reply
    async with httpx.AsyncClient(base_url=GATEWAY, headers={"Authorization": f"Bearer {token}"}) as http:
        stored = (await http.get(f"/api/conversations/{conversation_id}/messages")).json()["messages"][::-1][-1]
    assert stored["content"] == reply and stored["message_id"] == received[-1]["message_id"]


async def test_cancel_stops_the_reply_and_keeps_the_partial(stub: StubControl) -> None:
    token = await guest()
    conversation_id, _ = await conversation_with_character(token)
    stub.script(model="orrery-chat", content=" ".join(f"w{i}" for i in range(300)), tokens_per_second=30)
    async with socket(token) as ws:
        await send(ws, {"type": "message", "conversation_id": conversation_id, "content": "Go on and on."})
        [accepted] = await receive_until(ws, "turn.accepted")
        await receive_until(ws, "delta")
        await send(ws, {"type": "cancel", "turn_id": accepted["turn_id"]})
        frames = await receive_until(ws, "turn.done", timeout=30)
    assert frames[-1]["status"] == "cancelled"


async def test_another_users_turn_can_be_neither_resumed_nor_cancelled(stub: StubControl) -> None:
    owner, intruder = await guest(), await guest()
    conversation_id, _ = await conversation_with_character(owner)
    stub.script(model="orrery-chat", content=" ".join(f"w{i}" for i in range(40)), tokens_per_second=40)
    async with socket(owner) as mine, socket(intruder) as theirs:
        await send(mine, {"type": "message", "conversation_id": conversation_id, "content": "Go on."})
        [accepted] = await receive_until(mine, "turn.accepted")
        for frame in ({"type": "resume", "after_seq": 0}, {"type": "cancel"}):
            await send(theirs, {**frame, "turn_id": accepted["turn_id"]})
            refused = json.loads(await theirs.recv())
            assert (refused["type"], refused["code"]) == ("error", "not_found")
        frames = await receive_until(mine, "turn.done")
    assert frames[-1]["status"] == "complete"  # the intruder's cancel changed nothing


async def test_bad_frames_get_error_frames_and_the_socket_keeps_serving(stub: StubControl) -> None:
    owner, intruder = await guest(), await guest()
    conversation_id, _ = await conversation_with_character(owner)
    async with socket(intruder) as ws:
        expectations = [
            ("{not json", "bad_json"),
            (json.dumps({"type": "dance"}), "unknown_type"),
            (json.dumps({"type": "cancel", "turn_id": "nope"}), "invalid"),
            (json.dumps({"type": "message", "content": "x" * 70_000, "conversation_id": conversation_id}), "too_large"),
            (json.dumps({"type": "message", "content": "mine now", "conversation_id": conversation_id}), "not_found"),
            (json.dumps({"type": "start_conversation", "conversation_id": conversation_id}), "not_found"),
            (json.dumps({"type": "message", "content": "a\u0000b", "conversation_id": conversation_id}), "invalid"),
            (json.dumps({"type": "message", "content": "hi", "client_msg_id": "\ud800"}), "invalid"),
            ("[" * 30_000 + "]" * 30_000, "bad_json"),  # deeper than the parser goes
            ('{"type": "spin", "traits": ' + "[" * 30_000 + "]" * 30_000 + "}", "bad_json"),
        ]
        for raw, code in expectations:
            await ws.send(raw)
            frame = json.loads(await ws.recv())
            assert (frame["type"], frame["code"]) == ("error", code), raw[:60]
        await send(ws, {"type": "ping"})
        assert json.loads(await ws.recv()) == {"type": "pong"}


async def test_a_conversation_started_on_one_socket_takes_its_first_message_on_another(stub: StubControl) -> None:
    token, stranger = await guest(), await guest()
    async with socket(token) as ws:
        character = await spin_character(ws)
        started = await start(ws, character["id"])
    # The client reconnects (here: to the other instance's port would do as well) before its first message.
    stub.script(model="orrery-chat", content="Welcome back, traveller.")
    async with socket(stranger) as ws:
        await send(ws, {"type": "message", "conversation_id": started["conversation_id"], "content": "Mine?"})
        frame = json.loads(await ws.recv())
        assert (frame["type"], frame["code"]) == ("error", "not_found")
    async with socket(token) as ws:
        await send(ws, {"type": "message", "conversation_id": started["conversation_id"], "content": "Hello again."})
        frames = await receive_until(ws, "turn.done", "error")
    assert frames[-1]["type"] == "turn.done", frames
    assert text_of(frames) == "Welcome back, traveller."


async def closed_with(token: str) -> int | None:
    async with connect(GATEWAY.replace("http", "ws") + f"/ws?token={token}") as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        return ws.close_code


async def test_bad_or_expired_tokens_close_the_socket_with_4401(platform: str, token_minter: TokenMinter) -> None:
    key = (ROOT / ".orrery" / "auth-keys" / "current.pem").read_bytes()
    valid = jwt.decode(await guest(), options={"verify_signature": False})
    expired = jwt.encode(
        {**valid, "iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600},
        key,
        algorithm="EdDSA",
        headers={"kid": jwt.get_unverified_header(await guest())["kid"]},
    )
    assert await closed_with(expired) == 4401
    assert await closed_with("garbage") == 4401
    assert await closed_with(token_minter.token()) == 4401  # a key the platform does not trust


async def test_a_users_sockets_are_capped_across_instances_and_a_closed_one_frees_its_place(platform: str) -> None:
    token, other = await guest(), await guest()
    with extra_gateway(platform, {"ORRERY_GATEWAY_MAX_SOCKETS_PER_USER": "3"}) as capped:
        async with socket(token), socket(token), socket(token, base=capped):
            async with connect(capped.replace("http", "ws") + f"/ws?token={token}") as refused:
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(refused.recv(), 10)
                assert refused.close_code == 4429
            async with socket(other, base=capped) as ws:  # another user is not affected
                await send(ws, {"type": "ping"})
                assert json.loads(await ws.recv()) == {"type": "pong"}
        async with socket(token, base=capped) as ws:  # the three closed: their places are free again
            await send(ws, {"type": "ping"})
            assert json.loads(await ws.recv()) == {"type": "pong"}


async def test_imports_are_rate_limited_per_user_across_instances(platform: str) -> None:
    token = await guest()
    with extra_gateway(platform, {"ORRERY_GATEWAY_IMPORTS_PER_HOUR": "2"}) as capped:
        async with httpx.AsyncClient(base_url=capped, headers={"Authorization": f"Bearer {token}"}) as http:
            answers = [await http.post("/api/characters/import", json={"not": "a card"}) for _ in range(3)]
    assert [a.status_code for a in answers[:2]] == [422, 422]  # refused by character-gen, but counted
    assert answers[2].status_code == 429 and answers[2].json()["error"]["code"] == "rate_limited"
    assert 0 < int(answers[2].headers["retry-after"]) <= 3600


async def test_rate_limits_answer_with_retry_after_while_others_are_served(stub: StubControl, platform: str) -> None:
    limited, other = await guest(), await guest()
    conversation_id, _ = await conversation_with_character(limited)
    with extra_gateway(
        platform, {"ORRERY_GATEWAY_MESSAGES_PER_MINUTE": "2", "ORRERY_GATEWAY_SPINS_PER_HOUR": "1"}
    ) as base:
        async with socket(limited, base=base) as ws:
            outcomes = []
            for _ in range(4):  # the counter is shared by all instances and already holds the first message
                await send(ws, {"type": "message", "conversation_id": conversation_id, "content": "Again."})
                outcomes.append((await receive_until(ws, "turn.done", "error"))[-1])
            refused = [o for o in outcomes if o["type"] == "error"]
            assert refused and refused[0]["code"] == "rate_limited" and 0 < refused[0]["retry_after"] <= 60
            assert outcomes[0]["type"] == "turn.done" or outcomes[1]["type"] == "turn.done"
        async with socket(other, base=base) as ws:
            await send(ws, {"type": "spin"})
            assert (await receive_until(ws, "character.generating"))[0]["type"] == "character.generating"
            await send(ws, {"type": "spin"})
            assert (await receive_until(ws, "error"))[-1]["code"] == "rate_limited"
            await send(ws, {"type": "ping"})
            assert (await receive_until(ws, "pong"))[-1] == {"type": "pong"}


async def test_text_postgres_cannot_store_is_refused_at_the_edge_not_lost_later(platform: str) -> None:
    token = await guest()
    async with httpx.AsyncClient(base_url=GATEWAY, headers={"Authorization": f"Bearer {token}"}) as http:
        chat = await http.post("/api/chat", json={"text": "hello\u0000there"})
        listed = await http.get("/api/conversations", params={"q": "x\u0000"})
    assert chat.status_code == 422 and chat.json()["error"]["code"] == "invalid"
    assert "text" in chat.json()["error"]["message"]
    assert listed.status_code == 422


@pytest.mark.parametrize(
    "path",
    [
        "/api/conversations/..%2Fmetrics",
        "/api/characters/..%2F..%2Fdocs",
        "/api/dossiers/%2e%2e/openapi.json",
        "/api/conversations/..%5Creadyz",
        "/api/characters/%2E%2E%2Fmetrics",
    ],
)
async def test_encoded_dot_segments_never_reach_a_services_internal_routes(platform: str, path: str) -> None:
    token = await guest()
    async with httpx.AsyncClient(base_url=GATEWAY, headers={"Authorization": f"Bearer {token}"}) as http:
        response = await http.get(path)
    assert response.status_code == 404, (path, response.status_code, response.text[:200])
    assert response.json()["error"]["code"] == "not_found"


async def test_an_oversized_upload_is_refused_at_the_edge(platform: str) -> None:
    token = await guest()
    async with httpx.AsyncClient(base_url=GATEWAY, headers={"Authorization": f"Bearer {token}"}) as http:
        response = await http.post("/api/characters/import", content=b"{" + b" " * (5 * 1024 * 1024) + b"}")
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"


async def test_a_peer_that_stops_answering_pings_is_dropped_and_a_silent_client_is_closed_as_idle(
    platform: str,
) -> None:
    token = await guest()
    settings = {"ORRERY_GATEWAY_PING_INTERVAL_SECONDS": "0.5", "ORRERY_GATEWAY_IDLE_TIMEOUT_SECONDS": "4"}
    with extra_gateway(platform, settings) as base:
        host, port = base.removeprefix("http://").split(":")
        # A peer that completes the handshake and then neither reads nor answers: a vanished phone, say.
        reader, writer = await asyncio.open_connection(host, int(port))
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: bearer, {token}\r\n\r\n"
            ).encode()
        )
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        started, received = time.monotonic(), b""
        async with asyncio.timeout(10):
            while chunk := await reader.read(4096):
                received += chunk
        dropped_after = time.monotonic() - started
        writer.close()
        assert received[0] == 0x89, received  # the server pinged it (a ping frame) ...
        assert dropped_after < 3, dropped_after  # ... and gave up on it unanswered, well before the idle timeout

        # A live client (its library answers pings) that sends nothing is closed as idle, with its own code.
        async with socket(token, base=base) as ws:
            started = time.monotonic()
            with pytest.raises(websockets.ConnectionClosed) as closed:
                async with asyncio.timeout(15):
                    await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408
            assert time.monotonic() - started >= 3.5  # pings alone do not count as activity
