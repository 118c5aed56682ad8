"""SillyTavern's JSONL chat files: read as SillyTavern writes them, written so that they read back the same."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from orrery_chat.chatfile import MAX_MESSAGE_CHARS, ChatFileError, parse_chat_file, write_chat_file
from orrery_chat.domain import StoredMessage
from services.chat.tests.sillytavern import SILLYTAVERN_CHAT


def test_a_sillytavern_chat_reads_as_its_visible_messages_in_order() -> None:
    chat = parse_chat_file(SILLYTAVERN_CHAT.encode())
    assert (chat.user_name, chat.character_name) == ("Ada", "Captain Marrow")
    assert [(m.role, m.content) for m in chat.messages] == [
        ("assistant", "Welcome aboard the Kettle, stranger."),
        ("user", "Where are we headed?"),
        ("assistant", "To the Veil, if the engines hold."),
    ]
    assert chat.messages[0].sent_at is None  # free text: the import's time is used
    assert chat.messages[2].sent_at == datetime(2024, 6, 5, 15, 5, 40, 123000, tzinfo=UTC)
    # The reply's swipes are its alternatives, the shown one where swipe_id says.
    assert chat.messages[2].alternatives == ("Nowhere good.", "To the Veil, if the engines hold.")
    assert chat.messages[2].shown == 1
    assert chat.messages[1].alternatives == ("Where are we headed?",) and chat.messages[1].shown == 0


@pytest.mark.parametrize(
    ("swipes", "swipe_id", "alternatives", "shown"),
    [
        (["a", "b"], 5, ("a", "b"), 1),  # an id out of range: the one equal to mes
        (["a", "c"], 0, ("a", "c", "b"), 2),  # mes edited after the swipe: it joins the alternatives, shown
        ([], 0, ("b",), 0),
    ],
)
def test_swipes_that_disagree_with_mes_keep_mes_as_the_shown_one(
    swipes: list[str], swipe_id: int, alternatives: tuple[str, ...], shown: int
) -> None:
    record = {"mes": "b", "swipes": swipes, "swipe_id": swipe_id}
    message = parse_chat_file(json.dumps(record).encode()).messages[0]
    assert (message.alternatives, message.shown) == (alternatives, shown)


def test_a_message_with_alternatives_is_written_with_them_as_swipes() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    reply = StoredMessage(uuid4(), 4, "assistant", "Second try.", "complete", at)
    text = write_chat_file("Ada", "Zyx", at, [reply], {}, {reply.message_id: (["First try.", "Second try."], 1)})
    written = json.loads(text.splitlines()[1])
    assert (written["mes"], written["swipes"], written["swipe_id"]) == ("Second try.", ["First try.", "Second try."], 1)
    assert parse_chat_file(text.encode()).messages[0].alternatives == ("First try.", "Second try.")


def test_a_written_chat_reads_back_the_same_and_is_one_object_per_line() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    stored = [
        StoredMessage(uuid4(), 1, "assistant", "Greetings, traveller.", "complete", at),
        StoredMessage(uuid4(), 2, "user", 'Ünïcode, "quotes" and a\nnewline.', "complete", at),
        StoredMessage(uuid4(), 3, "assistant", "Half a repl", "cancelled", at),
    ]
    text = write_chat_file("Ada", "Zyx Varro", at, stored, {"orrery": {"title": "t"}})
    lines = text.splitlines()
    assert len(lines) == 4 and all(isinstance(json.loads(line), dict) for line in lines)
    assert json.loads(lines[0])["character_name"] == "Zyx Varro"
    assert json.loads(lines[2])["is_user"] is True and json.loads(lines[2])["name"] == "Ada"
    chat = parse_chat_file(text.encode())
    assert [(m.role, m.content, m.sent_at) for m in chat.messages] == [(m.role, m.content, at) for m in stored]


@pytest.mark.parametrize(
    ("content", "line", "says"),
    [
        (b'{"user_name": "a"}\n{"mes": "ok"}\nnot json\n', 3, "not a JSON object"),
        (b'{"user_name": "a"}\n["a list"]\n', 2, "not a JSON object"),
        (b'{"user_name": "a"}\n{"name": "x"}\n', 2, "needs mes"),
        (b'{"user_name": "a"}\n{"mes": 5}\n', 2, "mes must be a string"),
        (b'{"user_name": "a"}\n{"mes": "nul \\u0000 here"}\n', 2, "NUL"),
        (b'{"user_name": "a"}\n{"mes": "x", "is_user": "yes"}\n', 2, "is_user"),
        (b'{"user_name": "a"}\n{"mes": "x", "swipes": "x"}\n', 2, "swipes must be a list"),
        (b'{"user_name": "a"}\n{"mes": "x", "swipes": ["x", 3]}\n', 2, "swipes must be a string"),
        (b'{"user_name": "a"}\n', 0, "no messages"),
        (b"", 0, "empty"),
        (b"\xff\xfe", 0, "UTF-8"),
    ],
)
def test_a_bad_file_is_refused_naming_the_line(content: bytes, line: int, says: str) -> None:
    with pytest.raises(ChatFileError) as refused:
        parse_chat_file(content)
    assert refused.value.line == line and says in str(refused.value)


def test_a_message_over_the_length_limit_is_refused() -> None:
    content = json.dumps({"mes": "x" * (MAX_MESSAGE_CHARS + 1)}).encode()
    with pytest.raises(ChatFileError, match="longer than"):
        parse_chat_file(content)


def test_a_file_without_its_header_line_is_all_messages() -> None:
    chat = parse_chat_file(b'{"mes": "Hi", "is_user": true}\n{"mes": "Hello!"}\n')
    assert [(m.role, m.content) for m in chat.messages] == [("user", "Hi"), ("assistant", "Hello!")]
