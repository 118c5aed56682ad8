"""Builds a JSON value that conforms to a JSON schema, deterministically from a seed.

Covers what structured-output schemas use: types (and type lists), enum/const, object properties,
required and additionalProperties, arrays (items, prefixItems, minItems/maxItems, uniqueItems), string
minLength/maxLength and common formats, numeric bounds and multipleOf, anyOf/oneOf/allOf, and local
$ref into $defs/definitions (recursive schemas included). `pattern` is not honoured.
"""

from __future__ import annotations

import json
import math
import random
import re
import uuid
from typing import Any

from orrery_llm_stub.wordlists import (
    ADJECTIVES,
    NAME_SYLLABLES,
    NOUNS,
    SENTENCE_WORDS,
    SURNAME_SUFFIXES,
    long_text_fields,
    name_fields,
)

Schema = dict[str, Any]
_MAX_DEPTH = 6


class SchemaFiller:
    """Fills one root schema; `fill()` may be called once per value wanted."""

    def __init__(self, root: Schema, seed: int) -> None:
        self.root = root
        self.rng = random.Random(seed)

    def fill(self) -> Any:
        """A value conforming to the root schema."""
        return self._value(self.root, "", 0)

    # -- dispatch -----------------------------------------------------------------------------------

    def _resolve(self, schema: Schema) -> Schema:
        seen = 0
        while "$ref" in schema and seen < 32:
            ref = str(schema["$ref"])
            target: Any = self.root
            if not ref.startswith("#"):
                break
            for part in ref.lstrip("#/").split("/"):
                if not part:
                    continue
                part = part.replace("~1", "/").replace("~0", "~")
                target = target.get(part, {}) if isinstance(target, dict) else {}
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**(target if isinstance(target, dict) else {}), **siblings}
            seen += 1
        return schema

    def _value(self, schema: Any, name: str, depth: int) -> Any:
        if schema is True or not isinstance(schema, dict):
            return self._string({}, name)
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return self.rng.choice(list(schema["enum"]))
        if "allOf" in schema:
            merged: Schema = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = self._resolve(part) if isinstance(part, dict) else {}
                for key, value in part.items():
                    if key == "properties":
                        merged["properties"] = {**merged.get("properties", {}), **value}
                    elif key == "required":
                        merged["required"] = [*merged.get("required", []), *value]
                    else:
                        merged.setdefault(key, value)
            return self._value(merged, name, depth)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [self._resolve(o) for o in schema[key] if isinstance(o, dict)]
                concrete = [o for o in options if o.get("type") != "null"]
                if not concrete:
                    return None
                # Deep in a recursive schema, prefer null to stop the recursion.
                if depth >= _MAX_DEPTH and len(concrete) < len(options):
                    return None
                base = {k: v for k, v in schema.items() if k != key}
                return self._value({**base, **concrete[0]}, name, depth)
        kind = self._type(schema)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, name, depth)
        if kind == "string":
            return self._string(schema, name)
        if kind == "integer":
            return self._integer(schema, name)
        if kind == "number":
            return self._number(schema)
        if kind == "boolean":
            return self.rng.random() < 0.5
        return None

    @staticmethod
    def _type(schema: Schema) -> str:
        kind = schema.get("type")
        if isinstance(kind, list):
            concrete = [k for k in kind if k != "null"]
            return str(concrete[0]) if concrete else "null"
        if isinstance(kind, str):
            return kind
        if "properties" in schema or "additionalProperties" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")):
            return "number"
        return "string"

    # -- containers ---------------------------------------------------------------------------------

    def _object(self, schema: Schema, depth: int) -> dict[str, Any]:
        properties: dict[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", []))
        out: dict[str, Any] = {}
        for key, sub in properties.items():
            if depth >= _MAX_DEPTH and key not in required:
                continue
            out[key] = self._value(sub, key, depth + 1)
        extra = schema.get("additionalProperties")
        wanted = int(schema.get("minProperties", 0))
        index = 0
        while len(out) < wanted and extra is not False:
            key = f"{self.rng.choice(NOUNS)}_{index}"
            index += 1
            out[key] = self._value(extra if isinstance(extra, dict) else {}, key, depth + 1)
        return out

    def _array(self, schema: Schema, name: str, depth: int) -> list[Any]:
        prefix = schema.get("prefixItems") or []
        items = schema.get("items", {})
        low = int(schema.get("minItems", 0))
        high = int(schema.get("maxItems", max(low, len(prefix), 3)))
        count = low if depth >= _MAX_DEPTH else min(high, max(low, len(prefix), self.rng.randint(1, 3)))
        singular = name[:-1] if name.endswith("s") else name
        out: list[Any] = []
        attempts = 0
        while len(out) < count and attempts < count * 10:
            attempts += 1
            index = len(out)
            sub = prefix[index] if index < len(prefix) else items
            if sub is False:
                break
            value = self._value(sub, singular, depth + 1)
            if schema.get("uniqueItems") and value in out:
                continue
            out.append(value)
        return out

    # -- scalars ------------------------------------------------------------------------------------

    def _string(self, schema: Schema, name: str) -> str:
        fmt = schema.get("format")
        low = int(schema.get("minLength", 0))
        high = schema.get("maxLength")
        rng = self.rng
        if fmt == "date-time":
            text = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z"
        elif fmt == "date":
            text = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        elif fmt == "time":
            text = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00"
        elif fmt == "email":
            text = f"{self._name_word().lower()}@example.com"
        elif fmt in ("uri", "url", "iri"):
            text = f"https://example.com/{rng.choice(NOUNS)}"
        elif fmt == "uuid":
            text = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        elif name_fields(name):
            text = f"{self._name_word()} {self._name_word()}{rng.choice(SURNAME_SUFFIXES)}"
        elif long_text_fields(name):
            text = self._sentences(rng.randint(1, 3))
        elif name.lower() in ("title", "headline"):
            text = f"The {rng.choice(ADJECTIVES).title()} {rng.choice(NOUNS).title()}"
        else:
            text = " ".join(rng.choice(ADJECTIVES if i == 0 else NOUNS) for i in range(rng.randint(1, 2)))
        while len(text) < low:
            text += " " + rng.choice(SENTENCE_WORDS)
        if high is not None and len(text) > int(high):
            text = text[: int(high)].rstrip() or text[: int(high)]
            if len(text) < low:
                text = text.ljust(low, "a")
        return text

    def _bounds(self, schema: Schema, default_low: float, default_high: float) -> tuple[float, float, bool]:
        low, high = default_low, default_high
        low_set = high_set = False
        if "minimum" in schema:
            low, low_set = float(schema["minimum"]), True
        if "maximum" in schema:
            high, high_set = float(schema["maximum"]), True
        exclusive = False
        ex_min, ex_max = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        if isinstance(ex_min, int | float) and not isinstance(ex_min, bool):
            low, low_set, exclusive = float(ex_min), True, True
        if isinstance(ex_max, int | float) and not isinstance(ex_max, bool):
            high, high_set, exclusive = float(ex_max), True, True
        if low_set and not high_set and high <= low:
            high = low + default_high - default_low
        if high_set and not low_set and low >= high:
            low = high - (default_high - default_low)
        return low, high, exclusive

    def _integer(self, schema: Schema, name: str) -> int:
        default = (18, 80) if name.lower() in ("age", "age_years") else (0, 100)
        low, high, _ = self._bounds(schema, *default)
        lo = math.floor(low) + 1 if "exclusiveMinimum" in schema and low == math.floor(low) else math.ceil(low)
        hi = math.ceil(high) - 1 if "exclusiveMaximum" in schema and high == math.ceil(high) else math.floor(high)
        step = schema.get("multipleOf")
        if isinstance(step, int) and step > 0:
            first = -(-lo // step) * step
            choices = range(first, hi + 1, step)
            return self.rng.choice(choices) if len(choices) else first
        return self.rng.randint(lo, hi) if lo <= hi else lo

    def _number(self, schema: Schema) -> float:
        low, high, exclusive = self._bounds(schema, 0.0, 1.0)
        if exclusive:
            margin = (high - low) * 0.01
            low, high = low + margin, high - margin
        step = schema.get("multipleOf")
        if isinstance(step, int | float) and not isinstance(step, bool) and step > 0:
            first, last = math.ceil(low / step), math.floor(high / step)
            return float(self.rng.randint(first, max(first, last)) * step)
        value = self.rng.uniform(low, high)
        rounded = round(value, 3)
        return rounded if low <= rounded <= high else value

    # -- words --------------------------------------------------------------------------------------

    def _name_word(self) -> str:
        syllables = [self.rng.choice(NAME_SYLLABLES) for _ in range(self.rng.randint(2, 3))]
        return "".join(syllables).capitalize()

    def _sentences(self, count: int) -> str:
        out = []
        for _ in range(count):
            words = [self.rng.choice(SENTENCE_WORDS) for _ in range(self.rng.randint(6, 12))]
            out.append(" ".join(words).capitalize() + ".")
        return " ".join(out)


def fill_schema(schema: Schema, seed: int = 0) -> Any:
    """A value conforming to `schema`, the same for the same (schema, seed)."""
    return SchemaFiller(schema, seed).fill()


_SCHEMA_MARKER = re.compile(r"json[ _-]?schema\b[^{]*", re.IGNORECASE)


def schema_in_text(text: str) -> Schema | None:
    """A JSON schema embedded in a prompt after the words "JSON schema", if any."""
    decoder = json.JSONDecoder()
    for match in _SCHEMA_MARKER.finditer(text):
        start = match.end()
        if start < len(text) and text[start] == "{":
            try:
                value, _ = decoder.raw_decode(text, start)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None
