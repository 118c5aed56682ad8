"""AsyncAPI 3.0 documents of the services' Kafka interfaces: `python -m scripts.asyncapi` (part of `make docs`).

Writes docs/asyncapi/<service>.yaml for every service that produces or consumes events: the topics and their
partition counts come from the registry in orrery_shared.events, the payload schemas from the event models,
and who publishes or consumes what from the table below, which tests/deploy/test_asyncapi.py checks against
the code (the events each service constructs, the subscribe() calls its app makes, the gateway's notification
topics). `--check` writes nothing and exits 1 when a document is stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

from orrery_shared.events import (
    CharacterCreated,
    CharacterFailed,
    CharacterRequested,
    ChatTurnCompleted,
    ChatTurnFailed,
    ChatTurnRequested,
    ConversationDeleted,
    DossierUpdated,
    Event,
    UserErased,
    UserMerged,
    UserRegistered,
    dlq_topic,
)
from orrery_shared.events.registry import DLQ_PARTITIONS
from scripts.generated import write_or_check

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "asyncapi"
KAFKA_BINDING = "0.5.0"
SCHEMAS = "#/components/schemas/"


@dataclass(frozen=True)
class Consumes:
    """A topic a service reads: through a consumer group (work shared by replicas), or whole by every instance."""

    event: type[Event]
    group: str | None


@dataclass(frozen=True)
class Interface:
    description: str
    publishes: tuple[type[Event], ...] = ()
    consumes: tuple[Consumes, ...] = ()


# Consumer groups are the services' defaults (ORRERY_<SERVICE>_CONSUMER_GROUP / _CONSUMER_GROUP_PREFIX).
INTERFACES: dict[str, Interface] = {
    "gateway": Interface(
        "The public edge publishes the users' commands and pushes notifications to their sockets. Every instance "
        "reads the notification topics whole, from the end, without a consumer group: each must see every event "
        "for the users it holds.",
        publishes=(CharacterRequested, ChatTurnRequested),
        consumes=(
            Consumes(CharacterCreated, None),
            Consumes(CharacterFailed, None),
            Consumes(DossierUpdated, None),
            Consumes(ChatTurnFailed, None),
        ),
    ),
    "auth": Interface(
        "Sign-in publishes new users, guest-to-account merges and erased accounts through its transactional outbox.",
        publishes=(UserRegistered, UserMerged, UserErased),
    ),
    "character-gen": Interface(
        "The roulette answers spins with a character (or the reason there is none) and re-owns characters when "
        "a guest becomes an account (and deletes them when it is erased).",
        publishes=(CharacterCreated, CharacterFailed),
        consumes=(
            Consumes(CharacterRequested, "character-gen"),
            Consumes(UserMerged, "character-gen"),
            Consumes(UserErased, "character-gen"),
        ),
    ),
    "chat": Interface(
        "The chat service answers turns (the reply's tokens travel over Redis, the outcome over Kafka), keeps "
        "its own copy of characters, re-owns conversations after merges, tells what a deleted conversation "
        "fed, and erases accounts.",
        publishes=(ChatTurnCompleted, ChatTurnFailed, ConversationDeleted),
        consumes=(
            Consumes(ChatTurnRequested, "chat.turns"),
            Consumes(CharacterCreated, "chat.characters"),
            Consumes(UserMerged, "chat.merges"),
            Consumes(ConversationDeleted, "chat.deletions"),
            Consumes(UserErased, "chat.erasures"),
        ),
    ),
    "dossier": Interface(
        "The dossier service extracts story dossiers from completed turns and publishes each new version; it "
        "forgets deleted conversations and erased accounts.",
        publishes=(DossierUpdated,),
        consumes=(
            Consumes(ChatTurnCompleted, "dossier.turns"),
            Consumes(UserMerged, "dossier.merges"),
            Consumes(ConversationDeleted, "dossier.deletions"),
            Consumes(UserErased, "dossier.erasures"),
        ),
    ),
}

EVENT_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "Kafka headers beside every event body, for routing and tracing without parsing it.",
    "properties": {
        "content-type": {"type": "string", "const": "application/json"},
        "x-event-type": {"type": "string", "description": "the event type, equal to the topic"},
        "x-event-id": {"type": "string", "format": "uuid", "description": "the body's event_id"},
        "x-correlation-id": {"type": "string", "description": "the body's correlation_id, when it has one"},
        "traceparent": {
            "type": "string",
            "description": "W3C Trace Context of the span that published or wrote the event, while tracing is on",
        },
        "tracestate": {"type": "string", "description": "W3C Trace Context vendor state, when there is any"},
    },
    "required": ["content-type", "x-event-type", "x-event-id"],
}

DEAD_LETTER_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "The original message's headers, plus why and where from it was dead-lettered.",
    "properties": {
        "x-dlq-reason": {"type": "string", "enum": ["invalid", "rejected", "handler_failed"]},
        "x-dlq-error": {"type": "string", "maxLength": 2000, "description": "the validation or handler error"},
        "x-dlq-source-topic": {"type": "string"},
        "x-dlq-source-partition": {"type": "string", "description": "decimal"},
        "x-dlq-source-offset": {"type": "string", "description": "decimal"},
        "x-dlq-consumer-group": {"type": "string", "description": "the group that could not handle it"},
    },
    "required": [
        "x-dlq-reason",
        "x-dlq-error",
        "x-dlq-source-topic",
        "x-dlq-source-partition",
        "x-dlq-source-offset",
        "x-dlq-consumer-group",
    ],
}


def _doc(cls: type[Event]) -> str:
    return " ".join((cls.__doc__ or "").split())


def _schemas(events: list[type[Event]]) -> dict[str, Any]:
    """Each event's JSON Schema (from its Pydantic model), nested models lifted into components."""
    found: dict[str, Any] = {}
    for cls in events:
        schema = cls.model_json_schema(ref_template=SCHEMAS + "{model}")
        found.update(schema.pop("$defs", {}))
        found[cls.__name__] = schema
    return dict(sorted(found.items()))


def _message(cls: type[Event]) -> dict[str, Any]:
    key = dict(cls.model_json_schema()["properties"][cls.KEY_FIELD])
    key.pop("title", None)
    key["description"] = f"the event's {cls.KEY_FIELD}: events with the same key stay in order"
    return {
        "name": cls.__name__,
        "title": cls.TOPIC,
        "summary": _doc(cls),
        "contentType": "application/json",
        "headers": {"$ref": SCHEMAS + "EventHeaders"},
        "payload": {"$ref": SCHEMAS + cls.__name__},
        "correlationId": {"location": "$message.header#/x-correlation-id"},
        "bindings": {"kafka": {"key": key, "bindingVersion": KAFKA_BINDING}},
    }


DEAD_LETTER_MESSAGE: dict[str, Any] = {
    "name": "DeadLetter",
    "title": "dead letter",
    "summary": "A message that failed validation or handling, with its original bytes and key.",
    "headers": {"$ref": SCHEMAS + "DeadLetterHeaders"},
    "payload": {"description": "the original message body, unchanged (usually the event's JSON, maybe not)"},
}


def _channel(cls: type[Event]) -> dict[str, Any]:
    return {
        "address": cls.TOPIC,
        "title": cls.__name__,
        "description": _doc(cls),
        "messages": {cls.__name__: {"$ref": f"#/components/messages/{cls.__name__}"}},
        "bindings": {"kafka": {"topic": cls.TOPIC, "partitions": cls.PARTITIONS, "bindingVersion": KAFKA_BINDING}},
    }


def _dlq_channel(cls: type[Event]) -> dict[str, Any]:
    topic = dlq_topic(cls.TOPIC)
    return {
        "address": topic,
        "title": f"{cls.__name__} dead letters",
        "description": f"Messages of {cls.TOPIC} that a consumer could not handle; replay them to the source topic.",
        "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
        "bindings": {"kafka": {"topic": topic, "partitions": DLQ_PARTITIONS, "bindingVersion": KAFKA_BINDING}},
    }


def document(service: str) -> dict[str, Any]:
    """The AsyncAPI document of one service."""
    interface = INTERFACES[service]
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    events: list[type[Event]] = []
    for cls in interface.publishes:
        channels[cls.TOPIC] = _channel(cls)
        operations[f"send{cls.__name__}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{cls.TOPIC}"},
            "summary": f"Publishes {cls.__name__}"
            + (" through the transactional outbox." if service != "gateway" else "."),
            "messages": [{"$ref": f"#/channels/{cls.TOPIC}/messages/{cls.__name__}"}],
        }
        events.append(cls)
    dead_letters = False
    for consumed in interface.consumes:
        cls = consumed.event
        channels.setdefault(cls.TOPIC, _channel(cls))
        operation: dict[str, Any] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{cls.TOPIC}"},
            "messages": [{"$ref": f"#/channels/{cls.TOPIC}/messages/{cls.__name__}"}],
        }
        if consumed.group is None:
            operation["summary"] = f"Every instance reads {cls.TOPIC} whole, without a consumer group."
        else:
            operation["summary"] = f"Consumer group {consumed.group}; redelivered events change nothing."
            operation["bindings"] = {
                "kafka": {"groupId": {"type": "string", "enum": [consumed.group]}, "bindingVersion": KAFKA_BINDING}
            }
        operations[f"receive{cls.__name__}"] = operation
        if cls not in events:
            events.append(cls)
        if consumed.group is not None:
            dead_letters = True
            topic = dlq_topic(cls.TOPIC)
            channels[topic] = _dlq_channel(cls)
            operations[f"deadLetter{cls.__name__}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{topic}"},
                "summary": f"Copies a {cls.__name__} that cannot be handled here to {topic}; the offset moves on.",
                "messages": [{"$ref": f"#/channels/{topic}/messages/DeadLetter"}],
            }
    messages = {cls.__name__: _message(cls) for cls in events}
    schemas = {**_schemas(events), "EventHeaders": EVENT_HEADERS}
    if dead_letters:
        messages["DeadLetter"] = DEAD_LETTER_MESSAGE
        schemas["DeadLetterHeaders"] = DEAD_LETTER_HEADERS
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": f"Orrery {service}",
            "version": version(f"orrery-{service}"),
            "description": (
                f"{interface.description}\n\nGenerated from the code by scripts/asyncapi.py (`make docs`); a test "
                "fails when this document is stale. Every topic has one event type, JSON bodies carrying the "
                "envelope (event_id, type, occurred_at, correlation_id); see docs/events.md."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "kafka:9092",
                "protocol": "kafka",
                "description": "The platform's Kafka cluster (ORRERY_KAFKA_BOOTSTRAP_SERVERS).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line text as literal blocks, which read like the prose they are."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def render(service: str) -> str:
    return yaml.dump(document(service), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)


def expected_files() -> dict[Path, str]:
    return {OUT / f"{service}.yaml": render(service) for service in INTERFACES}


def main(argv: list[str] | None = None) -> int:
    return write_or_check(
        expected_files(), "Write docs/asyncapi/<service>.yaml from the code.", "python -m scripts.asyncapi", argv
    )


if __name__ == "__main__":
    raise SystemExit(main())
