"""What chat remembers of the conversations it answered last, to guess a next turn's prompt."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from orrery_chat.domain import Memory, StoredMessage
from orrery_chat.recent import RecentConversations


def message(seq: int) -> StoredMessage:
    return StoredMessage(uuid4(), seq, "user" if seq % 2 else "assistant", f"m{seq}", "complete", datetime.now(UTC))


def test_an_answered_conversation_keeps_only_its_unsummarised_messages() -> None:
    recent, conversation = RecentConversations(), uuid4()
    recent.answered(conversation, Memory("older", 2), [message(s) for s in range(1, 6)])
    entry = recent.get(conversation)
    assert entry is not None and entry.memory == Memory("older", 2)
    assert [m.seq for m in entry.history] == [3, 4, 5]


def test_a_fold_moves_memory_forward_and_never_back() -> None:
    recent, conversation = RecentConversations(), uuid4()
    recent.answered(conversation, Memory("", 0), [message(s) for s in range(1, 7)])
    recent.folded(conversation, Memory("first four", 4))
    entry = recent.get(conversation)
    assert entry is not None and [m.seq for m in entry.history] == [5, 6]
    recent.folded(conversation, Memory("first two", 2))  # an older fold finishing late changes nothing
    assert recent.get(conversation) == entry
    recent.folded(uuid4(), Memory("unknown", 9))  # nor does a fold of a conversation not kept here


def test_the_least_recently_used_conversations_are_forgotten_beyond_capacity() -> None:
    recent = RecentConversations(capacity=2)
    a, b, c = uuid4(), uuid4(), uuid4()
    for conversation in (a, b):
        recent.answered(conversation, Memory(), [message(1)])
    assert recent.get(a) is not None  # a is now the most recently used
    recent.answered(c, Memory(), [message(1)])
    assert recent.get(b) is None and recent.get(a) is not None and recent.get(c) is not None
    recent.forget(a)
    assert recent.get(a) is None
    recent.clear()
    assert recent.get(c) is None
