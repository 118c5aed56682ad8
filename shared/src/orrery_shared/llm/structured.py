"""Structured output: the schema sent to the provider, reading the reply, and the repair prompt."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from openai.lib._pydantic import to_strict_json_schema
from openai.types.chat.completion_create_params import ResponseFormat
from pydantic import BaseModel, ValidationError

from orrery_shared.llm.messages import ChatMessage

T = TypeVar("T", bound=BaseModel)

_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
_MAX_ERRORS_FED_BACK = 8


def schema_name(model: type[BaseModel]) -> str:
    """A response-format name for `model` (letters, digits, _ and -, at most 64 characters)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", model.__name__)[:64] or "output"


def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of `model` in the strict form OpenAI's json_schema response format accepts."""
    return to_strict_json_schema(model)


def response_format(model: type[BaseModel], *, json_schema: bool) -> ResponseFormat:
    """json_schema response format when the provider supports it, else JSON mode."""
    if json_schema:
        return {
            "type": "json_schema",
            "json_schema": {"name": schema_name(model), "schema": strict_schema(model), "strict": True},
        }
    return {"type": "json_object"}


def schema_instruction(model: type[BaseModel]) -> str:
    """System-prompt text asking for a JSON object that conforms to `model`'s schema."""
    schema = json.dumps(model.model_json_schema(), separators=(",", ":"))
    return (
        "Reply with a single JSON object and nothing else (no prose, no code fences). "
        f"It must conform to this JSON schema: {schema}"
    )


def with_schema_instruction(messages: list[ChatMessage], model: type[BaseModel]) -> list[ChatMessage]:
    """`messages` with the schema instruction appended to the system prompt (or as a new one)."""
    instruction = schema_instruction(model)
    out = list(messages)
    for i, message in enumerate(out):
        if message["role"] == "system":
            out[i] = {"role": "system", "content": f"{message['content']}\n\n{instruction}"}
            return out
    return [{"role": "system", "content": instruction}, *out]


def extract_json(text: str) -> str:
    """The JSON part of a reply: strips code fences and prose around the outermost object."""
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    text = text.strip()
    if text.startswith("{"):
        return text
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else text


def parse_reply(model: type[T], text: str) -> T:
    """Validate a reply against `model`; raises pydantic.ValidationError (bad JSON included)."""
    return model.model_validate_json(extract_json(text))


def describe_errors(error: ValidationError) -> str:
    """A compact, model-readable list of what was wrong with the reply."""
    lines = []
    for item in error.errors(include_url=False)[:_MAX_ERRORS_FED_BACK]:
        where = ".".join(str(p) for p in item["loc"]) or "(root)"
        lines.append(f"- {where}: {item['msg']}")
    more = error.error_count() - _MAX_ERRORS_FED_BACK
    if more > 0:
        lines.append(f"- ... and {more} more")
    return "\n".join(lines)


def repair_messages(messages: list[ChatMessage], bad_reply: str, error: ValidationError) -> list[ChatMessage]:
    """The conversation for the repair retry: the bad reply and what was wrong with it."""
    return [
        *messages,
        {"role": "assistant", "content": bad_reply},
        {
            "role": "user",
            "content": (
                f"Your reply was not valid:\n{describe_errors(error)}\nReply again with only the corrected JSON object."
            ),
        },
    ]
