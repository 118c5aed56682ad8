"""The token path's contract: the entries of a turn's Redis Stream `turn:{turn_id}` (see orrery_shared.turn_keys),
written by chat and read by the gateway.

Every entry has a `seq` that only grows within a turn and a `type`:
- `delta {text}`: the next piece of the reply;
- `restart {}`: the reply is generated anew (an earlier attempt was interrupted); what follows replaces it;
- `done {message_id, status}`: the reply is stored (`status` complete or cancelled); the last entry;
- `error {reason, retryable}`: the turn failed or was refused (`retryable` "1" or "0"); the last entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    DELTA = "delta"
    RESTART = "restart"
    DONE = "done"
    ERROR = "error"


# Field names, as stored.
SEQ = "seq"
TYPE = "type"
TEXT = "text"
MESSAGE_ID = "message_id"
STATUS = "status"
REASON = "reason"
RETRYABLE = "retryable"


@dataclass(frozen=True)
class Delta:
    seq: int
    text: str


@dataclass(frozen=True)
class Restart:
    seq: int


@dataclass(frozen=True)
class Done:
    seq: int
    message_id: str
    status: str


@dataclass(frozen=True)
class Error:
    seq: int
    reason: str
    retryable: bool


Entry = Delta | Restart | Done | Error


def done_fields(message_id: str, status: str) -> dict[str, str]:
    """The fields of a `done` entry besides seq and type."""
    return {MESSAGE_ID: message_id, STATUS: status}


def error_fields(reason: str, retryable: bool) -> dict[str, str]:
    """The fields of an `error` entry besides seq and type."""
    return {REASON: reason, RETRYABLE: "1" if retryable else "0"}


def seq_of(fields: Mapping[bytes, bytes]) -> int:
    return int(fields[SEQ.encode()])


def parse(fields: Mapping[bytes, bytes]) -> Entry:
    """An entry as Redis returns it (bytes field names and values). An unknown type reads as an error, so a
    reader never waits for more after an entry it does not understand."""
    text = {key.decode(): value.decode() for key, value in fields.items()}
    seq = int(text[SEQ])
    kind = text.get(TYPE)
    if kind == Kind.DELTA:
        return Delta(seq, text.get(TEXT, ""))
    if kind == Kind.RESTART:
        return Restart(seq)
    if kind == Kind.DONE:
        return Done(seq, text[MESSAGE_ID], text.get(STATUS, "complete"))
    return Error(seq, text.get(REASON, "failed"), text.get(RETRYABLE, "1") == "1")


def is_final(entry: Entry) -> bool:
    """Whether nothing follows this entry."""
    return isinstance(entry, Done | Error)
