"""The Redis keys of a turn, shared by chat (which writes its reply) and the gateway (which relays it).

`turn:{id}` is the reply's token stream; `:cancel` the flag a user sets to stop it; `:attempt` the fence that
lets only the newest attempt write; `:owner` who asked for the turn, and when (the gateway's). Deleting a turn's
keys (`all_keys`) leaves nothing of it to resume or relay.
"""

from __future__ import annotations

from uuid import UUID


def stream_key(turn_id: UUID) -> str:
    return f"turn:{turn_id}"


def cancel_key(turn_id: UUID) -> str:
    return f"turn:{turn_id}:cancel"


def attempt_key(turn_id: UUID) -> str:
    return f"turn:{turn_id}:attempt"


def owner_key(turn_id: UUID) -> str:
    return f"turn:{turn_id}:owner"


def all_keys(turn_id: UUID) -> tuple[str, ...]:
    return stream_key(turn_id), cancel_key(turn_id), attempt_key(turn_id), owner_key(turn_id)
