"""Reads and writes of the chat schema, each inside a caller's transaction (orrery_shared.db.Transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from orrery_chat import tree
from orrery_chat.chatfile import ImportedMessage
from orrery_chat.domain import Busy, MessageNotFound, NotAllowed, PathContext, Persona
from orrery_chat.ports import PathMessage, TreeNode
from orrery_chat.store import message_in, read_persona
from orrery_chat.tables import characters, conversations, messages, turns
from orrery_shared.events import CharacterCreated, ConversationDeleted
from orrery_shared.http import PG_INT_MAX


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
        "alternate_greetings": list(event.alternate_greetings),
        "portrait_url": event.portrait_url,
        "tags": list(event.tags),
    }
    update = {k: v for k, v in values.items() if k != "character_id"} | {"updated_at": sa.func.now()}
    await session.execute(
        insert(characters).values(values).on_conflict_do_update(index_elements=["character_id"], set_=update)
    )


async def persona(session: AsyncSession, character_id: UUID) -> Persona | None:
    return await read_persona(session, character_id)


async def conversation_of(session: AsyncSession, conversation_id: UUID, user_id: UUID) -> Any:
    query = sa.select(conversations).where(
        conversations.c.conversation_id == conversation_id, conversations.c.user_id == user_id
    )
    return (await session.execute(query)).first()


async def message_of(session: AsyncSession, message_id: UUID, user_id: UUID) -> Any:
    """A message of one of the user's conversations (None otherwise)."""
    query = (
        sa.select(messages.c.message_id, messages.c.conversation_id, messages.c.role)
        .join(conversations, conversations.c.conversation_id == messages.c.conversation_id)
        .where(messages.c.message_id == message_id, conversations.c.user_id == user_id)
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


async def context_at(session: AsyncSession, message_id: UUID) -> PathContext:
    return await tree.context_at(session, message_id)


async def active_path(session: AsyncSession, conversation_id: UUID, leaf: UUID | None) -> list[PathMessage]:
    """The whole active path, oldest first (for an export)."""
    if leaf is None:
        return []
    return list(reversed(await tree.page(session, conversation_id, leaf, PG_INT_MAX)))


async def path_page(
    session: AsyncSession, conversation_id: UUID, leaf: UUID | None, before: UUID | None, limit: int
) -> tuple[list[PathMessage], UUID | None]:
    """A page of the active path, newest first: up to `limit` messages above `before` (from the leaf when
    None), and the cursor of the next page (None at the root). MessageNotFound if `before` is not on it."""
    start = leaf
    if before is not None:
        found = await message_in(session, conversation_id, before)
        if found is None or leaf is None or before not in await tree.path_ids(session, leaf):
            raise MessageNotFound(before)
        start = found.parent_id
    if start is None:
        return [], None
    rows = await tree.page(session, conversation_id, start, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, rows[-1].message.message_id if more and rows else None


async def whole_tree(session: AsyncSession, conversation_id: UUID, leaf: UUID | None) -> list[TreeNode]:
    return await tree.whole_tree(session, conversation_id, leaf)


async def select(session: AsyncSession, conversation_id: UUID, message_id: UUID) -> UUID:
    """Make the path through `message_id` active (down to its most recently active descendant); the new leaf.
    The conversation's row must be locked (`lock_conversation`)."""
    if await message_in(session, conversation_id, message_id) is None:
        raise MessageNotFound(message_id)
    return await tree.make_active(session, conversation_id, message_id)


async def lock_conversation(session: AsyncSession, conversation_id: UUID, user_id: UUID) -> Any:
    query = (
        sa.select(conversations)
        .where(conversations.c.conversation_id == conversation_id, conversations.c.user_id == user_id)
        .with_for_update()
    )
    return (await session.execute(query)).first()


async def delete_message(session: AsyncSession, conversation: Any, message_id: UUID) -> UUID | None:
    """Delete a message with everything below it; returns the new active leaf. Refused (Busy) while a turn
    generates inside it, and (NotAllowed) for the conversation's only first message. The conversation's row must
    be locked."""
    cid = conversation.conversation_id
    target = await message_in(session, cid, message_id)
    if target is None:
        raise MessageNotFound(message_id)
    if await tree.subtree_busy(session, cid, message_id):
        raise Busy("a reply is being written there; delete it once it is done")
    siblings_query = sa.select(messages.c.message_id, messages.c.seq).where(
        messages.c.conversation_id == cid,
        messages.c.message_id != message_id,
        messages.c.parent_id == target.parent_id if target.parent_id is not None else messages.c.parent_id.is_(None),
    )
    siblings = (await session.execute(siblings_query.order_by(messages.c.seq.desc()))).all()
    if target.parent_id is None and not siblings:
        raise NotAllowed("the conversation's first message is its only start; delete the conversation instead")
    leaf: UUID | None = conversation.active_leaf_id
    on_active_path = leaf is not None and message_id in await tree.path_ids(session, leaf)
    deleted = await tree.delete_subtree(session, message_id)
    if target.parent_id is not None:
        # The parent leads on to its latest remaining alternative, if any.
        await session.execute(
            messages.update()
            .where(messages.c.message_id == target.parent_id, messages.c.active_child_id == message_id)
            .values(active_child_id=siblings[0].message_id if siblings else None)
        )
    await session.execute(
        conversations.update()
        .where(conversations.c.conversation_id == cid)
        .values(message_count=conversations.c.message_count - len(deleted))
    )
    if not on_active_path:
        return leaf
    successor = siblings[0].message_id if siblings else target.parent_id
    assert successor is not None
    return await tree.make_active(session, cid, successor)


async def insert_imported(
    session: AsyncSession,
    *,
    conversation_id: UUID,
    user_id: UUID,
    character_id: UUID,
    title: str,
    entries: Sequence[ImportedMessage],
    now: datetime,
) -> None:
    """A conversation as a chat file held it: its messages as one path, the last one the active leaf, and each
    message's swipes as its siblings (in their order, the shown one on the path)."""
    rows: list[dict[str, Any]] = []
    parent: UUID | None = None
    chosen_row: dict[str, Any] | None = None  # the path's last message so far
    for entry in entries:
        sent_at = entry.sent_at or now
        ids = [uuid4() for _ in entry.alternatives]
        for index, text in enumerate(entry.alternatives):
            rows.append(
                {
                    "message_id": ids[index],
                    "conversation_id": conversation_id,
                    "seq": len(rows) + 1,
                    "parent_id": parent,
                    "active_child_id": None,
                    "role": entry.role,
                    "content": text,
                    "status": "complete",
                    "created_at": sent_at,
                }
            )
        if chosen_row is not None:
            chosen_row["active_child_id"] = ids[entry.shown]
        chosen_row = rows[len(rows) - len(ids) + entry.shown]
        parent = ids[entry.shown]
    dates = [r["created_at"] for r in rows]
    await session.execute(
        conversations.insert().values(
            conversation_id=conversation_id,
            user_id=user_id,
            character_id=character_id,
            project_id=uuid4(),
            title=title,
            message_count=len(rows),
            last_seq=len(rows),
            created_at=min(dates),
            last_message_at=max(dates),
            active_leaf_id=parent,
        )
    )
    for start in range(0, len(rows), 1_000):
        await session.execute(messages.insert(), rows[start : start + 1_000])


async def alternatives(
    session: AsyncSession, conversation_id: UUID, path: Sequence[PathMessage]
) -> dict[UUID, tuple[list[str], int]]:
    """For each message of a path that has siblings of its own role: their texts in order, and its index."""
    with_siblings = [m.message for m in path if m.sibling_count > 1]
    if not with_siblings:
        return {}
    parents = [m.parent_id for m in with_siblings if m.parent_id is not None]
    query = sa.select(messages.c.message_id, messages.c.parent_id, messages.c.role, messages.c.content).where(
        sa.or_(
            messages.c.parent_id.in_(parents),
            sa.and_(
                messages.c.conversation_id == conversation_id,
                messages.c.parent_id.is_(None),
            ),
        )
    )
    siblings: dict[UUID | None, list[Any]] = {}
    for row in await session.execute(query.order_by(messages.c.seq)):
        siblings.setdefault(row.parent_id, []).append(row)
    found = {}
    for message in with_siblings:
        same_role = [r for r in siblings.get(message.parent_id, []) if r.role == message.role]
        ids = [r.message_id for r in same_role]
        if len(ids) > 1 and message.message_id in ids:
            found[message.message_id] = ([r.content for r in same_role], ids.index(message.message_id))
    return found


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


async def reown(session: AsyncSession, from_user_id: UUID, to_user_id: UUID) -> int:
    result = await session.execute(
        conversations.update().where(conversations.c.user_id == from_user_id).values(user_id=to_user_id)
    )
    await session.execute(
        characters.update().where(characters.c.owner_user_id == from_user_id).values(owner_user_id=to_user_id)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
