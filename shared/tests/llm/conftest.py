"""A fake of Leonardo.Ai's REST API, served by uvicorn on a loopback port inside the test process."""

from __future__ import annotations

import asyncio
import base64
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

# A 1x1 PNG.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC")
API_KEY = "leo-test-key"


@dataclass
class FakeLeonardo:
    """State of the fake: how many polls until a generation completes, and what it saw."""

    base_url: str = ""
    api_key: str = API_KEY
    png: bytes = PNG
    polls_until_complete: int = 2
    outcome: str = "COMPLETE"
    created: list[dict[str, Any]] = field(default_factory=list)
    polls: dict[str, int] = field(default_factory=dict)
    auth_headers: list[tuple[str, str | None]] = field(default_factory=list)

    def reset(self) -> None:
        self.polls_until_complete = 2
        self.outcome = "COMPLETE"
        self.created.clear()
        self.polls.clear()
        self.auth_headers.clear()


def leonardo_app(fake: FakeLeonardo) -> FastAPI:
    app = FastAPI()

    @app.post("/api/rest/v1/generations")
    async def create(request: Request) -> Response:
        fake.auth_headers.append((request.url.path, request.headers.get("authorization")))
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return JSONResponse({"error": "Invalid API key", "code": "invalid-jwt"}, status_code=401)
        body = await request.json()
        fake.created.append(body)
        generation_id = str(uuid.uuid4())
        fake.polls[generation_id] = 0
        return JSONResponse({"sdGenerationJob": {"generationId": generation_id, "apiCreditCost": 8}})

    @app.get("/api/rest/v1/generations/{generation_id}")
    async def poll(generation_id: str, request: Request) -> Response:
        fake.auth_headers.append((request.url.path, request.headers.get("authorization")))
        if generation_id not in fake.polls:
            return JSONResponse({"error": "not found"}, status_code=404)
        fake.polls[generation_id] += 1
        done = fake.polls_until_complete >= 0 and fake.polls[generation_id] >= fake.polls_until_complete
        status = fake.outcome if done else "PENDING"
        images = [{"id": "img-1", "url": f"{fake.base_url}/cdn/{generation_id}.png", "nsfw": False}]
        return JSONResponse(
            {
                "generations_by_pk": {
                    "id": generation_id,
                    "status": status,
                    "generated_images": images if status == "COMPLETE" else [],
                }
            }
        )

    @app.get("/cdn/{name}")
    async def image(name: str, request: Request) -> Response:
        fake.auth_headers.append((request.url.path, request.headers.get("authorization")))
        return Response(PNG, media_type="image/png")

    return app


@pytest.fixture(scope="session")
async def _leonardo_server() -> AsyncIterator[FakeLeonardo]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    fake = FakeLeonardo(base_url=f"http://127.0.0.1:{port}")
    config = uvicorn.Config(leonardo_app(fake), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield fake
    finally:
        server.should_exit = True
        await task


@pytest.fixture
def fake_leonardo(_leonardo_server: FakeLeonardo) -> FakeLeonardo:
    """The fake Leonardo API (base URL of its REST API is `base_url + "/api/rest/v1"`), reset per test."""
    _leonardo_server.reset()
    return _leonardo_server
