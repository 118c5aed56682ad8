"""Every gateway instance reads the notification topics whole (no consumer group: each instance must see
every event) from the moment it starts, and pushes each event to the sockets of its user held here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from orrery_gateway.hub import Hub
from orrery_shared.events import CharacterCreated, CharacterFailed, ChatTurnFailed, DossierUpdated, Event

log = logging.getLogger(__name__)

TOPICS: dict[str, type[Event]] = {
    cls.TOPIC: cls for cls in (CharacterCreated, CharacterFailed, DossierUpdated, ChatTurnFailed)
}


def character_view(event: CharacterCreated) -> dict[str, Any]:
    """The character as clients see it (the same fields as the characters API)."""
    return {
        "id": str(event.character_id),
        "owner_user_id": str(event.owner_user_id) if event.owner_user_id else None,
        "name": event.name,
        "planet": event.planet,
        "sex": event.sex,
        "species": event.species,
        "archetype": event.archetype,
        "personality": event.personality,
        "backstory": event.backstory,
        "speaking_style": event.speaking_style,
        "greeting": event.greeting,
        "tags": list(event.tags),
        "portrait_url": event.portrait_url,
        "portrait_provider": event.portrait_provider,
    }


async def deliver(hub: Hub, event: Event) -> None:
    """Turn one event into the frame its user's sockets receive."""
    frame: dict[str, Any]
    if isinstance(event, CharacterCreated) and event.owner_user_id and event.request_id:
        frame = {"type": "character.ready", "request_id": str(event.request_id), "character": character_view(event)}
        await hub.push(event.owner_user_id, frame)
    elif isinstance(event, CharacterFailed):
        frame = {
            "type": "character.failed",
            "request_id": str(event.request_id),
            "reason": event.reason,
            "retryable": event.retryable,
        }
        await hub.push(event.user_id, frame)
    elif isinstance(event, DossierUpdated):
        hub.project_changed(event.project_id)
        frame = {"type": "dossier.updated", "project_id": str(event.project_id), "version": event.version}
        await hub.push(event.user_id, frame)
    elif isinstance(event, ChatTurnFailed):
        # Sockets relaying the turn already saw its `turn.failed` from the token stream.
        frame = {
            "type": "turn.failed",
            "turn_id": str(event.turn_id),
            "reason": event.reason,
            "retryable": event.retryable,
        }
        await hub.push(event.user_id, frame, unless_relaying=event.turn_id)


class NotificationListener:
    def __init__(self, bootstrap: str, hub: Hub) -> None:
        self.bootstrap = bootstrap
        self.hub = hub
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap.split(","), enable_auto_commit=False)
        await consumer.start()
        partitions = [
            TopicPartition(topic, partition) for topic, model in TOPICS.items() for partition in range(model.PARTITIONS)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:  # fix the starting point now, so nothing published after start is skipped
            await consumer.position(tp)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name="notifications")

    async def _run(self) -> None:
        assert self._consumer is not None
        async for record in self._consumer:
            try:
                event = TOPICS[record.topic].model_validate_json(record.value or b"")
            except ValidationError:
                continue  # its producer's consumers dead-letter it; a notification has nothing to add
            try:
                await deliver(self.hub, event)
            except Exception:
                log.exception("notification not delivered", extra={"topic": record.topic})

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer:
            await self._consumer.stop()
