"""The event registry matches the architecture's topics, and docs/events.md is generated from it."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest
from pydantic import ValidationError

from orrery_shared.events import (
    EVENT_TYPES,
    ChatTurnRequested,
    UnknownEventType,
    UserMerged,
    all_topics,
    json_schemas,
    model_for,
)
from orrery_shared.events.docs import render

ROOT = Path(__file__).resolve().parents[3]

ARCHITECTURE_TOPICS = {
    "auth.user-registered.v1": "user_id",
    "auth.user-merged.v1": "to_user_id",
    "auth.user-erased.v1": "user_id",
    "character.requested.v1": "user_id",
    "character.created.v1": "character_id",
    "character.failed.v1": "user_id",
    "chat.turn-requested.v1": "conversation_id",
    "chat.turn-completed.v1": "conversation_id",
    "chat.turn-failed.v1": "conversation_id",
    "chat.conversation-deleted.v1": "conversation_id",
    "dossier.updated.v1": "project_id",
}


def test_every_topic_of_the_architecture_has_one_model_keyed_as_specified() -> None:
    assert {cls.TOPIC: cls.KEY_FIELD for cls in EVENT_TYPES} == ARCHITECTURE_TOPICS


def test_every_topic_has_a_dead_letter_topic_with_explicit_partitions() -> None:
    names = {spec.name: spec.partitions for spec in all_topics()}
    for topic in ARCHITECTURE_TOPICS:
        assert names[topic] >= 1 and names[f"{topic}.dlq"] >= 1


def test_an_event_round_trips_through_json_and_keys_by_its_key_field() -> None:
    event = UserMerged(from_user_id=uuid4(), to_user_id=uuid4(), correlation_id="req-1")
    again = model_for(event.TOPIC).model_validate_json(event.model_dump_json())
    assert again == event
    assert event.partition_key() == str(event.to_user_id)
    assert event.type == event.TOPIC


def test_a_body_of_the_wrong_type_is_rejected() -> None:
    body = UserMerged(from_user_id=uuid4(), to_user_id=uuid4()).model_dump_json()
    with pytest.raises(ValidationError):
        ChatTurnRequested.model_validate_json(body)


def test_unknown_fields_from_a_newer_producer_are_ignored() -> None:
    body = UserMerged(from_user_id=uuid4(), to_user_id=uuid4()).model_dump(mode="json") | {"added_later": 1}
    assert UserMerged.model_validate(body).to_user_id is not None


def test_an_unknown_topic_is_a_named_error() -> None:
    with pytest.raises(UnknownEventType):
        model_for("nobody.published-this.v1")


def test_json_schemas_describe_every_event_with_descriptions() -> None:
    schemas = json_schemas()
    assert set(schemas) == set(ARCHITECTURE_TOPICS)
    assert "description" in schemas["chat.turn-requested.v1"]["properties"]["turn_id"]


def test_docs_events_md_is_generated_from_the_models() -> None:
    assert (ROOT / "docs" / "events.md").read_text() == render(), "run `make docs` to regenerate docs/events.md"
