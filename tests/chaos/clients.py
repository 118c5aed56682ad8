"""The users of a chaos run, and what they saw.

Each user signs in as a guest, spins a character and chats with it through both gateways, as a browser would,
now and then regenerating or continuing the last reply instead of sending a message; a dropped socket is
reopened (on the other gateway) and the reply in flight resumed after the last `seq` seen; a few users drop
their socket on purpose mid-reply. Every frame is recorded with the time it arrived, so the run
can tell whether each reply arrived gapless and without repeats, what errors users saw, and how long replies
stalled after each fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection, connect

FRAME_WAIT_S = 150.0  # longer than the gateway's own silence limit (120 s): the platform reports, not the client
DROP_MID_REPLY = 0.08  # the share of replies during which a user closes the socket and resumes elsewhere
REGENERATE = 0.12  # the share of turns that regenerate the last reply
CONTINUE = 0.08  # the share that continue it


@dataclass
class TurnSeen:
    turn_id: str
    user: str
    accepted_at: float
    mode: str = "reply"
    last_seq: int = 0
    frames: list[tuple[float, str, int]] = field(default_factory=list)  # (arrived, type, seq)
    final: str | None = None  # turn.done | turn.failed
    reason: str | None = None
    message_id: str | None = None  # the stored reply (turn.done)
    retryable: bool = True  # what turn.failed said
    gaps: int = 0
    repeats: int = 0

    def saw(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "turn.delayed":
            return
        seq = int(frame["seq"])
        self.frames.append((time.time(), kind, seq))
        if seq <= self.last_seq:
            self.repeats += 1
            return
        if seq != self.last_seq + 1 and kind != "turn.restart":
            # A restart may follow entries a reader never saw (Redis lost them): it discards the text so far, so
            # nothing is missing. Anything else arriving past a missing seq is a gap.
            self.gaps += 1
        self.last_seq = seq
        if kind in ("turn.done", "turn.failed"):
            self.final = kind
            self.reason = frame.get("reason")
            self.retryable = bool(frame.get("retryable", True))
            self.message_id = frame.get("message_id")

    @property
    def refused_for_its_message(self) -> bool:
        """Chat refused the turn for the message it names (it was never recorded, so never stored)."""
        return self.final == "turn.failed" and (self.reason or "").startswith(("not_allowed", "message_not_found"))


@dataclass
class Observations:
    turns: dict[str, TurnSeen] = field(default_factory=dict)
    spins: dict[str, str | None] = field(default_factory=dict)  # request_id -> character.ready / .failed / None
    errors: Counter[tuple[str, bool]] = field(default_factory=Counter)  # (code, retryable)
    reconnects: int = 0
    users: list[str] = field(default_factory=list)
    examples: dict[str, str] = field(default_factory=dict)  # code -> the first message seen with it

    def error(self, code: str, retryable: bool, message: str = "") -> None:
        self.errors[(code, retryable)] += 1
        self.examples.setdefault(code, message)


class Dropped(Exception):
    """The socket closed (or was closed on purpose): open another and resume."""


class User:
    def __init__(self, gateways: list[str], observations: Observations, rng: random.Random) -> None:
        self.gateways = gateways
        self.seen = observations
        self.rng = rng
        self.user_id = ""
        self.access = ""
        self.refresh = ""
        self.character: str | None = None
        self.conversation: str | None = None
        self.in_flight: TurnSeen | None = None
        self.last_reply: str | None = None  # the last reply stored, to regenerate or continue

    # --- sessions ---------------------------------------------------------------------------------------------

    async def _http(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        for base in self.rng.sample(self.gateways, len(self.gateways)):
            try:
                async with httpx.AsyncClient(base_url=base, timeout=15) as http:
                    response = await http.post(path, json=body)
            except httpx.HTTPError:
                continue
            if response.status_code < 300:
                found: dict[str, Any] = response.json()
                return found
            self.seen.error(f"http_{response.status_code}", response.status_code >= 500 or response.status_code == 429)
            if response.status_code == 401:
                return None
        return None

    async def sign_in(self) -> None:
        while True:
            tokens = await self._http("/api/auth/guest", {})
            if tokens is not None:
                break
            await asyncio.sleep(1)
        self.access, self.refresh = tokens["access_token"], tokens["refresh_token"]
        self.user_id = tokens["user"]["id"]
        self.seen.users.append(self.user_id)

    async def renew(self) -> None:
        tokens = await self._http("/api/auth/refresh", {"refresh_token": self.refresh})
        if tokens is None:
            await self.sign_in()  # the session is lost (auth restarted mid-rotation, say): start over as a guest
            self.character = self.conversation = None
            return
        self.access, self.refresh = tokens["access_token"], tokens["refresh_token"]

    # --- the socket -------------------------------------------------------------------------------------------

    async def run(self, until: float) -> None:
        await self.sign_in()
        while time.time() < until:
            base = self.rng.choice(self.gateways).replace("http://", "ws://")
            try:
                async with connect(f"{base}/ws", subprotocols=["bearer", self.access], open_timeout=10) as ws:  # type: ignore[list-item]
                    await self.session(ws, until)
            except (Dropped, OSError, TimeoutError, websockets.ConnectionClosed, websockets.InvalidHandshake) as why:
                closed = getattr(why, "rcvd", None)
                if closed is not None and closed.code == 4401:
                    await self.renew()
                self.seen.reconnects += 1
                await asyncio.sleep(self.rng.uniform(0.2, 1.0))
        if self.in_flight is not None and self.in_flight.final is None:
            await self.finish_in_flight(until + 240)

    async def finish_in_flight(self, deadline: float) -> None:
        """After the run, wait for the reply still in flight (through any gateway), so its outcome is seen."""
        while time.time() < deadline and self.in_flight is not None and self.in_flight.final is None:
            base = self.rng.choice(self.gateways).replace("http://", "ws://")
            with contextlib.suppress(Exception):
                async with connect(f"{base}/ws", subprotocols=["bearer", self.access], open_timeout=10) as ws:  # type: ignore[list-item]
                    await self.resume(ws)
                    await self.follow(ws, self.in_flight, may_drop=False)
            await asyncio.sleep(1)

    async def session(self, ws: ClientConnection, until: float) -> None:
        if self.in_flight is not None and self.in_flight.final is None:
            await self.resume(ws)
            await self.follow(ws, self.in_flight, may_drop=True)
        if self.character is None:
            self.character = await self.spin(ws)
        if self.conversation is None:
            await send(ws, {"type": "start_conversation", "character_id": self.character})
            started = await self.expect(ws, "conversation.started")
            if started is None:
                raise Dropped  # refused (recorded): open another socket and start again
            self.conversation = started["conversation_id"]
        while time.time() < until:
            await send(ws, self.next_turn())
            accepted = await self.expect(ws, "turn.accepted")
            if accepted is None:
                await asyncio.sleep(1)  # refused (an error frame was recorded): try again
                continue
            turn = TurnSeen(accepted["turn_id"], self.user_id, time.time(), accepted.get("mode", "reply"))
            self.seen.turns[turn.turn_id] = turn
            self.in_flight = turn
            await self.follow(ws, turn, may_drop=True)
            self.last_reply = turn.message_id if turn.final == "turn.done" else None
            await asyncio.sleep(self.rng.uniform(0.1, 0.6))

    def next_turn(self) -> dict[str, Any]:
        """A message, or now and then a regenerate or a continue of the last reply."""
        draw = self.rng.random()
        if self.last_reply is not None and draw < REGENERATE:
            return {"type": "regenerate", "message_id": self.last_reply}
        if self.last_reply is not None and draw < REGENERATE + CONTINUE:
            return {"type": "continue", "message_id": self.last_reply}
        return {
            "type": "message",
            "conversation_id": self.conversation,
            "content": f"Tell me about the {self.rng.choice(WORDS)} of {self.rng.choice(WORDS)}.",
            "client_msg_id": uuid.uuid4().hex[:12],
        }

    async def spin(self, ws: ClientConnection) -> str:
        while True:
            await send(ws, {"type": "spin"})
            generating = await self.expect(ws, "character.generating")
            if generating is None:
                await asyncio.sleep(1)
                continue
            request_id = generating["request_id"]
            self.seen.spins[request_id] = None
            outcome = await self.expect(ws, "character.ready", "character.failed", wait=120)
            if outcome is None:
                continue
            self.seen.spins[request_id] = outcome["type"]
            if outcome["type"] == "character.ready":
                return str(outcome["character"]["id"])

    async def resume(self, ws: ClientConnection) -> None:
        assert self.in_flight is not None
        await send(ws, {"type": "resume", "turn_id": self.in_flight.turn_id, "after_seq": self.in_flight.last_seq})

    async def follow(self, ws: ClientConnection, turn: TurnSeen, may_drop: bool) -> None:
        drop_at = self.rng.randint(2, 12) if may_drop and self.rng.random() < DROP_MID_REPLY else None
        while turn.final is None:
            frame = await receive(ws, FRAME_WAIT_S)
            if frame["type"] == "error":
                self.seen.error(
                    frame.get("code", "error"), bool(frame.get("retryable", True)), frame.get("message", "")
                )
                if frame.get("code") in ("not_found", "gone"):
                    self.in_flight = None  # the reply cannot be followed any more; its outcome is in the database
                    return
                continue
            if frame.get("turn_id") != turn.turn_id:
                continue
            turn.saw(frame)
            if turn.final == "turn.failed":
                self.seen.error(f"turn_failed:{turn.reason}", turn.retryable)
            if drop_at is not None and turn.last_seq >= drop_at and turn.final is None:
                await ws.close()
                raise Dropped

    async def expect(self, ws: ClientConnection, *kinds: str, wait: float = 60) -> dict[str, Any] | None:
        """The next frame of one of `kinds`; None (recorded) for an error frame."""
        deadline = time.time() + wait
        while True:
            frame = await receive(ws, max(0.1, deadline - time.time()))
            if frame["type"] in kinds:
                return frame
            if frame["type"] == "error":
                self.seen.error(
                    frame.get("code", "error"), bool(frame.get("retryable", True)), frame.get("message", "")
                )
                return None
            if self.in_flight is not None and frame.get("turn_id") == self.in_flight.turn_id:
                self.in_flight.saw(frame)


async def send(ws: ClientConnection, frame: dict[str, Any]) -> None:
    await ws.send(json.dumps(frame))


async def receive(ws: ClientConnection, wait: float) -> dict[str, Any]:
    async with asyncio.timeout(wait):
        frame: dict[str, Any] = json.loads(await ws.recv())
    return frame


WORDS = ["moons", "comets", "the ice sea", "Kepler", "the ferrymen", "lost maps", "the Veil", "old storms", "glass"]
