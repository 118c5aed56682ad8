"""Reads and writes of the chat schema, each inside a caller's transaction (orrery_shared.db.Transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from orrery_chat.domain import Memory, Persona, StoredMessage
from orrery_chat.tables import characters, conversations, messages, turns
from orrery_shared.events import CharacterCreated


async def upsert_character(session: AsyncSession, event: CharacterCreated) -> None:
    values = {
        "character_id": event.character_id,
        "owner_user_id": event.owner_user_id,
        "name": event.name,
        "planet": event.planet,
        "sex": event.sex,
        "species": event.species,
        "archetype": event.archetype,
        "personality": event.personality,
        "backstory": event.backstory,
        "speaking_style": event.speaking_style,
        "greeting": event.greeting,
        "portrait_url": event.portrait_url,
        "tags": list(event.tags),
    }
    update = {k: v for k, v in values.items() if k != "character_id"} | {"updated_at": sa.func.now()}
    await session.execute(
        insert(characters).values(values).on_conflict_do_update(index_elements=["character_id"], set_=update)
    )


def _persona(row: Any) -> Persona:
    return Persona(
        character_id=row.character_id,
        name=row.name,
        planet=row.planet,
        sex=row.sex,
        species=row.species,
        archetype=row.archetype,
        personality=row.personality,
        backstory=row.backstory,
        speaking_style=row.speaking_style,
        greeting=row.greeting,
        owner_user_id=row.owner_user_id,
        portrait_url=row.portrait_url,
        tags=tuple(row.tags or ()),
    )


async def persona(session: AsyncSession, character_id: UUID) -> Persona | None:
    row = (await session.execute(sa.select(characters).where(characters.c.character_id == character_id))).first()
    return _persona(row) if row else None


async def conversation_for_update(session: AsyncSession, conversation_id: UUID) -> Any:
    query = sa.select(conversations).where(conversations.c.conversation_id == conversation_id).with_for_update()
    return (await session.execute(query)).first()


class StartedTurn(NamedTuple):
    """How far an earlier delivery of a turn got."""

    status: str
    user_message_id: UUID
    assistant_message_id: UUID | None
    failure: str | None


async def conversation_and_turn_for_update(
    session: AsyncSession, conversation_id: UUID, turn_id: UUID
) -> tuple[Any, StartedTurn | None] | None:
    """The conversation, locked, and the turn if an earlier delivery started it, in one round trip (None when
    the conversation does not exist yet). A turn's row only changes under its conversation's lock."""
    query = (
        sa.select(
            conversations,
            turns.c.status.label("turn_status"),
            turns.c.user_message_id.label("turn_user_message_id"),
            turns.c.assistant_message_id.label("turn_assistant_message_id"),
            turns.c.failure.label("turn_failure"),
        )
        .select_from(conversations.outerjoin(turns, turns.c.turn_id == turn_id))
        .where(conversations.c.conversation_id == conversation_id)
        .with_for_update(of=conversations)
    )
    row = (await session.execute(query)).first()
    if row is None:
        return None
    if row.turn_status is None:
        return row, None
    return row, StartedTurn(row.turn_status, row.turn_user_message_id, row.turn_assistant_message_id, row.turn_failure)


async def conversation_of(session: AsyncSession, conversation_id: UUID, user_id: UUID) -> Any:
    query = sa.select(conversations).where(
        conversations.c.conversation_id == conversation_id, conversations.c.user_id == user_id
    )
    return (await session.execute(query)).first()


async def create_conversation(
    session: AsyncSession, *, conversation_id: UUID, user_id: UUID, character_id: UUID, project_id: UUID, title: str
) -> None:
    await session.execute(
        conversations.insert().values(
            conversation_id=conversation_id,
            user_id=user_id,
            character_id=character_id,
            project_id=project_id,
            title=title,
        )
    )


async def append_message(
    session: AsyncSession,
    *,
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
    along: Sequence[sa.Insert | sa.Update] = (),
) -> StoredMessage:
    """Add a message at the end of the conversation, in one round trip: the conversation's row update takes its
    lock and hands out the next seq, the message is inserted with it. `along`: writes (with RETURNING) that go
    in the same statement, such as the turn's row."""
    bumped = (
        conversations.update()
        .where(conversations.c.conversation_id == conversation_id)
        .values(
            last_seq=conversations.c.last_seq + 1,
            message_count=conversations.c.message_count + 1,
            last_message_at=sa.func.now(),
            status="active",
        )
        .returning(conversations.c.last_seq, conversations.c.last_message_at)
        .cte("bumped")
    )
    values = {
        "message_id": sa.literal(message_id, sa.Uuid),
        "conversation_id": sa.literal(conversation_id, sa.Uuid),
        "seq": bumped.c.last_seq,
        "role": sa.literal(role, sa.Text),
        "content": sa.literal(content, sa.Text),
        "status": sa.literal(status, sa.Text),
        "turn_id": sa.literal(turn_id, sa.Uuid),
        "client_msg_id": sa.literal(client_msg_id, sa.Text),
        "prompt_tokens": sa.literal(prompt_tokens, sa.Integer),
        "completion_tokens": sa.literal(completion_tokens, sa.Integer),
        "model": sa.literal(model, sa.Text),
        "created_at": bumped.c.last_message_at,
    }
    insert = (
        messages.insert()
        .from_select(list(values), sa.select(*values.values()))
        .returning(messages.c.seq, messages.c.created_at)
    )
    if along:
        appended = insert.cte("appended")
        # Referenced through counts, so each write is part of the statement without changing its one row.
        writes = [
            sa.select(sa.func.count()).select_from(w.cte(f"along_{n}")).scalar_subquery() for n, w in enumerate(along)
        ]
        added = (await session.execute(sa.select(appended.c.seq, appended.c.created_at, *writes))).one()
    else:
        added = (await session.execute(insert)).one()
    return StoredMessage(message_id, added.seq, role, content, status, added.created_at)  # type: ignore[arg-type]


def _stored(row: Any) -> StoredMessage:
    return StoredMessage(row.message_id, row.seq, row.role, row.content, row.status, row.created_at)


async def messages_after(session: AsyncSession, conversation_id: UUID, after_seq: int) -> list[StoredMessage]:
    """Messages after `after_seq` in order: the unsummarised tail a prompt is built from."""
    query = (
        sa.select(messages)
        .where(messages.c.conversation_id == conversation_id, messages.c.seq > after_seq)
        .order_by(messages.c.seq)
    )
    return [_stored(row) for row in await session.execute(query)]


async def message(session: AsyncSession, message_id: UUID) -> StoredMessage | None:
    row = (await session.execute(sa.select(messages).where(messages.c.message_id == message_id))).first()
    return _stored(row) if row else None


def starting_turn(turn_id: UUID, conversation_id: UUID, user_message_id: UUID) -> sa.Insert:
    """The turn's row, `processing` (a write for `append_message(along=...)`)."""
    return (
        turns.insert()
        .values(turn_id=turn_id, conversation_id=conversation_id, status="processing", user_message_id=user_message_id)
        .returning(turns.c.turn_id)
    )


async def retry_turn(session: AsyncSession, turn_id: UUID) -> None:
    await session.execute(turns.update().where(turns.c.turn_id == turn_id).values(attempts=turns.c.attempts + 1))


def finishing_turn(
    turn_id: UUID, status: str, assistant_message_id: UUID | None, failure: str | None = None
) -> sa.Update:
    """The turn's row, finished (a write for `append_message(along=...)`)."""
    return (
        turns.update()
        .where(turns.c.turn_id == turn_id)
        .values(status=status, assistant_message_id=assistant_message_id, failure=failure, finished_at=sa.func.now())
        .returning(turns.c.turn_id)
    )


async def finish_turn(
    session: AsyncSession, turn_id: UUID, status: str, assistant_message_id: UUID | None, failure: str | None = None
) -> None:
    await session.execute(finishing_turn(turn_id, status, assistant_message_id, failure))


def memory_of(row: Any) -> Memory:
    return Memory(row.memory_summary, row.memory_upto_seq)


async def save_memory(session: AsyncSession, conversation_id: UUID, memory: Memory) -> None:
    await session.execute(
        conversations.update()
        .where(conversations.c.conversation_id == conversation_id, conversations.c.memory_upto_seq < memory.upto_seq)
        .values(memory_summary=memory.summary, memory_upto_seq=memory.upto_seq)
    )


async def end_conversation(session: AsyncSession, conversation_id: UUID, summary: str) -> datetime:
    row = (
        await session.execute(
            conversations.update()
            .where(conversations.c.conversation_id == conversation_id)
            .values(status="ended", end_summary=summary, ended_at=sa.func.now())
            .returning(conversations.c.ended_at)
        )
    ).one()
    ended_at: datetime = row.ended_at
    return ended_at


async def delete_conversation(session: AsyncSession, conversation_id: UUID, user_id: UUID) -> bool:
    result = await session.execute(
        conversations.delete().where(
            conversations.c.conversation_id == conversation_id, conversations.c.user_id == user_id
        )
    )
    await session.execute(turns.delete().where(turns.c.conversation_id == conversation_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def list_conversations(session: AsyncSession, user_id: UUID, limit: int, offset: int) -> Sequence[Any]:
    query = (
        sa.select(conversations, characters.c.name.label("character_name"), characters.c.portrait_url)
        .join(characters, characters.c.character_id == conversations.c.character_id, isouter=True)
        .where(conversations.c.user_id == user_id)
        .order_by(conversations.c.last_message_at.desc(), conversations.c.conversation_id)
        .limit(limit)
        .offset(offset)
    )
    return (await session.execute(query)).all()


async def page_of_messages(
    session: AsyncSession, conversation_id: UUID, limit: int, offset: int
) -> list[StoredMessage]:
    query = (
        sa.select(messages)
        .where(messages.c.conversation_id == conversation_id)
        .order_by(messages.c.seq)
        .limit(limit)
        .offset(offset)
    )
    return [_stored(row) for row in await session.execute(query)]


async def reown(session: AsyncSession, from_user_id: UUID, to_user_id: UUID) -> int:
    result = await session.execute(
        conversations.update().where(conversations.c.user_id == from_user_id).values(user_id=to_user_id)
    )
    await session.execute(
        characters.update().where(characters.c.owner_user_id == from_user_id).values(owner_user_id=to_user_id)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
