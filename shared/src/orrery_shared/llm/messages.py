"""Chat messages in the OpenAI wire shape, with small constructors."""

from __future__ import annotations

from typing import Literal, TypedDict

Role = Literal["system", "user", "assistant"]


class ChatMessage(TypedDict):
    """One chat message: a role and its text."""

    role: Role
    content: str


def system(content: str) -> ChatMessage:
    """A system message."""
    return {"role": "system", "content": content}


def user(content: str) -> ChatMessage:
    """A user message."""
    return {"role": "user", "content": content}


def assistant(content: str) -> ChatMessage:
    """An assistant message."""
    return {"role": "assistant", "content": content}
