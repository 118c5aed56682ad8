"""Text PostgreSQL cannot store is refused at the edge with a clear 422, and everything else passes untouched."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from orrery_shared.http import BodyLimit, StorableText, install_error_handlers
from orrery_shared.text import text_problem, unstorable_text


class Note(BaseModel):
    text: str
    tags: list[str] = []


def client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/notes")
    async def note(body: Note) -> dict[str, Any]:
        return body.model_dump()

    @app.get("/notes")
    async def find(q: str = "") -> dict[str, str]:
        return {"q": q}

    app.add_middleware(StorableText)
    app.add_middleware(BodyLimit, max_bytes=100_000)
    return TestClient(app)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ('{"text": "a\\u0000b"}', "text"),
        ('{"text": "ok", "tags": ["fine", "\\u0000"]}', "tags[1]"),
        ('{"text": "lone \\ud800 surrogate"}', "text"),
        ('{"text": "ok", "\\u0000key": 1}', "\u0000key"),
    ],
)
def test_a_json_body_with_unstorable_text_is_refused_naming_the_field(body: str, where: str) -> None:
    response = client().post("/notes", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["message"].startswith(where)


@pytest.mark.parametrize(
    "text", ["plain", "escaped backslash then u0000: \\u0000", "emoji 🪐 and \U0001f600", "tab\tand newline\n"]
)
def test_storable_text_passes_unchanged(text: str) -> None:
    response = client().post("/notes", content=json.dumps({"text": text}), headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    assert response.json()["text"] == text


def test_a_nul_in_the_query_or_path_is_refused() -> None:
    assert client().get("/notes?q=a%00b").status_code == 422
    assert client().get("/notes%00").status_code == 422
    assert client().get("/notes?q=ab").json() == {"q": "ab"}


def test_text_problems_are_named() -> None:
    assert text_problem("fine") is None
    assert text_problem("a\x00") == "contains the NUL character"
    assert text_problem("\ud800") is not None
    assert unstorable_text({"a": [{"b": "x\x00"}]}) == ("a[0].b", "contains the NUL character")
    assert unstorable_text({"a": [1, 2.5, None, True, "ok"]}) is None
