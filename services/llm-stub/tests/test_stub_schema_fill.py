"""The schema-conforming value generator."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field

from orrery_llm_stub.schema_fill import fill_schema, schema_in_text


class Relationship(BaseModel):
    with_whom: str
    kind: Literal["friend", "rival", "mentor"]
    strength: float = Field(ge=0, le=1)


class Character(BaseModel):
    name: str = Field(min_length=3, max_length=30)
    age: int = Field(ge=18, le=120)
    pronouns: Literal["she/her", "he/him", "they/them"]
    backstory: str = Field(min_length=80, max_length=400)
    traits: list[str] = Field(min_length=3, max_length=5)
    catchphrase: str | None = None
    relationships: list[Relationship] = Field(min_length=1, max_length=3)
    secrets: dict[str, str] = Field(default_factory=dict)


class Tree(BaseModel):
    label: str
    children: list[Tree] = Field(default_factory=list)


@pytest.mark.parametrize("seed", range(25))
def test_a_pydantic_models_schema_yields_a_valid_instance(seed: int) -> None:
    value = fill_schema(Character.model_json_schema(), seed)
    Character.model_validate(value)


@pytest.mark.parametrize("seed", range(10))
def test_the_strict_schema_openai_receives_yields_a_valid_instance(seed: int) -> None:
    value = fill_schema(to_strict_json_schema(Character), seed)
    Character.model_validate(value)
    assert set(value) == set(Character.model_fields)  # strict: every property present


@pytest.mark.parametrize("seed", range(10))
def test_recursive_schemas_terminate(seed: int) -> None:
    Tree.model_validate(fill_schema(Tree.model_json_schema(), seed))


def test_the_same_seed_gives_the_same_value_and_others_vary() -> None:
    schema = Character.model_json_schema()
    assert fill_schema(schema, 3) == fill_schema(schema, 3)
    assert len({str(fill_schema(schema, s)) for s in range(10)}) == 10


def test_hand_written_constraints_are_honoured() -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "required": ["code", "tags", "score", "even", "kind", "when", "id", "fixed"],
        "additionalProperties": False,
        "properties": {
            "code": {"type": "string", "minLength": 12, "maxLength": 12},
            "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 3, "uniqueItems": True},
            "score": {"type": "number", "exclusiveMinimum": 5, "exclusiveMaximum": 6},
            "even": {"type": "integer", "minimum": 1, "maximum": 9, "multipleOf": 2},
            "kind": {"type": ["string", "null"], "enum": ["x", "y"]},
            "when": {"type": "string", "format": "date-time"},
            "id": {"type": "string", "format": "uuid"},
            "fixed": {"const": 42},
        },
    }
    for seed in range(20):
        value = fill_schema(schema, seed)
        assert set(value) == set(schema["properties"])
        assert len(value["code"]) == 12
        assert sorted(value["tags"]) == ["a", "b", "c"]
        assert 5 < value["score"] < 6
        assert value["even"] in (2, 4, 6, 8)
        assert value["kind"] in ("x", "y")
        assert value["when"].endswith("Z") and "T" in value["when"]
        assert len(value["id"]) == 36
        assert value["fixed"] == 42


def test_a_schema_quoted_in_a_prompt_is_found() -> None:
    prompt = 'Reply with JSON. It must conform to this JSON schema: {"type": "object", "properties": {}} thanks'
    assert schema_in_text(prompt) == {"type": "object", "properties": {}}
    assert schema_in_text("no schema here") is None
