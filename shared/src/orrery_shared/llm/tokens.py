"""An offline token estimate, close to the BPE tokenizers of current chat models on ordinary prose.

Exact tokenizers (tiktoken and friends) download their vocabularies at first use, which a self-hosted
deployment cannot count on, so the platform estimates instead. The text is cut the way BPE
pre-tokenizers cut it (a word with its leading space, runs of up to three digits, runs of punctuation,
runs of whitespace) and each piece is priced:

* a word of up to 8 letters is one token (common words are single tokens); longer words cost one more
  token per further 4 letters;
* a CJK ideograph, kana or hangul syllable is one token;
* up to three digits are one token;
* punctuation costs one token per two characters (``."`` or ``?!`` often merge);
* a run of whitespace costs one token per eight characters.

On plain English prose this gives 4.5 to 5.5 characters per token, a little under the familiar
"characters / 4" rule of thumb and in line with current tokenizers on simple text; it is steadier than
that rule on short texts, JSON, numbers and CJK. Treat it as an estimate (budgets, usage when a provider
reports none), never as an exact count.
`split_tokens` returns the same pieces, so the stub server streams exactly `estimate_tokens(text)` chunks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping

_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_PIECE = re.compile(
    rf"""
      (?P<contraction>'(?:s|t|re|ve|m|ll|d)(?![^\W\d_]))  # English contractions
    | (?P<one>\ ?[{_CJK}])                      # one CJK character
    | (?P<word>\ ?(?:(?![{_CJK}])[^\W\d_])+)  # a word with its leading space
    | (?P<digits>\ ?\d{{1,3}})                  # up to three digits
    | (?P<punct>\ ?(?:[^\s\w]|_)+)              # a punctuation run
    | (?P<space>\s+)                            # whitespace
    | (?P<other>.)                              # anything else, one character at a time
    """,
    re.VERBOSE | re.IGNORECASE | re.DOTALL,
)
_WORD_FREE_LETTERS = 8
_WORD_LETTERS_PER_EXTRA_TOKEN = 4
_PUNCT_PER_TOKEN = 2
_SPACE_PER_TOKEN = 8
# Chat formats wrap each message in role markers; OpenAI documents about this overhead.
MESSAGE_OVERHEAD_TOKENS = 4
REPLY_PRIMING_TOKENS = 3


def _costs(text: str) -> Iterator[tuple[str, int]]:
    """Each piece of `text` with its token count."""
    for match in _PIECE.finditer(text):
        piece = match.group()
        kind = match.lastgroup
        size = len(piece)
        if kind == "word":
            letters = size - 1 if piece[0] == " " else size
            extra = letters - _WORD_FREE_LETTERS
            yield piece, 1 if extra <= 0 else 1 + -(-extra // _WORD_LETTERS_PER_EXTRA_TOKEN)
        elif kind == "punct":
            body = size - 1 if piece[0] == " " else size
            yield piece, -(-body // _PUNCT_PER_TOKEN)
        elif kind == "space":
            yield piece, -(-size // _SPACE_PER_TOKEN)
        else:
            yield piece, 1


def estimate_tokens(text: str) -> int:
    """Estimated token count of `text` (see the module docstring for the rules)."""
    return sum(count for _, count in _costs(text))


def split_tokens(text: str) -> list[str]:
    """Cut `text` into `estimate_tokens(text)` non-empty pieces that join back to `text`."""
    out: list[str] = []
    for piece, count in _costs(text):
        if count == 1:
            out.append(piece)
            continue
        # Every rule prices a piece at no more tokens than it has characters, so no part is empty.
        size, longer = divmod(len(piece), count)
        at = 0
        for i in range(count):
            step = size + (1 if i < longer else 0)
            out.append(piece[at : at + step])
            at += step
    return out


def estimate_message_tokens(messages: Iterable[Mapping[str, object]]) -> int:
    """Estimated prompt tokens of a chat request: each message's content plus the chat-format overhead."""
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        total += MESSAGE_OVERHEAD_TOKENS
        content = message.get("content")
        if isinstance(content, str):
            total += estimate_tokens(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    total += estimate_tokens(str(part["text"]))
        name = message.get("name")
        if isinstance(name, str):
            total += estimate_tokens(name)
    return total
