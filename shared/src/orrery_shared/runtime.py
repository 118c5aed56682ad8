"""The composition of a service's infrastructure: Kafka broker, database + outbox relay, Redis.

Each service's `app.py` builds one Runtime, registers its consumers on `runtime.broker`, and hands
`runtime.lifespan` to FastAPI, which starts and stops everything in the right order. Nothing connects at import.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from faststream.kafka import KafkaBroker
from redis.asyncio import Redis

from orrery_shared.db import Database, OutboxRelay, make_engine
from orrery_shared.health import Check
from orrery_shared.kafka import ensure_topics, flush_offsets, make_broker
from orrery_shared.redis import make_redis
from orrery_shared.settings import DatabaseServiceSettings, ServiceSettings

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, service: str, settings: ServiceSettings, *, use_redis: bool = False) -> None:
        self.service = service
        self.settings = settings
        self.broker: KafkaBroker = make_broker(settings.kafka, service)
        self.db: Database | None = None
        self.relay: OutboxRelay | None = None
        if isinstance(settings, DatabaseServiceSettings):
            engine = make_engine(settings.database_url, settings.db_schema, settings.db_pool_size)
            self.db = Database(engine)
            self.relay = OutboxRelay(self.db, self.broker)
        self.redis: Redis | None = make_redis(settings.redis) if use_redis else None
        self._on_start: list[Callable[[], Awaitable[object]]] = []
        self._on_stop: list[Callable[[], Awaitable[object]]] = []

    def on_start(self, callback: Callable[[], Awaitable[object]]) -> None:
        """Start something the service created (a listener, say) once the broker is up."""
        self._on_start.append(callback)

    def on_stop(self, callback: Callable[[], Awaitable[object]]) -> None:
        """Close something the service created (an HTTP client, say) after consumers have stopped."""
        self._on_stop.append(callback)

    @property
    def database(self) -> Database:
        assert self.db is not None, f"{self.service} has no database"
        return self.db

    def checks(self) -> dict[str, Check]:
        checks: dict[str, Check] = {"kafka": self._ping_kafka}
        if self.db:
            checks["postgres"] = self.db.ping
        if self.redis:
            checks["redis"] = self._ping_redis
        return checks

    async def _ping_kafka(self) -> None:
        if not await self.broker.ping(timeout=1.5):
            raise ConnectionError("kafka unreachable")

    async def _ping_redis(self) -> None:
        assert self.redis is not None
        await self.redis.ping()

    async def start(self) -> None:
        if self.settings.kafka.create_topics:
            await ensure_topics(self.settings.kafka)
        await self.broker.start()
        for callback in self._on_start:
            await callback()
        if self.relay:
            self.relay.start()
        log.info("started", extra={"service": self.service})

    async def stop(self) -> None:
        if self.relay:
            await self.relay.stop()
        await flush_offsets(self.broker)
        await self.broker.stop()
        for callback in reversed(self._on_stop):
            await callback()
        if self.db:
            await self.db.dispose()
        if self.redis:
            await self.redis.aclose()

    @asynccontextmanager
    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()
