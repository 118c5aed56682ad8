"""Composition root of the character-gen service: the only module that wires Kafka, Postgres, the LLM and HTTP."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from orrery_character_gen.adapters import LLMPersonaWriter, PortraitChain
from orrery_character_gen.api import router
from orrery_character_gen.handlers import (
    CardImporter,
    CharacterQueries,
    EraseHandler,
    MergeHandler,
    SpinHandler,
    load_presets,
)
from orrery_character_gen.procedural import ProceduralPortraits
from orrery_character_gen.repository import PostgresCharacterStore
from orrery_character_gen.settings import PROCEDURAL, CharacterGenSettings, load
from orrery_shared.auth import JwtVerifier, install_verifier
from orrery_shared.events import CharacterRequested, UserErased, UserMerged
from orrery_shared.kafka import subscribe
from orrery_shared.llm import (
    ImageGenerator,
    LLMClient,
    LLMConfigError,
    LLMSettings,
    build_image_generator,
    load_llm_settings,
    register_image_provider,
)
from orrery_shared.runtime import Runtime
from orrery_shared.service import build_app

log = logging.getLogger(__name__)


def _procedural_factory(_settings: LLMSettings) -> ImageGenerator:
    return ProceduralPortraits()


def _configuration_error(message: str) -> SystemExit:
    print(f"configuration error: {message}", file=sys.stderr)
    return SystemExit(2)


def create_app(
    settings: CharacterGenSettings | None = None,
    *,
    llm_settings: LLMSettings | None = None,
    llm: LLMClient | None = None,
    verifier: JwtVerifier | None = None,
) -> FastAPI:
    """The service: spin and merge consumers, presets at start-up, and the read API."""
    settings = settings or load()
    register_image_provider(PROCEDURAL, _procedural_factory)
    try:
        llm_settings = llm_settings or (llm.settings if llm is not None else load_llm_settings())
        providers = [
            (name, build_image_generator(llm_settings, provider=name))
            for name in settings.image_providers
            if name != PROCEDURAL
        ]
    except LLMConfigError as error:
        raise _configuration_error(str(error)) from None
    owns_llm = llm is None
    llm = llm or LLMClient(llm_settings)
    verifier = verifier or JwtVerifier.from_settings()

    runtime = Runtime("character-gen", settings)
    store = PostgresCharacterStore(runtime.database)
    painter = PortraitChain(
        providers,
        ProceduralPortraits(),
        timeout_s=settings.image_timeout_s,
        size=settings.image_size,
        max_bytes=settings.max_portrait_bytes,
        max_pixels=settings.max_import_pixels,
    )
    writer = LLMPersonaWriter(llm, max_tokens=settings.persona_max_tokens, temperature=settings.persona_temperature)
    spin = SpinHandler(store, writer, painter, recent_window=settings.recent_window, seed=settings.traits_seed)
    group = settings.consumer_group
    subscribe(runtime.broker, CharacterRequested, group, spin, concurrency=settings.concurrency)
    subscribe(runtime.broker, UserMerged, group, MergeHandler(store, f"{group}:user-merged"))
    subscribe(runtime.broker, UserErased, group, EraseHandler(store, f"{group}:user-erased"))

    app = build_app(runtime, "Orrery character-gen", [router])
    app.state.settings = settings
    app.state.queries = CharacterQueries(store, painter)
    app.state.importer = CardImporter(store, painter, max_pixels=settings.max_import_pixels)
    install_verifier(app, verifier)

    @asynccontextmanager
    async def lifespan(instance: FastAPI) -> AsyncIterator[None]:
        try:
            async with runtime.lifespan(instance):
                await load_presets(store, painter, settings.presets_dir)
                yield
        finally:
            await painter.aclose()
            await verifier.aclose()
            if owns_llm:
                await llm.aclose()

    app.router.lifespan_context = lifespan
    return app
