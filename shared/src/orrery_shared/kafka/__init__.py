"""Kafka through FastStream: the broker factory, topic bootstrap and the dead-lettering subscriber."""

from orrery_shared.kafka.broker import encode, event_headers, make_broker, publish_event
from orrery_shared.kafka.consumer import PermanentError, flush_offsets, subscribe
from orrery_shared.kafka.topics import ensure_topics

__all__ = [
    "PermanentError",
    "encode",
    "ensure_topics",
    "event_headers",
    "flush_offsets",
    "make_broker",
    "publish_event",
    "subscribe",
]
