"""Summaries for requests that ask for one: extractive, deterministic, and faithful to what the user said.

A request whose system prompt starts with "Summarize" gets the earlier summary (when the request quotes one
after "Summary so far:" or "Earlier:") followed by the first sentence of each user line, within a word cap.
Facts the user stated therefore survive repeated summarising, as they would with a real model.
"""

from __future__ import annotations

import re

MAX_WORDS = 200
_EARLIER = re.compile(r"^(?:Summary so far|Earlier):\s*$", re.IGNORECASE)
_SECTION = re.compile(r"^(?:New messages|Conversation):\s*$", re.IGNORECASE)
_NOTHING = {"(none)", "(nothing earlier)"}


def wants_summary(system_prompt: str) -> bool:
    """Whether the request asks for a summary."""
    return system_prompt.lstrip().lower().startswith("summarize")


def _first_sentence(text: str) -> str:
    match = re.search(r"^(.+?[.!?])(\s|$)", text.strip())
    return (match.group(1) if match else text.strip()).strip()


def summarize(request_text: str) -> str:
    """The summary of a summary request's user message."""
    earlier: list[str] = []
    facts: list[str] = []
    section = "none"
    for raw in request_text.splitlines():
        line = raw.strip()
        if _EARLIER.match(line):
            section = "earlier"
        elif _SECTION.match(line):
            section = "new"
        elif line and section == "earlier" and line not in _NOTHING:
            earlier.append(line)
        elif line.lower().startswith("user:") and section in ("new", "none"):
            fact = _first_sentence(line[5:])
            if fact:
                facts.append(f"The user said: {fact}")
    sentences = earlier + facts
    kept: list[str] = []
    words = 0
    for sentence in sentences:
        count = len(sentence.split())
        if words + count > MAX_WORDS:
            break
        kept.append(sentence)
        words += count
    return " ".join(kept) or "Nothing of note was said."
