"""The AsyncAPI documents: up to date, valid AsyncAPI 3.0, and their table of who publishes what true to the code."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import validators

from orrery_gateway import notifications
from orrery_shared.events import EVENT_TYPES, model_for
from orrery_shared.events.registry import DLQ_PARTITIONS, DLQ_SUFFIX
from scripts import asyncapi, generated
from scripts.deploy_config import SERVICES, Service
from tests.deploy.manifests import Tools, mutated, recorded_subscriptions

pytestmark = pytest.mark.timeout(1800)

EVENT_NAMES = {cls.__name__: cls for cls in EVENT_TYPES}


def test_the_committed_documents_are_up_to_date() -> None:
    assert generated.stale(asyncapi.expected_files()) == [], "run `make docs`"
    assert {p.name for p in asyncapi.OUT.glob("*.yaml")} == {p.name for p in asyncapi.expected_files()}


@pytest.fixture(scope="module")
def validator(tools: Tools) -> Any:
    schema = json.loads(tools.asyncapi_schema.read_text())
    return validators.validator_for(schema)(schema)


@pytest.mark.parametrize("service", sorted(asyncapi.INTERFACES))
def test_each_document_is_valid_asyncapi_3(validator: Any, service: str) -> None:
    document = yaml.safe_load(asyncapi.render(service))
    assert [e.message for e in validator.iter_errors(document)] == []


def test_the_asyncapi_schema_refuses_a_malformed_document(validator: Any) -> None:
    document = yaml.safe_load(asyncapi.render("chat"))
    assert list(validator.iter_errors(mutated(document, ["operations", "sendChatTurnCompleted", "action"], "emit")))
    assert list(validator.iter_errors(mutated(document, ["channels", "chat.turn-completed.v1", "adress"], "x")))


def _pointer(document: Any, ref: str) -> Any:
    node = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [node["$ref"]] if "$ref" in node else [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


@pytest.mark.parametrize("service", sorted(asyncapi.INTERFACES))
def test_every_reference_resolves_inside_the_document(service: str) -> None:
    document = yaml.safe_load(asyncapi.render(service))
    for ref in _refs(document):
        assert ref.startswith("#/"), ref
        _pointer(document, ref)


@pytest.mark.parametrize("service", sorted(asyncapi.INTERFACES))
def test_channels_carry_the_topics_and_partitions_of_the_registry(service: str) -> None:
    document = yaml.safe_load(asyncapi.render(service))
    for channel in document["channels"].values():
        binding = channel["bindings"]["kafka"]
        assert binding["topic"] == channel["address"]
        address = channel["address"]
        expected = DLQ_PARTITIONS if address.endswith(DLQ_SUFFIX) else model_for(address).PARTITIONS
        assert binding["partitions"] == expected, channel["address"]


def constructed_events(svc: Service) -> set[str]:
    """Names of the event models the service's own code constructs (what it publishes)."""
    found = set()
    for path in svc.source.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                if name in EVENT_NAMES:
                    found.add(name)
    return found


@pytest.mark.parametrize("svc", SERVICES, ids=lambda s: s.name)
def test_the_table_lists_every_event_a_service_publishes(svc: Service) -> None:
    interface = asyncapi.INTERFACES.get(svc.name)
    published = {cls.__name__ for cls in interface.publishes} if interface else set()
    assert constructed_events(svc) == published


@pytest.mark.parametrize("svc", [s for s in SERVICES if s.name in asyncapi.INTERFACES], ids=lambda s: s.name)
def test_the_table_lists_every_subscription_the_app_makes(svc: Service, tmp_path: Path) -> None:
    consumes = asyncapi.INTERFACES[svc.name].consumes
    grouped = {(c.event.TOPIC, c.group) for c in consumes if c.group is not None}
    # The code's defaults, but development keys (auth) go to a scratch folder.
    assert recorded_subscriptions(svc, {"ORRERY_AUTH_DEV_KEY_DIR": str(tmp_path)}) == grouped
    whole = {c.event for c in consumes if c.group is None}
    assert whole == (set(notifications.TOPICS.values()) if svc.name == "gateway" else set())


def test_every_event_has_exactly_one_publisher() -> None:
    publishers = [cls for interface in asyncapi.INTERFACES.values() for cls in interface.publishes]
    assert sorted(cls.__name__ for cls in publishers) == sorted(EVENT_NAMES)
