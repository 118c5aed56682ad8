"""Composition root of the dossier service: the only module that wires Kafka, Postgres, the LLM and HTTP together."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import FastAPI

from orrery_dossier import api
from orrery_dossier.deps import install_commands
from orrery_dossier.extractor import LLMExtractor
from orrery_dossier.handlers import (
    ConversationDeletions,
    DossierCommands,
    ExtractionRunner,
    RetryPolicy,
    TurnIntake,
    UserErasures,
    UserMerges,
)
from orrery_dossier.repository import SqlStore
from orrery_dossier.settings import DossierSettings, load
from orrery_dossier.worker import ExtractionWorkers
from orrery_shared.auth import JwtVerifier, install_verifier
from orrery_shared.events import ChatTurnCompleted, ConversationDeleted, UserErased, UserMerged
from orrery_shared.kafka import subscribe
from orrery_shared.llm import LLMClient, LLMConfigError
from orrery_shared.runtime import Runtime
from orrery_shared.service import build_app

RELAY_STOP_SECONDS = 2.0


class DossierRuntime(Runtime):
    """The shared runtime plus the extraction workers, started after the broker and stopped before it."""

    workers: ExtractionWorkers | None = None
    closers: list[Callable[[], Awaitable[None]]]

    async def start(self) -> None:
        await super().start()
        if self.workers is not None:
            self.workers.start()

    async def stop(self) -> None:
        if self.workers is not None:
            await self.workers.stop()
        if self.relay is not None:
            # The relay waits with asyncio.wait_for, which on Python 3.11 swallows a cancel arriving together
            # with a wake-up (a commit just before shutdown), and its stop() would then wait forever. Bounding
            # the first stop cancels it again; the runtime's own stop below then finds it finished.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RELAY_STOP_SECONDS):
                    await self.relay.stop()
        await super().stop()
        for close in self.closers:
            await close()


@dataclass(frozen=True)
class Topics:
    """The event types (and so the topics) the service consumes; tests and benchmarks bind private ones."""

    turns: type[ChatTurnCompleted] = ChatTurnCompleted
    merges: type[UserMerged] = UserMerged
    deletions: type[ConversationDeleted] = ConversationDeleted
    erasures: type[UserErased] = UserErased


def _llm_from_env() -> LLMClient:
    try:
        return LLMClient.from_env()
    except LLMConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def create_app(
    settings: DossierSettings | None = None,
    *,
    llm: LLMClient | None = None,
    verifier: JwtVerifier | None = None,
    topics: Topics | None = None,
) -> FastAPI:
    """The dossier service: turn intake and merges on Kafka, extraction workers, and the HTTP API."""
    settings = settings or load()
    runtime = DossierRuntime("dossier", settings)
    store = SqlStore(runtime.database)
    llm = llm or _llm_from_env()
    verifier = verifier or JwtVerifier.from_settings()
    policy, limits = settings.policy(), settings.limits()
    topics = topics or Topics()

    extractor = LLMExtractor(
        llm, max_dossier_chars=settings.prompt_dossier_max_chars, max_tokens=settings.extraction_max_tokens
    )
    retry = RetryPolicy(settings.lease_seconds, settings.retry_base_seconds, settings.retry_max_seconds)
    runner = ExtractionRunner(store, extractor, policy, limits, retry)
    workers = ExtractionWorkers(runner, settings.extraction_workers, settings.poll_seconds)
    intake = TurnIntake(store, policy, limits, settings.turns_group, on_due=workers.wake)
    merges = UserMerges(store, settings.merges_group)
    deletions = ConversationDeletions(store, policy, settings.deletions_group)
    erasures = UserErasures(store, settings.erasures_group)

    subscribe(
        runtime.broker, topics.turns, settings.turns_group, intake.handle, concurrency=settings.consumer_concurrency
    )
    # A group of its own: sharing the turns' group would make every start-up rebalance the turn consumers too.
    subscribe(runtime.broker, topics.merges, settings.merges_group, merges.handle)
    subscribe(runtime.broker, topics.deletions, settings.deletions_group, deletions.handle)
    subscribe(runtime.broker, topics.erasures, settings.erasures_group, erasures.handle)
    runtime.workers = workers
    runtime.closers = [llm.aclose, verifier.aclose]

    app = build_app(runtime, "Orrery dossier", [api.router])
    install_verifier(app, verifier)
    install_commands(app, DossierCommands(store))
    return app
