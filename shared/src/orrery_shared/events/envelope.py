"""The envelope every Kafka message carries: identity, type, time and the turn or request it belongs to."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Base of every event. Subclasses are past-tense facts, one Kafka topic each (the topic is the type)."""

    # Unknown fields are ignored so a newer producer never breaks an older consumer.
    model_config = ConfigDict(extra="ignore", frozen=True)

    TOPIC: ClassVar[str]
    KEY_FIELD: ClassVar[str]
    PARTITIONS: ClassVar[int] = 6

    event_id: UUID = Field(default_factory=uuid4, description="unique per event; consumers dedupe on it")
    type: str = Field(description="the event type, equal to its topic name")
    occurred_at: datetime = Field(default_factory=utcnow, description="when the fact happened (UTC)")
    correlation_id: str | None = Field(
        None, description="the turn or request this event belongs to, for tracing and logs"
    )

    def partition_key(self) -> str:
        """The Kafka message key: events with the same key stay in order."""
        return str(getattr(self, self.KEY_FIELD))
