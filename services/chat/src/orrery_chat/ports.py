"""What chat's use cases need from the outside, as protocols and plain records: the turn store (PostgreSQL),
the language model, and a turn's token stream (Redis). The adapters are `orrery_chat.store` and
`orrery_chat.streams`; the unit tests use fakes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol
from uuid import UUID

from orrery_chat.domain import Memory, PathContext, Persona, StoredMessage
from orrery_shared.events import ChatTurnCompleted, ChatTurnFailed, ChatTurnRequested
from orrery_shared.llm import ChatResult, ChatStream
from orrery_shared.llm.messages import ChatMessage

Mode = Literal["reply", "regenerate", "continue", "edit"]


@dataclass(frozen=True)
class StartedTurn:
    """A turn this attempt answers, with what its reply needs.

    `reply_parent_id` is the message the reply hangs under (the user's message it answers; for an edited
    assistant message, the edited one's parent). When continuing, `target` is the assistant message the reply
    extends; when editing, the message edited."""

    turn_id: UUID
    attempt: int  # this delivery's number among the turn's attempts (turns.attempts)
    redelivered: bool
    stream_seq: int  # the last seq an interrupted earlier attempt wrote (turns.stream_seq)
    mode: Mode
    project_id: UUID
    persona: Persona
    user_message: StoredMessage | None
    reply_parent_id: UUID | None
    target: StoredMessage | None
    context: PathContext  # the path up to the reply's parent (or the continued message)
    replaced_turn_ids: tuple[UUID, ...] = ()  # turns of the branch this one leaves (a regenerate or an edit)

    @property
    def generates(self) -> bool:
        """Whether the model writes the reply (an edited assistant message is the user's text)."""
        return not (self.mode == "edit" and self.target is not None and self.target.role == "assistant")


@dataclass(frozen=True)
class FinishedTurn:
    """How a turn ended, when an earlier delivery got that far."""

    status: str
    assistant_message_id: UUID | None
    failure: str | None


@dataclass(frozen=True)
class Reply:
    """A reply to store: its text (for a continue, what the model added), how it ended, what it cost."""

    text: str
    status: Literal["complete", "cancelled"]
    prompt_tokens: int
    completion_tokens: int
    model: str
    created_at: datetime


@dataclass(frozen=True)
class PathMessage:
    """A message of the active path as the API shows it, with where it sits among its alternatives."""

    message: StoredMessage
    sibling_index: int  # 1-based, in creation order
    sibling_count: int


@dataclass(frozen=True)
class TreeNode:
    message_id: UUID
    parent_id: UUID | None
    role: str
    preview: str
    active: bool  # on the active path


class TurnStore(Protocol):
    """Chat's PostgreSQL schema as the use cases need it. Each method is one transaction."""

    async def begin(self, event: ChatTurnRequested, character_wait_s: float) -> StartedTurn | FinishedTurn:
        """Record the turn (and what it adds: the user's message, an edited copy) and take it as attempt 1, or
        take an earlier delivery's turn over as a new attempt; or say how it ended. Raises ConversationNotFound,
        CharacterUnknown (after waiting up to `character_wait_s` for the character), MessageNotFound,
        NotAllowed."""
        ...

    async def finish(self, turn: StartedTurn, reply: Reply, completed: ChatTurnCompleted) -> StoredMessage | None:
        """Store the reply, make it the active leaf, end the turn and publish `completed`; None, storing nothing,
        unless `turn.attempt` is the newest and the turn still processing. A continue's reply is appended to
        its target, which is returned."""
        ...

    async def fail(self, turn: StartedTurn, failed: ChatTurnFailed) -> bool:
        """Record the turn as failed and publish `failed`; False, changing nothing, if it is not this attempt's."""
        ...

    async def refuse(self, failed: ChatTurnFailed) -> None:
        """Publish that a turn was refused before it was recorded."""
        ...

    async def record_stream_seq(self, turn_id: UUID, seq: int) -> None:
        """Remember how far an interrupted attempt numbered the turn's stream."""
        ...

    async def path_context(self, message_id: UUID) -> PathContext:
        """The summary nearest above the message on its path and the messages after it, down to the message."""
        ...

    async def save_summary(self, message_id: UUID, memory: Memory) -> None:
        """Store the rolling summary of the path from the root down to `message_id`."""
        ...


class TokenStream(Protocol):
    """One turn's token stream (see orrery_chat.streams)."""

    seq: int
    attempt: int
    cancel_requested: bool
    superseded: bool

    @property
    def stopped(self) -> bool: ...

    @property
    def text(self) -> str: ...

    @property
    def time_to_first_delta(self) -> float | None: ...

    async def push(self, text: str) -> None: ...

    async def flush(self) -> None: ...

    async def cancelled(self) -> bool: ...

    async def restart(self) -> None: ...

    async def done(self, message_id: UUID, status: str) -> None: ...

    async def error(self, reason: str, retryable: bool) -> None: ...

    async def announce_done(self, message_id: UUID, status: str) -> None: ...

    async def announce_error(self, reason: str, retryable: bool) -> None: ...


class LanguageModel(Protocol):
    def stream_chat(self, messages: Sequence[ChatMessage], *, task: str = "chat") -> ChatStream: ...

    async def complete(self, messages: Sequence[ChatMessage], *, task: str = "chat") -> ChatResult: ...
