"""The one registry of topic ↔ event model, and the topics (with partition counts) the platform needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orrery_shared.events.envelope import Event
from orrery_shared.events.models import (
    CharacterCreated,
    CharacterFailed,
    CharacterRequested,
    ChatTurnCompleted,
    ChatTurnFailed,
    ChatTurnRequested,
    ConversationDeleted,
    DossierUpdated,
    UserErased,
    UserMerged,
    UserRegistered,
)

EVENT_TYPES: tuple[type[Event], ...] = (
    UserRegistered,
    UserMerged,
    UserErased,
    CharacterRequested,
    CharacterCreated,
    CharacterFailed,
    ChatTurnRequested,
    ChatTurnCompleted,
    ChatTurnFailed,
    ConversationDeleted,
    DossierUpdated,
)

_BY_TOPIC: dict[str, type[Event]] = {cls.TOPIC: cls for cls in EVENT_TYPES}

DLQ_SUFFIX = ".dlq"
DLQ_PARTITIONS = 3


class UnknownEventType(LookupError):
    """A topic or type name that no event model claims."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int


def model_for(topic: str) -> type[Event]:
    """The event model published on `topic`."""
    try:
        return _BY_TOPIC[topic]
    except KeyError:
        raise UnknownEventType(topic) from None


def dlq_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


def all_topics() -> list[TopicSpec]:
    """Every topic, its dead-letter topic included, with explicit partition counts."""
    specs = []
    for cls in EVENT_TYPES:
        specs.append(TopicSpec(cls.TOPIC, cls.PARTITIONS))
        specs.append(TopicSpec(dlq_topic(cls.TOPIC), DLQ_PARTITIONS))
    return specs


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of every event, keyed by topic."""
    return {cls.TOPIC: cls.model_json_schema() for cls in EVENT_TYPES}
