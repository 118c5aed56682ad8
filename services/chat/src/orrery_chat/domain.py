"""The chat domain: personas, prompts within a token budget, rolling memory, titles. No I/O here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from uuid import UUID

Role = Literal["user", "assistant"]
MessageStatus = Literal["complete", "cancelled", "failed"]
TokenCounter = Callable[[str], int]

TITLE_MAX_CHARS = 60
MESSAGE_OVERHEAD = 4  # per-message chat-format cost, as the tokenizer estimate counts it


class ChatError(Exception):
    """Base of the chat domain's errors."""


class ConversationNotFound(ChatError):
    """No such conversation for this user (another user's is the same: not found)."""


class CharacterUnknown(ChatError):
    """The turn names a character this service has not heard of (yet)."""


class ConversationEnded(ChatError):
    """The conversation was ended; it takes no more turns."""


@dataclass(frozen=True)
class Persona:
    """What the chat service knows of a character (its own copy, built from character.created)."""

    character_id: UUID
    name: str
    planet: str
    sex: str
    species: str
    archetype: str
    personality: str
    backstory: str
    speaking_style: str
    greeting: str
    owner_user_id: UUID | None = None
    portrait_url: str = ""
    tags: tuple[str, ...] = ()

    def visible_to(self, user_id: UUID) -> bool:
        return self.owner_user_id is None or self.owner_user_id == user_id


@dataclass(frozen=True)
class StoredMessage:
    message_id: UUID
    seq: int
    role: Role
    content: str
    status: MessageStatus
    created_at: datetime


@dataclass(frozen=True)
class Memory:
    """The conversation's rolling summary, covering every message up to `upto_seq`."""

    summary: str = ""
    upto_seq: int = 0


@dataclass(frozen=True)
class MemoryPolicy:
    """How much history a prompt carries: a token budget for recent messages, the rest summarised."""

    window_tokens: int = 1500
    # Fold down to this share of the budget, so a summary is rewritten every few turns, not every turn.
    fold_to_share: float = 0.5
    summary_max_tokens: int = 400


@dataclass(frozen=True)
class Prompt:
    messages: list[dict[str, str]]
    window: list[StoredMessage] = field(default_factory=list)


def system_prompt(persona: Persona, memory: Memory) -> str:
    """The persona as instructions, plus what the character remembers of earlier conversation."""
    lines = [
        f"You are {persona.name}, a {persona.sex} {persona.species} {persona.archetype} from {persona.planet}.",
        f"Personality: {persona.personality}",
        f"Backstory: {persona.backstory}",
        f"Speaking style: {persona.speaking_style}",
        "Stay in character. Reply in a few sentences, as yourself, to the person you are talking with.",
    ]
    if memory.summary:
        lines.append(f"What you remember of your earlier conversation: {memory.summary}")
    return "\n".join(lines)


def message_cost(message: StoredMessage, count: TokenCounter) -> int:
    return count(message.content) + MESSAGE_OVERHEAD


def recent_window(history: Sequence[StoredMessage], budget: int, count: TokenCounter) -> list[StoredMessage]:
    """The newest messages (in order) whose total cost fits `budget`; always at least the newest one."""
    window: list[StoredMessage] = []
    spent = 0
    for message in reversed(history):
        cost = message_cost(message, count)
        if window and spent + cost > budget:
            break
        window.append(message)
        spent += cost
    window.reverse()
    return window


def build_prompt(
    persona: Persona, memory: Memory, history: Sequence[StoredMessage], policy: MemoryPolicy, count: TokenCounter
) -> Prompt:
    """Persona + rolling summary + the recent messages that fit the budget (history ends with the user's turn).

    Messages already folded into the summary never reach the prompt, so prompt size stops growing once the
    budget is reached while older facts live on in the summary.
    """
    unsummarised = [m for m in history if m.seq > memory.upto_seq and m.content]
    window = recent_window(unsummarised, policy.window_tokens, count)
    messages = [{"role": "system", "content": system_prompt(persona, memory)}]
    messages += [{"role": m.role, "content": m.content} for m in window]
    return Prompt(messages, window)


def messages_to_fold(
    history: Sequence[StoredMessage], memory: Memory, policy: MemoryPolicy, count: TokenCounter
) -> list[StoredMessage]:
    """The oldest unsummarised messages to fold into the summary, or none while the window still fits."""
    unsummarised = [m for m in history if m.seq > memory.upto_seq and m.content]
    total = sum(message_cost(m, count) for m in unsummarised)
    if total <= policy.window_tokens:
        return []
    keep = recent_window(unsummarised, int(policy.window_tokens * policy.fold_to_share), count)
    return unsummarised[: len(unsummarised) - len(keep)]


def summary_request(memory: Memory, persona: Persona, folded: Sequence[StoredMessage]) -> list[dict[str, str]]:
    """Messages asking the summary model to merge older messages into the running summary."""
    transcript = "\n".join(f"{'User' if m.role == 'user' else persona.name}: {m.content}" for m in folded)
    return [
        {
            "role": "system",
            "content": (
                "Summarize the conversation for long-term memory. Keep every fact, name, promise and detail "
                "the user shared about themselves, and what was decided. Write plain prose, at most 200 words."
            ),
        },
        {
            "role": "user",
            "content": f"Summary so far:\n{memory.summary or '(none)'}\n\nNew messages:\n{transcript}",
        },
    ]


def conversation_summary_request(
    persona: Persona, memory: Memory, recent: Sequence[StoredMessage]
) -> list[dict[str, str]]:
    """Messages asking for the closing summary of a whole conversation (when the user ends it)."""
    transcript = "\n".join(f"{'User' if m.role == 'user' else persona.name}: {m.content}" for m in recent)
    return [
        {
            "role": "system",
            "content": (
                f"Summarize this conversation between a user and {persona.name} for the user to read later: "
                "what was talked about, what was learned, how it ended. At most 150 words."
            ),
        },
        {
            "role": "user",
            "content": f"Earlier:\n{memory.summary or '(nothing earlier)'}\n\nConversation:\n{transcript}",
        },
    ]


def title_from(first_user_message: str) -> str:
    """A conversation title from the user's first message: its first line, shortened on a word boundary."""
    line = " ".join(first_user_message.split())
    if len(line) <= TITLE_MAX_CHARS:
        return line or "New conversation"
    cut = line[:TITLE_MAX_CHARS].rsplit(" ", 1)[0]
    return (cut or line[:TITLE_MAX_CHARS]) + "…"
