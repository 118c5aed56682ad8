"""Schemathesis over the gateway's whole public API, as its OpenAPI document describes it, with every check.

A signed-in user with seeded objects (a character, a conversation with a reply, its dossier, a turn) is fuzzed
through every operation of `/openapi.json`: no request may make the platform fail (5xx), every answer must be
one the document lists (status, content type, body schema), an undeclared method must be 405 with `Allow`, and
so on: every check schemathesis has is on (its default), and off only where listed below. The suite runs a
short version; `make fuzz-api` runs ≥ 20,000 cases
(`ORRERY_FUZZ_EXAMPLES` sets the examples per operation and phase).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.infra import ROOT
from tests.support.llm_stub import StubControl
from tests.support.platform import GATEWAY

from .test_gateway import guest, receive_until, send, socket, spin_character, start

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("ORRERY_FUZZ_EXAMPLES", "20"))
EXTRA_ARGS = os.environ.get("ORRERY_FUZZ_ARGS", "").split()
MIN_CASES = int(os.environ.get("ORRERY_FUZZ_MIN_CASES", "1500"))

# The checks that stay off, per operation, and why: what these routes accept is checked beyond what JSON Schema
# can say, so data valid by the schema alone is rightly refused.
BEYOND_SCHEMA = {
    "/api/auth/magic-link": "an address's syntax and a display name's Unicode categories",
    "/api/auth/guest": "a display name's Unicode categories",
    "/api/characters/import": "a character card inside JSON or a PNG chunk",
    "/api/conversations/import": "a chat file, one JSON object per line",
    "/api/dossiers/{project_id}": "character names unique ignoring case and spacing",
}


def config(seeded: dict[str, str]) -> str:
    """The schemathesis.toml of a run: the user's token, the seeded objects' ids offered as path parameters
    (half the time; generated ids the other half), and the exceptions above."""
    lines = [
        f'headers = {{ Authorization = "Bearer {seeded["token"]}" }}',
        "request-timeout = 60",
        "continue-on-failure = true",
        "cache.enabled = false",
        'hooks = "tests.e2e.schemathesis_hooks"',
        f"generation.max-examples = {EXAMPLES}",
        "",
        "[parameters]",
    ]
    for name in ("character_id", "conversation_id", "project_id", "turn_id"):
        lines.append(f'"path.{name}" = {{ dictionary = "{name}", probability = 0.5 }}')
    lines.append("")
    for name in ("character_id", "conversation_id", "project_id", "turn_id"):
        lines += [f"[dictionaries.{name}]", f'values = ["{seeded[name]}"]', ""]
    for path, why in BEYOND_SCHEMA.items():
        lines += [
            f"# {why}",
            "[[operations]]",
            f'include-path = "{path}"',
            "checks.positive_data_acceptance.enabled = false",
            "",
        ]
    lines += [
        "# A reply no longer kept is gone (410) however well its request is formed.",
        "[[operations]]",
        'include-name = "GET /api/turns/{turn_id}/stream"',
        'checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "410", "429"]',
        "",
        "# Erasing the account would sign the user out for the rest of the run (tests/e2e/test_my_data.py).",
        "[[operations]]",
        'include-name = "DELETE /api/me"',
        "enabled = false",
    ]
    return "\n".join(lines) + "\n"


async def seed() -> dict[str, str]:
    """A user with a character, a conversation with a reply (and so a turn), and the conversation's dossier."""
    token = await guest()
    async with socket(token) as ws:
        character = await spin_character(ws)
        started = await start(ws, character["id"])
        await send(ws, {"type": "message", "conversation_id": started["conversation_id"], "content": "Hello."})
        frames = await receive_until(ws, "turn.done")
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=GATEWAY, headers=headers, timeout=30) as http:
        conversation = (await http.get(f"/api/conversations/{started['conversation_id']}")).json()
        project = conversation["project_id"]
        body = {"snapshot_json": {"themes": ["Exile"]}, "title": "Seeded"}
        assert (await http.post(f"/api/dossiers/{project}", json=body)).status_code == 201
    return {
        "token": token,
        "character_id": character["id"],
        "conversation_id": started["conversation_id"],
        "project_id": project,
        "turn_id": frames[0]["turn_id"],
    }


def run_schemathesis(seeded: dict[str, str], workdir: Path) -> tuple[int, str]:
    config_file = workdir / "schemathesis.toml"
    config_file.write_text(config(seeded))
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(config_file),
        "run",
        f"{GATEWAY}/openapi.json",
        "--no-color",
        *EXTRA_ARGS,
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=3_600)
    return done.returncode, done.stdout + done.stderr


def cases_of(output: str) -> int:
    found = re.search(r"(\d+) generated", output)
    assert found, output[-2_000:]
    return int(found.group(1))


def test_the_document_is_the_one_the_gateway_serves(platform: str) -> None:
    served: dict[str, Any] = httpx.get(f"{GATEWAY}/openapi.json", timeout=10).json()
    committed = (ROOT / "services" / "gateway" / "src" / "orrery_gateway" / "public_openapi.json").read_text()
    assert served == json.loads(committed)
    assert {"/api/conversations/{conversation_id}", "/api/dossiers/{project_id}", "/api/chat"} <= set(served["paths"])


async def test_no_request_of_the_public_api_fails_or_strays_from_its_document(
    stub: StubControl, tmp_path: Path
) -> None:
    seeded = await seed()
    code, output = run_schemathesis(seeded, tmp_path)
    cases = cases_of(output)
    print(f"schemathesis: {cases} cases", file=sys.stderr)
    assert code == 0, output[-20_000:]
    assert cases >= MIN_CASES, output[-2_000:]
