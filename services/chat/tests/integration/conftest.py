"""One chat service per test module, in-process, on the real infrastructure and the real stub."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from orrery_chat.settings import ChatSettings
from services.chat.tests.integration.harness import Client, client_for, fresh_groups, llm_env, migrate, running_app
from tests.support.infra import Infra
from tests.support.tokens import TokenMinter


@pytest.fixture(scope="module")
async def chat(
    infra: Infra, llm_stub_url: str, token_minter: TokenMinter
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    await migrate(infra)
    env = pytest.MonkeyPatch()
    for name, value in llm_env(llm_stub_url).items():
        env.setenv(name, value)
    env.setenv("ORRERY_JWT_JWKS", token_minter.jwks)
    # Groups of its own, so a platform running beside the tests never takes these turns.
    settings = ChatSettings(consumer_group_prefix=await fresh_groups(infra), character_wait_seconds=10)
    try:
        async with running_app(settings) as running:
            yield running
    finally:
        env.undo()


@pytest.fixture
async def client(infra: Infra, chat: tuple[FastAPI, httpx.AsyncClient]) -> AsyncIterator[Client]:
    async with client_for(infra) as c:
        yield c
