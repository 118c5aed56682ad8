"""The chat domain: personas, prompts within a token budget, rolling memory, titles. No I/O here.

A conversation is a tree of messages: each has a parent (a first message, the greeting or one of its
alternatives, has none), and the conversation has an active leaf. What the user sees, and everything a prompt
is built from, is the path from the root to that leaf. Memory follows the path: a rolling summary belongs to the
message it reaches and covers the path from the root to it, so the branches below that message share it and
the others never see it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from uuid import UUID

from orrery_shared.llm.messages import ChatMessage, assistant, system, user

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


class MessageNotFound(ChatError):
    """No such message in the conversation."""


class NotAllowed(ChatError):
    """What was asked cannot be done to this message (regenerate a user message, say); the text says why."""


class Busy(ChatError):
    """A reply is being generated where the change would apply; try again when it is done."""


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
    alternate_greetings: tuple[str, ...] = ()

    def visible_to(self, user_id: UUID) -> bool:
        return self.owner_user_id is None or self.owner_user_id == user_id


@dataclass(frozen=True)
class StoredMessage:
    message_id: UUID
    seq: int  # creation order within the conversation
    role: Role
    content: str
    status: MessageStatus
    created_at: datetime
    parent_id: UUID | None = None
    turn_id: UUID | None = None


@dataclass(frozen=True)
class Memory:
    """A rolling summary of a path, from the root down to message `through` (None: nothing summarised yet)."""

    summary: str = ""
    through: UUID | None = None


@dataclass(frozen=True)
class PathContext:
    """What a prompt can draw on at one message of the tree: the summary nearest above it on its path, and the
    messages after that summary down to the message itself (in order)."""

    memory: Memory
    tail: list[StoredMessage]


@dataclass(frozen=True)
class MemoryPolicy:
    """How much history a prompt carries: a token budget for recent messages, the rest summarised."""

    window_tokens: int = 1500
    # Fold down to this share of the budget, so a summary is rewritten every few turns, not every turn.
    fold_to_share: float = 0.5
    summary_max_tokens: int = 400


@dataclass(frozen=True)
class Prompt:
    messages: list[ChatMessage]
    window: list[StoredMessage] = field(default_factory=list)


# SillyTavern's "continue nudge": models that do not take a partial assistant message as the start of their
# reply are told to go on from it instead.
CONTINUE_NUDGE = "[Continue your last message from exactly where it stopped. Do not repeat any of it.]"


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
    persona: Persona, context: PathContext, policy: MemoryPolicy, count: TokenCounter, *, continuing: bool = False
) -> Prompt:
    """Persona + the path's rolling summary + its recent messages that fit the budget. The path ends with the
    message the reply answers (a user's, normally), or with the assistant message being continued.

    Messages already folded into the summary never reach the prompt, so prompt size stops growing once the
    budget is reached while older facts live on in the summary. Nothing off the path is in it.
    """
    unsummarised = [m for m in context.tail if m.content]
    window = recent_window(unsummarised, policy.window_tokens, count)
    messages = [system(system_prompt(persona, context.memory))]
    messages += [user(m.content) if m.role == "user" else assistant(m.content) for m in window]
    if continuing:
        messages.append(system(CONTINUE_NUDGE))
    return Prompt(messages, window)


def messages_to_fold(tail: Sequence[StoredMessage], policy: MemoryPolicy, count: TokenCounter) -> list[StoredMessage]:
    """The oldest unsummarised messages of a path to fold into its summary, or none while the window fits."""
    unsummarised = [m for m in tail if m.content]
    total = sum(message_cost(m, count) for m in unsummarised)
    if total <= policy.window_tokens:
        return []
    keep = recent_window(unsummarised, int(policy.window_tokens * policy.fold_to_share), count)
    return unsummarised[: len(unsummarised) - len(keep)]


def summary_request(memory: Memory, persona: Persona, folded: Sequence[StoredMessage]) -> list[ChatMessage]:
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
) -> list[ChatMessage]:
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
