"""Renders docs/events.md from the registry: `python -m orrery_shared.events.docs > docs/events.md`."""

from __future__ import annotations

import json
from typing import Any

from orrery_shared.events.registry import DLQ_PARTITIONS, EVENT_TYPES, dlq_topic

HEADER = """# Events

Generated from `orrery_shared.events` by `make docs` (`python -m orrery_shared.events.docs`); a test fails
when this file is stale. Every topic is JSON, one event type per topic, `.v1` suffix. Every body carries the
envelope: `event_id` (consumers dedupe on it), `type` (equals the topic), `occurred_at`, `correlation_id`.

Every topic has a dead-letter topic `<topic>.dlq` ({dlq} partitions) holding the original bytes of a message
that failed validation or handling, with the reason in the headers `x-dlq-reason`, `x-dlq-error`,
`x-dlq-source-topic`, `x-dlq-source-partition`, `x-dlq-source-offset` and `x-dlq-consumer-group`.

| topic | key | partitions | dead letters |
| --- | --- | --- | --- |
"""


def _field_rows(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        kind = prop.get("type") or prop.get("$ref", "").rsplit("/", 1)[-1] or _any_of(prop)
        desc = prop.get("description", "")
        rows.append(f"| `{name}` | {kind} | {'yes' if name in required else 'no'} | {desc} |")
    return rows


def _any_of(prop: dict[str, Any]) -> str:
    options = [p.get("type") or p.get("$ref", "").rsplit("/", 1)[-1] for p in prop.get("anyOf", [])]
    return " or ".join(o for o in options if o) or "any"


def render() -> str:
    """The whole Markdown document."""
    out = [HEADER.format(dlq=DLQ_PARTITIONS)]
    for cls in EVENT_TYPES:
        out.append(f"| `{cls.TOPIC}` | `{cls.KEY_FIELD}` | {cls.PARTITIONS} | `{dlq_topic(cls.TOPIC)}` |\n")
    for cls in EVENT_TYPES:
        schema = cls.model_json_schema()
        out.append(f"\n## `{cls.TOPIC}` — {cls.__name__}\n\n{(cls.__doc__ or '').strip()}\n\n")
        out.append("| field | type | required | description |\n| --- | --- | --- | --- |\n")
        out.append("\n".join(_field_rows(schema)) + "\n")
        out.append(
            f"\n<details><summary>JSON Schema</summary>\n\n```json\n{json.dumps(schema, indent=2)}\n```\n\n</details>\n"
        )
    return "".join(out)


if __name__ == "__main__":
    print(render(), end="")
