"""Thousands of malformed frames on one socket: each gets an `error` frame, the socket lives, others are served.

The frames are generated from a fixed seed (reproducible), and none is a valid request that would do something
(no ping, no spin without bad traits, no message the gateway could accept), so every one must be refused with
one of the documented error codes — never a close with 1011, never silence.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import string
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.support.platform import GATEWAY

pytestmark = pytest.mark.e2e

FRAMES = int(os.environ.get("ORRERY_WS_FUZZ_FRAMES", "2000"))
ERROR_CODES = {"bad_json", "unknown_type", "invalid", "too_large", "not_found", "rate_limited"}
TYPES = ["message", "start_conversation", "cancel", "resume", "spin"]


def weird_value(rng: random.Random) -> Any:
    return rng.choice(
        [
            None,
            True,
            -1,
            2**63,
            1e308,
            "",
            "x" * rng.randint(1, 300),
            "not-a-uuid",
            "\u0000",
            "\ud800",
            [],
            {},
            [1, [2, [3]]],
            {"nested": {"deeper": None}},
            "".join(rng.choice(string.printable) for _ in range(rng.randint(1, 40))),
        ]
    )


def bad_field_frame(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(TYPES)
    frame: dict[str, Any] = {"type": kind}
    if kind == "message":
        # A conversation that is nobody's, or content/fields of the wrong shape: never an accepted turn.
        frame["conversation_id"] = rng.choice([str(uuid.uuid4()), weird_value(rng)])
        frame["content"] = rng.choice(["hello", weird_value(rng)])
        if rng.random() < 0.3:
            frame["client_msg_id"] = weird_value(rng)
    elif kind == "start_conversation":
        frame[rng.choice(["character_id", "conversation_id", "project_id"])] = rng.choice(
            [str(uuid.uuid4()), weird_value(rng)]
        )
    elif kind in ("cancel", "resume"):
        frame["turn_id"] = rng.choice([str(uuid.uuid4()), weird_value(rng)])
        if kind == "resume":
            frame["after_seq"] = rng.choice([0, -5, 2**40, "3", weird_value(rng)])
    else:  # spin, always with traits that cannot be valid
        frame["traits"] = rng.choice(["sorcerer", 7, [1], {"species": {"no": 1}}, {"sex": 5}])
    return frame


def generators() -> list[Callable[[random.Random], str | bytes]]:
    return [
        lambda r: bytes(r.getrandbits(8) for _ in range(r.randint(1, 200))),  # binary noise
        lambda r: "".join(r.choice(string.printable) for _ in range(r.randint(1, 200))),  # text noise
        lambda r: json.dumps(r.choice([1, "text", None, [1, 2], True, 3.5])),  # JSON, not an object
        lambda r: json.dumps({"type": r.choice(["dance", "", "PING", "Message", 42, None])}),  # unknown types
        lambda r: json.dumps({"no_type": weird_value(r)}),
        lambda r: json.dumps(bad_field_frame(r))[: r.randint(1, 60)],  # truncated
        lambda r: json.dumps(bad_field_frame(r)),
        lambda r: json.dumps(bad_field_frame(r)),
        lambda r: "[" * r.randint(1_000, 20_000),  # deeper than the parser goes, unterminated
        lambda r: '{"type": "message", "content": ' + "[" * 5_000 + "]" * 5_000 + "}",
        lambda r: '{"type": "resume", "turn_id": "' + str(uuid.uuid4()) + '", "after_seq": 1' + "0" * 5_000 + "}",
        lambda r: json.dumps({"type": "message", "content": "y" * 70_000}),  # over the frame limit
    ]


async def test_malformed_frames_are_each_answered_and_the_socket_lives(platform: str) -> None:
    async with httpx.AsyncClient(base_url=GATEWAY) as http:
        fuzzed, other = [(await http.post("/api/auth/guest", json={})).json()["access_token"] for _ in range(2)]
    rng = random.Random(20261206)
    makers = generators()
    codes: Counter[str] = Counter()
    url = GATEWAY.replace("http://", "ws://") + "/ws"
    async with (
        connect(url, subprotocols=["bearer", fuzzed], max_size=2**22) as ws,  # type: ignore[list-item]
        connect(url, subprotocols=["bearer", other]) as bystander,  # type: ignore[list-item]
    ):
        for n in range(FRAMES):
            raw = rng.choice(makers)(rng)
            await ws.send(raw)
            answer = json.loads(await asyncio.wait_for(ws.recv(), 30))
            assert answer["type"] == "error" and answer["code"] in ERROR_CODES, (n, str(raw)[:120], answer)
            codes[answer["code"]] += 1
            if n % 500 == 0:  # another user is served all along
                await bystander.send(json.dumps({"type": "ping"}))
                assert json.loads(await asyncio.wait_for(bystander.recv(), 10)) == {"type": "pong"}
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}
    assert sum(codes.values()) == FRAMES
    assert {"bad_json", "unknown_type", "invalid", "too_large", "not_found"} <= set(codes), codes
