"""Reads and writes of the chat schema, each inside a caller's transaction (orrery_shared.db.Transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from orrery_chat.domain import Persona, StoredMessage
from orrery_chat.tables import characters, conversations, messages, turns
from orrery_shared.events import CharacterCreated, ConversationDeleted


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


def persona_of(row: Any) -> Persona:
    """The persona of anything carrying a character's fields by name: a `characters` row, or the
    `character.created` event itself."""
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
    return persona_of(row) if row else None


async def conversation_of(session: AsyncSession, conversation_id: UUID, user_id: UUID) -> Any:
    query = sa.select(conversations).where(
        conversations.c.conversation_id == conversation_id, conversations.c.user_id == user_id
    )
    return (await session.execute(query)).first()


async def usage_by_model(session: AsyncSession, user_id: UUID) -> list[Any]:
    """Tokens the user's stored replies cost, by model."""
    query = (
        sa.select(
            messages.c.model,
            sa.func.count().label("replies"),
            sa.func.coalesce(sa.func.sum(messages.c.prompt_tokens), 0).label("prompt_tokens"),
            sa.func.coalesce(sa.func.sum(messages.c.completion_tokens), 0).label("completion_tokens"),
        )
        .join(conversations, conversations.c.conversation_id == messages.c.conversation_id)
        .where(conversations.c.user_id == user_id, messages.c.model.is_not(None))
        .group_by(messages.c.model)
        .order_by(messages.c.model)
    )
    return list(await session.execute(query))


async def turn_of(session: AsyncSession, turn_id: UUID, user_id: UUID) -> Any:
    """A turn of one of the user's conversations (None otherwise)."""
    query = (
        sa.select(turns.c.turn_id, turns.c.conversation_id, turns.c.status, turns.c.assistant_message_id)
        .join(conversations, conversations.c.conversation_id == turns.c.conversation_id)
        .where(turns.c.turn_id == turn_id, conversations.c.user_id == user_id)
    )
    return (await session.execute(query)).first()


async def all_messages(session: AsyncSession, conversation_id: UUID) -> list[StoredMessage]:
    query = sa.select(messages).where(messages.c.conversation_id == conversation_id).order_by(messages.c.seq)
    return [stored_from_row(row) for row in await session.execute(query)]


async def insert_imported(
    session: AsyncSession,
    *,
    conversation_id: UUID,
    user_id: UUID,
    character_id: UUID,
    title: str,
    entries: Sequence[tuple[str, str, datetime]],
) -> None:
    """A conversation with its messages as a chat file held them (role, content, sent at), in order."""
    last_at = max(sent_at for _, _, sent_at in entries)
    await session.execute(
        conversations.insert().values(
            conversation_id=conversation_id,
            user_id=user_id,
            character_id=character_id,
            project_id=uuid4(),
            title=title,
            message_count=len(entries),
            last_seq=len(entries),
            created_at=min(sent_at for _, _, sent_at in entries),
            last_message_at=last_at,
        )
    )
    rows = [
        {
            "message_id": uuid4(),
            "conversation_id": conversation_id,
            "seq": seq,
            "role": role,
            "content": content,
            "status": "complete",
            "created_at": sent_at,
        }
        for seq, (role, content, sent_at) in enumerate(entries, start=1)
    ]
    for start in range(0, len(rows), 1_000):
        await session.execute(messages.insert(), rows[start : start + 1_000])


def stored_from_row(row: Any) -> StoredMessage:
    return StoredMessage(row.message_id, row.seq, row.role, row.content, row.status, row.created_at)


async def end_conversation(session: AsyncSession, conversation_id: UUID, summary: str) -> datetime | None:
    """Mark the conversation ended with `summary`; None if it is gone (deleted while its summary was written)."""
    row = (
        await session.execute(
            conversations.update()
            .where(conversations.c.conversation_id == conversation_id)
            .values(status="ended", end_summary=summary, ended_at=sa.func.now())
            .returning(conversations.c.ended_at)
        )
    ).first()
    return None if row is None else row.ended_at


async def delete_conversation(
    session: AsyncSession, conversation_id: UUID, user_id: UUID, streams_since: datetime
) -> ConversationDeleted | None:
    """Delete a user's conversation with its messages and turns; the event tells the other services what to
    forget (None if the user has no such conversation)."""
    row = (
        await session.execute(
            conversations.delete()
            .where(conversations.c.conversation_id == conversation_id, conversations.c.user_id == user_id)
            .returning(conversations.c.project_id)
        )
    ).first()
    if row is None:
        return None
    deleted_turns = await session.execute(
        turns.delete().where(turns.c.conversation_id == conversation_id).returning(turns.c.turn_id, turns.c.created_at)
    )
    recent = [t.turn_id for t in deleted_turns if t.created_at >= streams_since]
    still_fed = await session.scalar(sa.select(sa.exists().where(conversations.c.project_id == row.project_id)))
    return ConversationDeleted(
        conversation_id=conversation_id,
        user_id=user_id,
        project_id=row.project_id,
        project_orphaned=not still_fed,
        turn_ids=recent,
    )


async def erase_user(session: AsyncSession, user_ids: Sequence[UUID], streams_since: datetime) -> list[UUID]:
    """Delete every conversation (messages and turns with it) and private character of these users; returns
    the turns recent enough to still have a token stream."""
    gone = (
        sa.delete(conversations)
        .where(conversations.c.user_id.in_(user_ids))
        .returning(conversations.c.conversation_id)
        .cte("gone")
    )
    deleted_turns = await session.execute(
        sa.delete(turns)
        .where(turns.c.conversation_id.in_(sa.select(gone.c.conversation_id)))
        .returning(turns.c.turn_id, turns.c.created_at)
    )
    recent = [t.turn_id for t in deleted_turns if t.created_at >= streams_since]
    await session.execute(characters.delete().where(characters.c.owner_user_id.in_(user_ids)))
    return recent


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
    return [stored_from_row(row) for row in await session.execute(query)]


async def reown(session: AsyncSession, from_user_id: UUID, to_user_id: UUID) -> int:
    result = await session.execute(
        conversations.update().where(conversations.c.user_id == from_user_id).values(user_id=to_user_id)
    )
    await session.execute(
        characters.update().where(characters.c.owner_user_id == from_user_id).values(owner_user_id=to_user_id)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
