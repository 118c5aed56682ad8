"""What this process last knew of a conversation: its memory and unsummarised messages after its latest turn.

Turns of one conversation are answered in order by the process that owns its partition, so the next turn's
prompt can be built from here before the database has answered: the request to the LLM is sent while the turn's
statement runs. It is a guess, always checked against what the statement returns (another process may have
answered a turn meanwhile, after a rebalance, or a memory fold may have landed); a wrong guess only costs the
request, which is dropped before any of its deltas is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from orrery_chat.domain import Memory, StoredMessage
from orrery_chat.lru import Lru


@dataclass(frozen=True)
class RecentConversation:
    memory: Memory
    history: tuple[StoredMessage, ...]  # the unsummarised messages, in order


class RecentConversations:
    """The most recently answered conversations (least recently used ones are forgotten)."""

    def __init__(self, capacity: int = 2_000) -> None:
        self._entries: Lru[UUID, RecentConversation] = Lru(capacity)

    def get(self, conversation_id: UUID) -> RecentConversation | None:
        return self._entries.get(conversation_id)

    def answered(self, conversation_id: UUID, memory: Memory, history: list[StoredMessage]) -> None:
        """A turn ended with `history` (its reply last) under `memory`."""
        unsummarised = tuple(m for m in history if m.seq > memory.upto_seq)
        self._entries.put(conversation_id, RecentConversation(memory, unsummarised))

    def folded(self, conversation_id: UUID, memory: Memory) -> None:
        """A fold saved `memory`: the messages it covers leave the unsummarised ones."""
        entry = self._entries.get(conversation_id)
        if entry is not None and memory.upto_seq > entry.memory.upto_seq:
            history = tuple(m for m in entry.history if m.seq > memory.upto_seq)
            self._entries.put(conversation_id, RecentConversation(memory, history))

    def forget(self, conversation_id: UUID) -> None:
        self._entries.pop(conversation_id)

    def clear(self) -> None:
        self._entries.clear()
