"""Creates the platform's topics with explicit partition counts (auto-creation is off on purpose)."""

from __future__ import annotations

import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from orrery_shared.events import TopicSpec, all_topics
from orrery_shared.settings import KafkaSettings

log = logging.getLogger(__name__)


async def ensure_topics(
    settings: KafkaSettings, specs: list[TopicSpec] | None = None, replication_factor: int = 1
) -> list[str]:
    """Create every missing topic; returns the names it created."""
    specs = specs if specs is not None else all_topics()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers.split(","))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            # Another instance may create them first.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(s.name, s.partitions, replication_factor) for s in missing],
                    timeout_ms=30_000,
                )
            log.info("created topics", extra={"topics": [s.name for s in missing]})
        return [s.name for s in missing]
    finally:
        await admin.close()


async def _main() -> None:
    created = await ensure_topics(KafkaSettings())
    print(f"topics ready ({len(created)} created)")


if __name__ == "__main__":
    import asyncio

    asyncio.run(_main())
