"""Event envelope, the v1 event models and their topic registry."""

from orrery_shared.events.envelope import Event, utcnow
from orrery_shared.events.models import (
    CharacterCreated,
    CharacterFailed,
    CharacterRequested,
    ChatTurnCompleted,
    ChatTurnFailed,
    ChatTurnRequested,
    DossierCharacter,
    DossierSnapshot,
    DossierUpdated,
    MessageRecord,
    TokenUsage,
    TraitOverrides,
    UserMerged,
    UserRegistered,
)
from orrery_shared.events.registry import (
    EVENT_TYPES,
    TopicSpec,
    UnknownEventType,
    all_topics,
    dlq_topic,
    json_schemas,
    model_for,
)

__all__ = [
    "EVENT_TYPES",
    "CharacterCreated",
    "CharacterFailed",
    "CharacterRequested",
    "ChatTurnCompleted",
    "ChatTurnFailed",
    "ChatTurnRequested",
    "DossierCharacter",
    "DossierSnapshot",
    "DossierUpdated",
    "Event",
    "MessageRecord",
    "TokenUsage",
    "TopicSpec",
    "TraitOverrides",
    "UnknownEventType",
    "UserMerged",
    "UserRegistered",
    "all_topics",
    "dlq_topic",
    "json_schemas",
    "model_for",
    "utcnow",
]
