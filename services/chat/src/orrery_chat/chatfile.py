"""Chats in SillyTavern's JSONL chat file: one JSON object per line, a header first, then one line per message.

The header is `{user_name, character_name, create_date, chat_metadata}`; a message is `{name, is_user,
is_system, send_date, mes, extra, swipes?, swipe_id?}`, where `swipes` are the alternatives of that message and
`swipe_id` the one shown (`mes` is `swipes[swipe_id]`).

A file holds one path of a conversation tree: Orrery writes the active path, each message with its
alternatives (its siblings of the same role) as `swipes`, and reads any such file back as that path with the
swipes as siblings of their message. Messages SillyTavern hides from the model (`is_system`) are left out, and
unknown fields are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from orrery_chat.domain import Role, StoredMessage
from orrery_shared.text import text_problem

MAX_MESSAGES = 20_000
MAX_MESSAGE_CHARS = 100_000
MAX_NAME_CHARS = 200
MAX_SWIPES = 100


class ChatFileError(ValueError):
    """A chat file that cannot be imported; `line` is 1-based (0: the file as a whole)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line


@dataclass(frozen=True)
class ImportedMessage:
    role: Role
    content: str
    sent_at: datetime | None
    swipes: tuple[str, ...] = ()  # the message's alternatives, `content` among them at `swipe_id`; () if none
    swipe_id: int = 0

    @property
    def alternatives(self) -> tuple[str, ...]:
        """Every alternative, in order (the message alone when it has none)."""
        return self.swipes or (self.content,)

    @property
    def shown(self) -> int:
        return self.swipe_id if self.swipes else 0


@dataclass(frozen=True)
class ImportedChat:
    user_name: str
    character_name: str
    messages: list[ImportedMessage]


def _sent_at(value: Any) -> datetime | None:
    """SillyTavern has written send dates as ISO 8601, as epoch milliseconds, and as free text: the first two
    are kept, anything else becomes the import's time."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e14:
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _text(line: int, record: dict[str, Any], field: str, limit: int, default: str = "") -> str:
    value = record.get(field, default)
    if value is None:
        value = default
    if not isinstance(value, str):
        raise ChatFileError(line, f"{field} must be a string")
    if len(value) > limit:
        raise ChatFileError(line, f"{field} is longer than {limit} characters")
    problem = text_problem(value)
    if problem is not None:
        raise ChatFileError(line, f"{field} {problem}")
    return value


def parse_chat_file(data: bytes) -> ImportedChat:
    """Read a SillyTavern chat file; raises ChatFileError naming the first line that is wrong."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ChatFileError(0, "the file is not UTF-8 text") from None
    records: list[tuple[int, dict[str, Any]]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (ValueError, RecursionError):
            raise ChatFileError(number, "not a JSON object") from None
        if not isinstance(record, dict):
            raise ChatFileError(number, "not a JSON object")
        records.append((number, record))
    if not records:
        raise ChatFileError(0, "the file is empty")
    first_line, header = records[0]
    if "mes" in header:  # a file without its header line: every line is a message
        header, body = {}, records
    else:
        body = records[1:]
    user_name = _text(first_line, header, "user_name", MAX_NAME_CHARS, "You")
    character_name = _text(first_line, header, "character_name", MAX_NAME_CHARS)
    if len(body) > MAX_MESSAGES:
        raise ChatFileError(0, f"a chat file holds at most {MAX_MESSAGES} messages")
    messages = []
    for number, record in body:
        if "mes" not in record:
            raise ChatFileError(number, "a message needs mes")
        content = _text(number, record, "mes", MAX_MESSAGE_CHARS)
        if record.get("is_system") is True:
            continue  # hidden from the model in SillyTavern: not part of the conversation
        is_user = record.get("is_user", False)
        if not isinstance(is_user, bool):
            raise ChatFileError(number, "is_user must be true or false")
        role: Role = "user" if is_user else "assistant"
        swipes, swipe_id = _swipes(number, record, content)
        messages.append(ImportedMessage(role, content, _sent_at(record.get("send_date")), swipes, swipe_id))
    if not messages:
        raise ChatFileError(0, "the file has no messages")
    return ImportedChat(user_name, character_name, messages)


def _swipes(line: int, record: dict[str, Any], content: str) -> tuple[tuple[str, ...], int]:
    """A message's alternatives and which one is shown; `mes` is the one shown whatever `swipe_id` says."""
    swipes = record.get("swipes")
    if swipes is None or swipes == []:
        return (), 0
    if not isinstance(swipes, list):
        raise ChatFileError(line, "swipes must be a list of strings")
    if len(swipes) > MAX_SWIPES:
        raise ChatFileError(line, f"a message holds at most {MAX_SWIPES} swipes")
    texts = tuple(_text(line, {"swipes": swipe}, "swipes", MAX_MESSAGE_CHARS) for swipe in swipes)
    swipe_id = record.get("swipe_id", 0)
    if not isinstance(swipe_id, int) or isinstance(swipe_id, bool) or not 0 <= swipe_id < len(texts):
        swipe_id = texts.index(content) if content in texts else -1
    if swipe_id < 0 or texts[swipe_id] != content:
        # `mes` edited after the swipe was chosen, say: the shown text wins and joins the alternatives.
        texts, swipe_id = (*texts, content), len(texts)
    return texts, swipe_id


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def write_chat_file(
    user_name: str,
    character_name: str,
    created_at: datetime,
    messages: list[StoredMessage],
    metadata: dict[str, Any],
    alternatives: Mapping[UUID, tuple[list[str], int]] | None = None,
) -> str:
    """A conversation's path as a SillyTavern chat file (the header, then its messages in order); a message with
    `alternatives` (their texts in order, and its own index among them) carries them as swipes."""
    header = {
        "user_name": user_name,
        "character_name": character_name,
        "create_date": created_at.isoformat(),
        "chat_metadata": metadata,
    }
    lines = [_line(header)]
    for message in messages:
        record = {
            "name": user_name if message.role == "user" else character_name,
            "is_user": message.role == "user",
            "is_system": False,
            "send_date": message.created_at.isoformat(),
            "mes": message.content,
            "extra": {"orrery": {"message_id": str(message.message_id), "seq": message.seq, "status": message.status}},
        }
        swipes = (alternatives or {}).get(message.message_id)
        if swipes is not None and len(swipes[0]) > 1:
            record["swipes"], record["swipe_id"] = swipes
        lines.append(_line(record))
    return "\n".join(lines) + "\n"
