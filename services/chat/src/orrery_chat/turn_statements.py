"""The statements of a turn's two transactions, as SQL run by psycopg (see orrery_shared.db.direct).

They are what chat does between consuming a turn and asking for its reply, and again when the reply has been
streamed, so they are written for round trips: appending a message is one statement (the conversation's row
update takes its lock and hands out the message's `seq`), and it carries the turn's row and, when starting a
turn, the read of the conversation's unsummarised messages. Every parameter is cast, so a NULL still has its
column's type.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID, uuid4

from orrery_chat.domain import Memory, Persona, StoredMessage
from orrery_chat.repository import persona_of, stored_from_row
from orrery_shared.db.direct import OUTBOX_COLUMNS, OUTBOX_VALUES, DirectTransaction
from orrery_shared.events import Event

_MESSAGE_COLUMNS = "message_id, seq, role, content, status, created_at"

# A turn's row is locked before its conversation's, by every statement that changes an existing turn: finishing
# an attempt does it in that order, so taking a turn over must too (the other order can deadlock the two).
_LOCK_TURN = "SELECT 1 FROM turns WHERE turn_id = %(turn_id)s::uuid FOR UPDATE"

_LOCK_CONVERSATION_AND_TURN = """
SELECT c.conversation_id, c.user_id, c.character_id, c.project_id, c.memory_summary, c.memory_upto_seq,
       t.status AS turn_status, t.user_message_id AS turn_user_message_id,
       t.assistant_message_id AS turn_assistant_message_id, t.failure AS turn_failure
FROM conversations c LEFT JOIN turns t ON t.turn_id = %(turn_id)s::uuid
WHERE c.conversation_id = %(conversation_id)s::uuid
FOR UPDATE OF c
"""

_CONVERSATION_OF = """
SELECT conversation_id, user_id, character_id, project_id, memory_summary, memory_upto_seq
FROM conversations WHERE conversation_id = %(conversation_id)s::uuid AND user_id = %(user_id)s::uuid
"""

_PERSONA = """
SELECT character_id, owner_user_id, name, planet, sex, species, archetype, personality, backstory,
       speaking_style, greeting, portrait_url, tags
FROM characters WHERE character_id = %(character_id)s::uuid
"""

_CREATE_CONVERSATION = """
INSERT INTO conversations (conversation_id, user_id, character_id, project_id, title)
VALUES (%(conversation_id)s::uuid, %(user_id)s::uuid, %(character_id)s::uuid, %(project_id)s::uuid, %(title)s::text)
RETURNING conversation_id, user_id, character_id, project_id, memory_summary, memory_upto_seq
"""


# The row update waits for the conversation's lock, then numbers the message; `created_at` is the time the
# conversation last changed (`at`, the transaction's start unless given), so a conversation's last_message_at is
# its last message's created_at.
def _append(condition: str = "", returning: str = "", at: str = "now()", before: str = "") -> str:
    return f"""
WITH {before}bumped AS (
    UPDATE conversations
    SET last_seq = last_seq + 1, message_count = message_count + 1, last_message_at = {at}, status = 'active'
    WHERE conversation_id = %(conversation_id)s::uuid{condition}
    RETURNING last_seq, last_message_at{returning}
), appended AS (
    INSERT INTO messages (message_id, conversation_id, seq, role, content, status, turn_id, client_msg_id,
                          prompt_tokens, completion_tokens, model, created_at)
    SELECT %(message_id)s::uuid, %(conversation_id)s::uuid, last_seq, %(role)s::text, %(content)s::text,
           %(status)s::text, %(turn_id)s::uuid, %(client_msg_id)s::text, %(prompt_tokens)s::int,
           %(completion_tokens)s::int, %(model)s::text, last_message_at
    FROM bumped
    RETURNING {_MESSAGE_COLUMNS}
)"""


_APPEND = _append()

# A new turn in a conversation the user owns, all in one statement; it changes nothing (and returns no rows)
# when the conversation does not exist yet, is someone else's, is with another character than the caller
# expects, or the turn was started by an earlier delivery.
# Each row is a message (the conversation's unsummarised ones, the new one last); the last row carries the
# conversation too (its summary is the largest value here: once, not once per message). A caller that knows the
# unsummarised messages up to `known_seq` under the memory reaching `known_upto` gets only the new one when that
# is still so: messages never change and their seqs have no gaps, so the new one's seq following `known_seq`
# means nothing was appended in between.
_START_TURN_IF_NEW = (
    _append(
        condition=(
            " AND user_id = %(user_id)s::uuid AND character_id = %(character_id)s::uuid"
            " AND NOT EXISTS (SELECT 1 FROM turns WHERE turn_id = %(turn_id)s::uuid)"
        ),
        returning=", character_id, project_id, memory_summary, memory_upto_seq",
    )
    + f""", started AS (
    INSERT INTO turns (turn_id, conversation_id, status, user_message_id)
    SELECT %(turn_id)s::uuid, %(conversation_id)s::uuid, 'processing', %(message_id)s::uuid FROM appended
)
SELECT * FROM (
    SELECT {_MESSAGE_COLUMNS}, NULL::int AS last_seq, NULL::uuid AS character_id, NULL::uuid AS project_id,
           NULL::text AS memory_summary, NULL::int AS memory_upto_seq
    FROM messages
    WHERE conversation_id = %(conversation_id)s::uuid AND seq > (SELECT memory_upto_seq FROM bumped)
      AND NOT EXISTS (
          SELECT 1 FROM bumped WHERE last_seq = %(known_seq)s::int + 1 AND memory_upto_seq = %(known_upto)s::int
      )
    UNION ALL
    SELECT a.message_id, a.seq, a.role, a.content, a.status, a.created_at,
           b.last_seq, b.character_id, b.project_id, b.memory_summary, b.memory_upto_seq
    FROM appended a CROSS JOIN bumped b
) m
ORDER BY m.seq
"""
)

_APPEND_GREETING = _APPEND + f"\nSELECT {_MESSAGE_COLUMNS} FROM appended"

# A conversation's first turn in one statement: the conversation, its greeting (seq 1), the user's message (seq 2)
# and the turn. It changes nothing (and returns no rows) when the conversation exists already, whoever's it is
# and however far its turns got; `begin_turn` then finds out which. The greeting and the message share the
# statement's time, as they would in one transaction.
_START_CONVERSATION_IF_NEW = f"""
WITH created AS (
    INSERT INTO conversations (conversation_id, user_id, character_id, project_id, title, message_count, last_seq)
    VALUES (%(conversation_id)s::uuid, %(user_id)s::uuid, %(character_id)s::uuid, %(project_id)s::uuid,
            %(title)s::text, 2, 2)
    ON CONFLICT (conversation_id) DO NOTHING
    RETURNING last_message_at
), greeted AS (
    INSERT INTO messages (message_id, conversation_id, seq, role, content, status, created_at)
    SELECT %(greeting_id)s::uuid, %(conversation_id)s::uuid, 1, 'assistant', %(greeting)s::text, 'complete',
           last_message_at
    FROM created
    RETURNING {_MESSAGE_COLUMNS}
), appended AS (
    INSERT INTO messages (message_id, conversation_id, seq, role, content, status, turn_id, client_msg_id, created_at)
    SELECT %(message_id)s::uuid, %(conversation_id)s::uuid, 2, 'user', %(content)s::text, 'complete',
           %(turn_id)s::uuid, %(client_msg_id)s::text, last_message_at
    FROM created
    RETURNING {_MESSAGE_COLUMNS}
), started AS (
    INSERT INTO turns (turn_id, conversation_id, status, user_message_id)
    SELECT %(turn_id)s::uuid, %(conversation_id)s::uuid, 'processing', %(message_id)s::uuid FROM appended
)
SELECT * FROM greeted UNION ALL SELECT * FROM appended ORDER BY seq
"""

# A data-modifying WITH runs whether or not the query reads it. The messages read here come from a snapshot
# taken after this transaction locked the conversation, so they hold every earlier message; the one appended
# by this statement is not in that snapshot and joins through RETURNING.
_APPEND_STARTING_TURN = (
    _APPEND
    + f""", started AS (
    INSERT INTO turns (turn_id, conversation_id, status, user_message_id)
    VALUES (%(turn_id)s::uuid, %(conversation_id)s::uuid, 'processing', %(message_id)s::uuid)
)
SELECT {_MESSAGE_COLUMNS} FROM messages
WHERE conversation_id = %(conversation_id)s::uuid AND seq > %(after_seq)s::int
UNION ALL
SELECT {_MESSAGE_COLUMNS} FROM appended
ORDER BY seq
"""
)

# The reply, the turn's end and its completed event in one statement, so it commits on its own. The event was
# built before the statement, so the reply's time is given (when its stream ended) rather than taken here.
# Fenced: only the turn's newest attempt, while the turn is still processing, finishes it; for any other the
# statement changes nothing and returns no row. The turn's row is updated (and locked) first, and the
# conversation's only once that succeeded, so a later attempt taking the turn over concurrently either waits for
# this one to finish (and then finds it finished) or makes it change nothing. (The partial unique index
# `messages_one_reply_per_turn` refuses a second reply whatever happens.)
_APPEND_FINISHING_TURN = (
    _append(
        at="%(created_at)s::timestamptz",
        condition=" AND EXISTS (SELECT 1 FROM finished)",
        before="""finished AS (
    UPDATE turns
    SET status = %(turn_status)s::text, assistant_message_id = %(message_id)s::uuid, failure = NULL,
        finished_at = now()
    WHERE turn_id = %(turn_id)s::uuid AND status = 'processing' AND attempts = %(attempt)s::int
    RETURNING turn_id
), """,
    )
    + f""", published AS (
    INSERT INTO {OUTBOX_COLUMNS} SELECT {OUTBOX_VALUES} FROM appended
)
SELECT {_MESSAGE_COLUMNS} FROM appended
"""
)

_MESSAGES_AFTER = f"""
SELECT {_MESSAGE_COLUMNS} FROM messages
WHERE conversation_id = %(conversation_id)s::uuid AND seq > %(after_seq)s::int
ORDER BY seq
"""

_MESSAGE = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE message_id = %(message_id)s::uuid"

# Only ever forward: a fold that finishes after a later one must not bring back an older summary.
_SAVE_MEMORY = """
UPDATE conversations SET memory_summary = %(summary)s::text, memory_upto_seq = %(upto_seq)s::int
WHERE conversation_id = %(conversation_id)s::uuid AND memory_upto_seq < %(upto_seq)s::int
"""

_RETRY_TURN = """
UPDATE turns SET attempts = attempts + 1 WHERE turn_id = %(turn_id)s::uuid RETURNING attempts, stream_seq
"""

_RECORD_STREAM_SEQ = """
UPDATE turns SET stream_seq = GREATEST(COALESCE(stream_seq, 0), %(seq)s::int) WHERE turn_id = %(turn_id)s::uuid
"""

# Fenced like finishing: only the newest attempt of a turn still processing fails it.
_FAIL_TURN = """
UPDATE turns SET status = 'failed', assistant_message_id = NULL, failure = %(failure)s::text, finished_at = now()
WHERE turn_id = %(turn_id)s::uuid AND status = 'processing' AND attempts = %(attempt)s::int
RETURNING turn_id
"""


class ConversationState(NamedTuple):
    """What a turn needs of its conversation."""

    conversation_id: UUID
    user_id: UUID
    character_id: UUID
    project_id: UUID
    memory: Memory


class StartedTurn(NamedTuple):
    """How far an earlier delivery of a turn got."""

    status: str
    user_message_id: UUID
    assistant_message_id: UUID | None
    failure: str | None


def _locked(row: Any) -> ConversationState:
    memory = Memory(row.memory_summary, row.memory_upto_seq)
    return ConversationState(row.conversation_id, row.user_id, row.character_id, row.project_id, memory)


async def conversation_and_turn_for_update(
    tx: DirectTransaction, conversation_id: UUID, turn_id: UUID
) -> tuple[ConversationState, StartedTurn | None] | None:
    """The conversation, locked, and the turn, locked, if an earlier delivery started it (None when the
    conversation does not exist yet)."""
    await tx.execute(_LOCK_TURN, {"turn_id": turn_id})
    row = await tx.row(_LOCK_CONVERSATION_AND_TURN, {"conversation_id": conversation_id, "turn_id": turn_id})
    if row is None:
        return None
    if row.turn_status is None:
        return _locked(row), None
    started = StartedTurn(row.turn_status, row.turn_user_message_id, row.turn_assistant_message_id, row.turn_failure)
    return _locked(row), started


async def conversation_of(tx: DirectTransaction, conversation_id: UUID, user_id: UUID) -> ConversationState | None:
    """The user's conversation, not locked (None if there is none or it is someone else's)."""
    row = await tx.row(_CONVERSATION_OF, {"conversation_id": conversation_id, "user_id": user_id})
    return _locked(row) if row else None


async def persona(tx: DirectTransaction, character_id: UUID) -> Persona | None:
    row = await tx.row(_PERSONA, {"character_id": character_id})
    return persona_of(row) if row else None


_PROJECT_OF_ANOTHER = """
SELECT 1 FROM conversations WHERE project_id = %(project_id)s::uuid AND user_id <> %(user_id)s::uuid LIMIT 1
"""


async def project_of_another(tx: DirectTransaction, project_id: UUID, user_id: UUID) -> bool:
    """Whether another user's conversation feeds this project."""
    return await tx.row(_PROJECT_OF_ANOTHER, {"project_id": project_id, "user_id": user_id}) is not None


async def create_conversation(
    tx: DirectTransaction, *, conversation_id: UUID, user_id: UUID, character_id: UUID, project_id: UUID, title: str
) -> ConversationState:
    """A new conversation (its row is this transaction's until it commits)."""
    params = {
        "conversation_id": conversation_id,
        "user_id": user_id,
        "character_id": character_id,
        "project_id": project_id,
        "title": title,
    }
    row = await tx.row(_CREATE_CONVERSATION, params)
    assert row is not None
    return _locked(row)


def _message_params(
    message_id: UUID,
    conversation_id: UUID,
    role: str,
    content: str,
    status: str,
    turn_id: UUID | None = None,
    client_msg_id: str | None = None,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "conversation_id": conversation_id,
        "role": role,
        "content": content,
        "status": status,
        "turn_id": turn_id,
        "client_msg_id": client_msg_id,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "model": model,
    }


async def append_greeting(tx: DirectTransaction, conversation_id: UUID, message_id: UUID, greeting: str) -> None:
    params = _message_params(message_id, conversation_id, "assistant", greeting, "complete")
    await tx.row(_APPEND_GREETING, params)


async def start_turn_if_new(
    tx: DirectTransaction,
    *,
    turn_id: UUID,
    conversation_id: UUID,
    user_id: UUID,
    character_id: UUID,
    message_id: UUID,
    content: str,
    client_msg_id: str | None,
    known: tuple[Memory, Sequence[StoredMessage]] | None = None,
) -> tuple[ConversationState, list[StoredMessage]] | None:
    """The common case in one statement: the user's conversation with `character_id` exists and this is the
    turn's first delivery. Appends the user's message, records the turn as processing and returns the
    conversation and its unsummarised messages, the new one last; None (having changed nothing) otherwise.

    `known` is a memory and the unsummarised messages after it, as the caller last saw them: while they are
    still the conversation's, they are not read again."""
    params = _message_params(message_id, conversation_id, "user", content, "complete", turn_id, client_msg_id)
    known_memory, known_history = known or (None, ())
    known_seq = known_history[-1].seq if known_history else None
    known_upto = known_memory.upto_seq if known_memory is not None else None
    params |= {"user_id": user_id, "character_id": character_id, "known_seq": known_seq, "known_upto": known_upto}
    rows = await tx.rows(_START_TURN_IF_NEW, params)
    if not rows:
        return None
    new = rows[-1]  # the user's message, with the conversation
    memory = Memory(new.memory_summary, new.memory_upto_seq)
    conversation = ConversationState(conversation_id, user_id, new.character_id, new.project_id, memory)
    new_seq = new.last_seq  # the user's message's
    if known_seq is not None and new_seq == known_seq + 1 and memory.upto_seq == known_upto:
        # The statement skipped the messages: the caller's are still them.
        if memory == known_memory:
            return conversation, [*known_history, stored_from_row(new)]
        # The same reach in other words (two folds raced): the caller's messages are right, its memory is not.
        return conversation, [m for m in await messages_after(tx, conversation_id, memory.upto_seq) if m.seq <= new_seq]
    history = [stored_from_row(row) for row in rows]
    if len(history) != new_seq - memory.upto_seq:
        # The messages were read from the statement's snapshot, taken before it had the conversation's lock: a
        # message committed meanwhile (another process finishing the previous turn during a rebalance) is
        # missing. A new read has it; messages never change, and any appended since this one are left out.
        later_read = await messages_after(tx, conversation_id, memory.upto_seq)
        history = [m for m in later_read if m.seq <= new_seq]
    return conversation, history


async def start_conversation_if_new(
    tx: DirectTransaction,
    *,
    turn_id: UUID,
    conversation_id: UUID,
    user_id: UUID,
    persona: Persona,
    project_id: UUID,
    title: str,
    message_id: UUID,
    content: str,
    client_msg_id: str | None,
) -> list[StoredMessage] | None:
    """A conversation's first turn in one statement: creates the conversation with `persona`'s greeting, appends
    the user's message and records the turn as processing; returns both messages, or None (having changed
    nothing) when the conversation exists already."""
    params = {
        "turn_id": turn_id,
        "conversation_id": conversation_id,
        "user_id": user_id,
        "character_id": persona.character_id,
        "project_id": project_id,
        "title": title,
        "greeting_id": uuid4(),
        "greeting": persona.greeting,
        "message_id": message_id,
        "content": content,
        "client_msg_id": client_msg_id,
    }
    rows = await tx.rows(_START_CONVERSATION_IF_NEW, params)
    return [stored_from_row(row) for row in rows] or None


async def start_turn(
    tx: DirectTransaction,
    *,
    turn_id: UUID,
    conversation_id: UUID,
    message_id: UUID,
    content: str,
    client_msg_id: str | None,
    after_seq: int,
) -> list[StoredMessage]:
    """Append the user's message, record the turn as processing, and return the messages after `after_seq`
    (the conversation's memory), the new one last."""
    params = _message_params(message_id, conversation_id, "user", content, "complete", turn_id, client_msg_id)
    rows = await tx.rows(_APPEND_STARTING_TURN, {**params, "after_seq": after_seq})
    return [stored_from_row(row) for row in rows]


async def finish_turn(
    tx: DirectTransaction,
    *,
    turn_id: UUID,
    attempt: int,
    conversation_id: UUID,
    message_id: UUID,
    content: str,
    status: str,
    turn_status: str,
    prompt_tokens: int,
    completion_tokens: int,
    model: str,
    created_at: datetime,
    event: Event,
) -> StoredMessage | None:
    """Append the assistant's reply, created at `created_at`, record the turn as finished with it and publish
    `event`, all in one statement; None, having changed nothing, unless `attempt` is the turn's newest and the
    turn is still processing."""
    params = _message_params(message_id, conversation_id, "assistant", content, status, turn_id)
    params |= {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "model": model}
    params |= {"turn_status": turn_status, "created_at": created_at, "attempt": attempt}
    row = await tx.row_publishing(_APPEND_FINISHING_TURN, params, event)
    return None if row is None else stored_from_row(row)


async def fail_turn(tx: DirectTransaction, turn_id: UUID, attempt: int, failure: str) -> bool:
    """Record the turn as failed; False, changing nothing, unless `attempt` is its newest and it is processing."""
    return await tx.row(_FAIL_TURN, {"turn_id": turn_id, "attempt": attempt, "failure": failure}) is not None


async def save_memory(tx: DirectTransaction, conversation_id: UUID, memory: Memory) -> None:
    params = {"conversation_id": conversation_id, "summary": memory.summary, "upto_seq": memory.upto_seq}
    await tx.execute(_SAVE_MEMORY, params)


async def retry_turn(tx: DirectTransaction, turn_id: UUID) -> tuple[int, int]:
    """Take the turn over as a new attempt; returns the attempt's number and the last seq an interrupted attempt
    recorded (0 if none did)."""
    row = await tx.row(_RETRY_TURN, {"turn_id": turn_id})
    assert row is not None
    return int(row.attempts), int(row.stream_seq or 0)


async def record_stream_seq(tx: DirectTransaction, turn_id: UUID, seq: int) -> None:
    """Remember how far an interrupted attempt numbered the turn's stream."""
    await tx.execute(_RECORD_STREAM_SEQ, {"turn_id": turn_id, "seq": seq})


async def message(tx: DirectTransaction, message_id: UUID) -> StoredMessage | None:
    row = await tx.row(_MESSAGE, {"message_id": message_id})
    return stored_from_row(row) if row else None


async def messages_after(tx: DirectTransaction, conversation_id: UUID, after_seq: int) -> list[StoredMessage]:
    """Messages after `after_seq` in order: the unsummarised tail a prompt is built from."""
    rows = await tx.rows(_MESSAGES_AFTER, {"conversation_id": conversation_id, "after_seq": after_seq})
    return [stored_from_row(row) for row in rows]
