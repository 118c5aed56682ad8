"""Which text the platform accepts: what PostgreSQL can store.

PostgreSQL's `text` and `jsonb` cannot hold the NUL character, and UTF-8 cannot encode a lone surrogate (JSON
can spell both: `\\u0000`, `\\ud800`). Text with either is refused where it enters — at every service's HTTP edge
(orrery_shared.http.StorableText) and in the gateway's WebSocket frames — with a clear `invalid`, instead of
being accepted and then failing where it is stored (a lost message, a 500).
"""

from __future__ import annotations

from typing import Any

NUL = "\x00"

# A JSON Schema (and pydantic) pattern for text that must say something: storable, and not only whitespace.
NOT_BLANK = r"^[^\x00]*[^\s\x00][^\x00]*$"


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored, or None if it can."""
    if NUL in text:
        return "contains the NUL character"
    try:
        text.encode()
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    return None


def unstorable_text(value: Any) -> tuple[str, str] | None:
    """The first string in a parsed JSON value (keys included) that cannot be stored: (where, why); None if none."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                return where or "body", problem
        elif isinstance(item, dict):
            for key, inner in item.items():
                stack.append((key, f"{where}.{key}" if where else str(key)))
                stack.append((inner, f"{where}.{key}" if where else str(key)))
        elif isinstance(item, list):
            stack.extend((inner, f"{where}[{i}]") for i, inner in enumerate(item))
    return None
