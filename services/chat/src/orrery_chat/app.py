"""Composition root of the chat service: the only module that wires Kafka, Postgres, Redis and the LLM."""

import functools

from fastapi import FastAPI

from orrery_chat.api import router
from orrery_chat.domain import MemoryPolicy
from orrery_chat.handlers import (
    ChatDeps,
    erase_user,
    forget_conversation,
    handle_turn,
    project_character,
    reown_after_merge,
)
from orrery_chat.settings import ChatSettings, load
from orrery_chat.store import PostgresTurnStore
from orrery_chat.streams import RedisTokenStream
from orrery_shared.auth import JwtVerifier, install_verifier
from orrery_shared.db import Transaction, idempotent
from orrery_shared.events import CharacterCreated, ChatTurnRequested, ConversationDeleted, UserErased, UserMerged
from orrery_shared.kafka import subscribe
from orrery_shared.llm import LLMClient
from orrery_shared.llm.tokens import estimate_tokens
from orrery_shared.runtime import Runtime
from orrery_shared.service import build_app

TOKEN_ESTIMATES_KEPT = 16_384  # messages; a few MB, a window's worth for hundreds of active conversations


def create_app(settings: ChatSettings | None = None) -> FastAPI:
    settings = settings or load()
    runtime = Runtime("chat", settings, use_redis=True)
    assert runtime.redis is not None
    llm = LLMClient.from_env()
    redis = runtime.redis
    stream_ttls = {
        "active_ttl": settings.stream_active_ttl_seconds,
        "finished_ttl": settings.stream_finished_ttl_seconds,
    }
    deps = ChatDeps(
        store=PostgresTurnStore(runtime.database),
        open_stream=lambda turn_id: RedisTokenStream(redis, turn_id, **stream_ttls),
        db=runtime.database,
        redis=redis,
        llm=llm,
        # A conversation's recent messages are priced again on every turn: remember their prices.
        count=functools.lru_cache(maxsize=TOKEN_ESTIMATES_KEPT)(estimate_tokens),
        policy=MemoryPolicy(settings.memory_window_tokens, settings.memory_fold_share),
        character_wait_s=settings.character_wait_seconds,
        turn_expiry_s=settings.turn_expiry_seconds,
        stream_active_ttl=settings.stream_active_ttl_seconds,
        stream_finished_ttl=settings.stream_finished_ttl_seconds,
    )

    group = settings.consumer_group_prefix

    async def on_turn(event: ChatTurnRequested) -> None:
        await handle_turn(event, deps)

    # Turns of one conversation stay in order (the topic is keyed by conversation); different
    # conversations are answered concurrently, so one long reply never delays another user's.
    subscribe(runtime.broker, ChatTurnRequested, f"{group}.turns", on_turn, concurrency=settings.turn_concurrency)

    projection = idempotent(runtime.database, f"{group}.characters", project_character)
    subscribe(runtime.broker, CharacterCreated, f"{group}.characters", projection)

    merges = idempotent(runtime.database, f"{group}.merges", reown_after_merge)
    subscribe(runtime.broker, UserMerged, f"{group}.merges", merges)

    async def on_deleted(event: ConversationDeleted) -> None:
        await forget_conversation(event, deps)

    subscribe(runtime.broker, ConversationDeleted, f"{group}.deletions", on_deleted)

    async def on_erased(event: UserErased, tx: Transaction) -> None:
        await erase_user(event, tx, deps)

    erasures = idempotent(runtime.database, f"{group}.erasures", on_erased)
    subscribe(runtime.broker, UserErased, f"{group}.erasures", erasures)

    async def open_llm() -> None:
        llm.open_routed_providers()

    runtime.on_start(open_llm)
    runtime.on_stop(llm.aclose)
    runtime.on_stop(deps.drain)

    app = build_app(runtime, "Orrery chat", [router])
    app.state.chat = deps
    verifier = JwtVerifier.from_settings()
    install_verifier(app, verifier)
    runtime.on_stop(verifier.aclose)
    return app
