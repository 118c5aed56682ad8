"""The turn store on PostgreSQL (see orrery_chat.ports.TurnStore): how a turn is recorded, taken over by a
later attempt, finished and failed, each in one transaction.

A turn is processed exactly once in effect although Kafka delivers at least once: its `turns` row records how
far it got and which attempt is the newest (`attempts`); only that attempt, while the turn is processing,
stores a result, and the database holds at most one reply per turn (`messages_one_reply_per_turn`).

Locks are always taken turn first, then conversation, by everything that changes an existing turn, so two
attempts of one turn cannot deadlock.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from orrery_chat import tree
from orrery_chat.domain import (
    CharacterUnknown,
    ConversationNotFound,
    Memory,
    MessageNotFound,
    MessageStatus,
    NotAllowed,
    PathContext,
    Persona,
    Role,
    StoredMessage,
    title_from,
)
from orrery_chat.ports import FinishedTurn, Mode, Reply, StartedTurn
from orrery_chat.tables import characters, conversations, messages, turns
from orrery_shared.db import Database
from orrery_shared.events import ChatTurnCompleted, ChatTurnFailed, ChatTurnRequested

CHARACTER_POLL_S = 0.2


class _StartedConcurrently(Exception):
    """Another delivery of the turn recorded it while this one waited for the conversation: take it over."""


@dataclass(frozen=True)
class _Conversation:
    conversation_id: UUID
    user_id: UUID
    character_id: UUID
    project_id: UUID
    active_leaf_id: UUID | None


_CONVERSATION_COLUMNS = (
    conversations.c.conversation_id,
    conversations.c.user_id,
    conversations.c.character_id,
    conversations.c.project_id,
    conversations.c.active_leaf_id,
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
        alternate_greetings=tuple(row.alternate_greetings or ()),
    )


async def read_persona(session: AsyncSession, character_id: UUID) -> Persona | None:
    row = (await session.execute(sa.select(characters).where(characters.c.character_id == character_id))).first()
    return persona_of(row) if row else None


async def message_in(session: AsyncSession, conversation_id: UUID, message_id: UUID) -> StoredMessage | None:
    row = (
        await session.execute(
            sa.select(messages).where(
                messages.c.message_id == message_id, messages.c.conversation_id == conversation_id
            )
        )
    ).first()
    return tree.stored(row) if row else None


async def append(
    session: AsyncSession,
    conversation: _Conversation,
    *,
    parent_id: UUID | None,
    role: Role,
    content: str,
    status: MessageStatus = "complete",
    turn_id: UUID | None = None,
    client_msg_id: str | None = None,
    usage: Reply | None = None,
    created_at: Any = None,
    activate: bool = True,
    message_id: UUID | None = None,
) -> StoredMessage:
    """Add a message under `parent_id` (a first message when None), numbered next in the conversation; when
    `activate`, it becomes the active leaf (the conversation's row must be locked)."""
    message_id = message_id or uuid4()
    below_leaf = activate and parent_id is not None and parent_id == conversation.active_leaf_id
    bump: dict[str, Any] = {
        "last_seq": conversations.c.last_seq + 1,
        "message_count": conversations.c.message_count + 1,
        "last_message_at": created_at if created_at is not None else sa.func.now(),
        "status": "active",
    }
    if below_leaf:
        bump["active_leaf_id"] = message_id  # the common case: the new message simply extends the active path
    bumped = (
        await session.execute(
            conversations.update()
            .where(conversations.c.conversation_id == conversation.conversation_id)
            .values(bump)
            .returning(conversations.c.last_seq, conversations.c.last_message_at)
        )
    ).one()
    values: dict[str, Any] = {
        "message_id": message_id,
        "conversation_id": conversation.conversation_id,
        "seq": bumped.last_seq,
        "parent_id": parent_id,
        "role": role,
        "content": content,
        "status": status,
        "turn_id": turn_id,
        "client_msg_id": client_msg_id,
        "created_at": bumped.last_message_at,
    }
    if usage is not None:
        values |= {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "model": usage.model,
        }
    await session.execute(messages.insert().values(values))
    if below_leaf:
        await session.execute(
            messages.update().where(messages.c.message_id == parent_id).values(active_child_id=message_id)
        )
    elif activate:
        await tree.make_active(session, conversation.conversation_id, message_id, descend=False)
    return StoredMessage(
        message_id,
        bumped.last_seq,
        role,
        content,
        status,
        bumped.last_message_at,
        parent_id,
        turn_id,
    )


# A new conversation, unless it exists already or its project feeds another user's conversations (no row then).
_OPEN_CONVERSATION = sa.text(
    """
INSERT INTO conversations (conversation_id, user_id, character_id, project_id, title, message_count, last_seq,
                           active_leaf_id)
SELECT :conversation_id, :user_id, :character_id, :project_id, :title, :count, :count, :leaf
WHERE NOT EXISTS (SELECT 1 FROM conversations WHERE project_id = :project_id AND user_id <> :user_id)
ON CONFLICT (conversation_id) DO NOTHING
RETURNING created_at
"""
)


def _message_row(
    conversation_id: UUID, message_id: UUID, seq: int, parent_id: UUID | None, role: Role, content: str, at: Any
) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "conversation_id": conversation_id,
        "seq": seq,
        "parent_id": parent_id,
        "active_child_id": None,
        "role": role,
        "content": content,
        "status": "complete",
        "turn_id": None,
        "client_msg_id": None,
        "created_at": at,
    }


def _newest_attempt(turn: StartedTurn) -> sa.ColumnElement[bool]:
    """The turn's row, while it is processing and `turn.attempt` is its newest attempt (the fence)."""
    return sa.and_(turns.c.turn_id == turn.turn_id, turns.c.status == "processing", turns.c.attempts == turn.attempt)


class PostgresTurnStore:
    """Chat's turns on its PostgreSQL schema."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- beginning a turn ------------------------------------------------------------------------------

    async def begin(self, event: ChatTurnRequested, character_wait_s: float) -> StartedTurn | FinishedTurn:
        # character.created and the first turn travel on different topics: give the projection a moment.
        deadline = time.monotonic() + character_wait_s
        while True:
            try:
                async with self.db.transaction() as tx:
                    return await self._begin(tx.session, event)
            except _StartedConcurrently:
                continue
            except CharacterUnknown:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(CHARACTER_POLL_S)

    async def _begin(self, session: AsyncSession, event: ChatTurnRequested) -> StartedTurn | FinishedTurn:
        turn = (
            await session.execute(sa.select(turns).where(turns.c.turn_id == event.turn_id).with_for_update())
        ).first()
        if turn is not None:
            return await self._take_over(session, event, turn)
        found = await self._locked_conversation_and_persona(session, event.conversation_id)
        if found is None:
            if event.mode != "reply":
                raise ConversationNotFound(event.conversation_id)
            persona = await read_persona(session, event.character_id)
            if persona is None or not persona.visible_to(event.user_id):
                raise CharacterUnknown(event.character_id)
            return await self._open_conversation(session, event, persona)
        conversation, persona = found
        if conversation.user_id != event.user_id:
            raise ConversationNotFound(event.conversation_id)
        if persona is None or not persona.visible_to(event.user_id):
            raise CharacterUnknown(conversation.character_id)
        return await self._start(session, event, conversation, persona)

    async def _locked_conversation(self, session: AsyncSession, conversation_id: UUID) -> _Conversation | None:
        """The conversation's row, locked for the rest of the transaction."""
        query = sa.select(*_CONVERSATION_COLUMNS).where(conversations.c.conversation_id == conversation_id)
        row = (await session.execute(query.with_for_update())).first()
        return _Conversation(*row) if row else None

    async def _locked_conversation_and_persona(
        self, session: AsyncSession, conversation_id: UUID
    ) -> tuple[_Conversation, Persona | None] | None:
        """The conversation's row, locked for the rest of the transaction, with its character (read together)."""
        row = (
            await session.execute(
                sa.select(*(c.label(f"conversation_{c.name}") for c in _CONVERSATION_COLUMNS), *characters.c)
                .select_from(
                    conversations.outerjoin(characters, characters.c.character_id == conversations.c.character_id)
                )
                .where(conversations.c.conversation_id == conversation_id)
                .with_for_update(of=conversations)
            )
        ).first()
        if row is None:
            return None
        conversation = _Conversation(*row[: len(_CONVERSATION_COLUMNS)])
        return conversation, persona_of(row) if row.character_id is not None else None

    async def _open_conversation(
        self, session: AsyncSession, event: ChatTurnRequested, persona: Persona
    ) -> StartedTurn:
        """A conversation's first turn: the conversation, its greeting (and the greeting's alternatives), the
        user's message below the greeting, and the turn, in a few statements (the prompt needs no read: it is the
        greeting and the message)."""
        greetings = [persona.greeting, *persona.alternate_greetings]
        greeting_ids = [uuid4() for _ in greetings]
        message_id = uuid4()
        project_id = event.project_id or uuid4()
        created = (
            await session.execute(
                _OPEN_CONVERSATION,
                {
                    "conversation_id": event.conversation_id,
                    "user_id": event.user_id,
                    "character_id": persona.character_id,
                    "project_id": project_id,
                    "title": title_from(event.content),
                    "count": len(greetings) + 1,
                    "leaf": message_id,
                },
            )
        ).first()
        if created is None:
            # Not created: the project feeds another user's conversations (refused as someone else's
            # conversation is), or another first delivery created the conversation meanwhile (start over).
            others = sa.exists().where(
                conversations.c.project_id == project_id, conversations.c.user_id != event.user_id
            )
            if await session.scalar(sa.select(others)):
                raise ConversationNotFound(event.conversation_id)
            raise _StartedConcurrently
        at = created.created_at
        rows = [
            _message_row(event.conversation_id, greeting_ids[i], i + 1, None, "assistant", text, at)
            | {"active_child_id": message_id if i == 0 else None}
            for i, text in enumerate(greetings)
        ]
        user_row = _message_row(
            event.conversation_id, message_id, len(greetings) + 1, greeting_ids[0], "user", event.content, at
        ) | {"turn_id": event.turn_id, "client_msg_id": event.client_msg_id}
        await session.execute(messages.insert().values([*rows, user_row]))
        await session.execute(
            turns.insert().values(
                turn_id=event.turn_id,
                conversation_id=event.conversation_id,
                status="processing",
                mode="reply",
                user_message_id=message_id,
                reply_parent_id=message_id,
            )
        )
        greeting, user_message = tree.stored(SimpleNamespace(**rows[0])), tree.stored(SimpleNamespace(**user_row))
        return StartedTurn(
            turn_id=event.turn_id,
            attempt=1,
            redelivered=False,
            stream_seq=0,
            mode="reply",
            project_id=project_id,
            persona=persona,
            user_message=user_message,
            reply_parent_id=message_id,
            target=None,
            context=PathContext(Memory(), [greeting, user_message]),
        )

    async def _start(
        self, session: AsyncSession, event: ChatTurnRequested, conversation: _Conversation, persona: Persona
    ) -> StartedTurn:
        """Record a new turn: what it adds to the tree, and where its reply will hang. The turn's row is claimed
        as it is written (another first delivery may have recorded it while this one waited for the
        conversation's lock: then this one starts over and takes it over)."""
        target: StoredMessage | None = None
        user_message: StoredMessage | None = None
        replaced: tuple[UUID, ...] = ()
        if event.mode == "reply":
            message_id = uuid4()
            await self._claim_turn(session, event, message_id, message_id, None, ())
            user_message = await append(
                session,
                conversation,
                parent_id=conversation.active_leaf_id,
                role="user",
                content=event.content,
                turn_id=event.turn_id,
                client_msg_id=event.client_msg_id,
                message_id=message_id,
            )
            reply_parent: UUID | None = message_id
        else:
            if await session.scalar(sa.select(sa.exists().where(turns.c.turn_id == event.turn_id))):
                raise _StartedConcurrently
            assert event.message_id is not None  # the event's own validation
            target = await message_in(session, conversation.conversation_id, event.message_id)
            if target is None:
                raise MessageNotFound(event.message_id)
            reply_parent, user_message, replaced = await self._branch(session, event, conversation, target)
            user_id = user_message.message_id if user_message is not None else None
            await self._claim_turn(session, event, user_id, reply_parent, target.message_id, replaced)
        start = target.message_id if event.mode == "continue" and target is not None else reply_parent
        context = await tree.context_at(session, start) if start is not None else PathContext(Memory(), [])
        return StartedTurn(
            turn_id=event.turn_id,
            attempt=1,
            redelivered=False,
            stream_seq=0,
            mode=event.mode,
            project_id=conversation.project_id,
            persona=persona,
            user_message=user_message,
            reply_parent_id=reply_parent,
            target=target,
            context=context,
            replaced_turn_ids=replaced,
        )

    async def _claim_turn(
        self,
        session: AsyncSession,
        event: ChatTurnRequested,
        user_message_id: UUID | None,
        reply_parent_id: UUID | None,
        target_message_id: UUID | None,
        replaced: tuple[UUID, ...],
    ) -> None:
        claimed = await session.execute(
            insert(turns)
            .values(
                turn_id=event.turn_id,
                conversation_id=event.conversation_id,
                status="processing",
                mode=event.mode,
                user_message_id=user_message_id,
                reply_parent_id=reply_parent_id,
                target_message_id=target_message_id,
                replaced_turn_ids=list(replaced),
            )
            .on_conflict_do_nothing()
            .returning(turns.c.turn_id)
        )
        if claimed.first() is None:
            raise _StartedConcurrently

    async def _branch(
        self, session: AsyncSession, event: ChatTurnRequested, conversation: _Conversation, target: StoredMessage
    ) -> tuple[UUID | None, StoredMessage | None, tuple[UUID, ...]]:
        """Regenerate, continue or edit `target`: where the reply hangs, the user message it answers, and the
        turns of the branch the active path leaves."""
        cid = conversation.conversation_id
        leaf = conversation.active_leaf_id
        if event.mode == "continue":
            if target.role != "assistant":
                raise NotAllowed("only the character's messages can be continued")
            has_children = sa.exists().where(messages.c.parent_id == target.message_id)
            if await session.scalar(sa.select(has_children)):
                raise NotAllowed("only a message with nothing after it can be continued")
            if leaf != target.message_id:
                await tree.make_active(session, cid, target.message_id)
            parent = await message_in(session, cid, target.parent_id) if target.parent_id else None
            return target.parent_id, parent if parent is not None and parent.role == "user" else None, ()
        if event.mode == "regenerate" and target.role == "user":
            # Another reply to the user's own message (the first one, when its reply failed): a new child of it.
            replaced = await tree.left_turns(session, leaf, target.message_id)
            await tree.make_active(session, cid, target.message_id, descend=False)
            return target.message_id, target, replaced
        if event.mode == "regenerate":
            if target.parent_id is None:
                raise NotAllowed("the first message is the character's greeting; it is not generated")
            parent = await message_in(session, cid, target.parent_id)
            assert parent is not None
            replaced = await tree.left_turns(session, leaf, parent.message_id)
            # Until the new reply is stored, the path ends at the message it answers.
            await tree.make_active(session, cid, parent.message_id, descend=False)
            return parent.message_id, parent if parent.role == "user" else None, replaced
        # edit
        if target.role == "assistant":
            parent = await message_in(session, cid, target.parent_id) if target.parent_id else None
            replaced = await tree.left_turns(session, leaf, target.parent_id) if target.parent_id else ()
            return target.parent_id, parent if parent is not None and parent.role == "user" else None, replaced
        edited = await append(
            session,
            conversation,
            parent_id=target.parent_id,
            role="user",
            content=event.content,
            turn_id=event.turn_id,
            client_msg_id=event.client_msg_id,
        )
        replaced = await tree.left_turns(session, leaf, edited.message_id)
        return edited.message_id, edited, replaced

    async def _take_over(
        self, session: AsyncSession, event: ChatTurnRequested, turn: Any
    ) -> StartedTurn | FinishedTurn:
        """A redelivery: how the turn ended, or (still processing: the earlier attempt died or was cut off) the
        turn as a new attempt."""
        if turn.status != "processing":
            return FinishedTurn(turn.status, turn.assistant_message_id, turn.failure)
        conversation = (
            await session.execute(
                sa.select(conversations).where(conversations.c.conversation_id == turn.conversation_id)
            )
        ).first()
        if conversation is None or conversation.user_id != event.user_id:
            raise ConversationNotFound(event.conversation_id)
        persona = await read_persona(session, conversation.character_id)
        if persona is None:
            raise CharacterUnknown(conversation.character_id)
        retried = (
            await session.execute(
                turns.update()
                .where(turns.c.turn_id == event.turn_id)
                .values(attempts=turns.c.attempts + 1)
                .returning(turns.c.attempts, turns.c.stream_seq)
            )
        ).one()
        cid = turn.conversation_id
        user_message = await message_in(session, cid, turn.user_message_id) if turn.user_message_id else None
        target = await message_in(session, cid, turn.target_message_id) if turn.target_message_id else None
        mode: Mode = turn.mode
        start = turn.target_message_id if mode == "continue" else turn.reply_parent_id
        context = await tree.context_at(session, start) if start is not None else PathContext(Memory(), [])
        return StartedTurn(
            turn_id=event.turn_id,
            attempt=int(retried.attempts),
            redelivered=True,
            stream_seq=int(retried.stream_seq or 0),
            mode=mode,
            project_id=conversation.project_id,
            persona=persona,
            user_message=user_message,
            reply_parent_id=turn.reply_parent_id,
            target=target,
            context=context,
            replaced_turn_ids=tuple(turn.replaced_turn_ids or ()),
        )

    # --- ending a turn ---------------------------------------------------------------------------------

    async def finish(self, turn: StartedTurn, reply: Reply, completed: ChatTurnCompleted) -> StoredMessage | None:
        async with self.db.transaction() as tx:
            session = tx.session
            message_id = completed.assistant_message.message_id  # a continue's names the message it extends
            ended = await session.execute(
                turns.update()
                .where(_newest_attempt(turn))
                .values(
                    status="completed" if reply.status == "complete" else "cancelled",
                    assistant_message_id=message_id,
                    failure=None,
                    finished_at=sa.func.now(),
                )
                .returning(turns.c.conversation_id)
            )
            row = ended.first()
            if row is None:
                return None
            conversation = await self._locked_conversation(session, row.conversation_id)
            assert conversation is not None  # deleting a conversation deletes its turns
            if turn.mode == "continue" and turn.target is not None:
                stored = await self._extend(session, conversation, turn.target, reply)
            else:
                stored = await append(
                    session,
                    conversation,
                    parent_id=turn.reply_parent_id,
                    role="assistant",
                    content=reply.text,
                    status=reply.status,
                    turn_id=turn.turn_id,
                    usage=reply,
                    created_at=reply.created_at,
                    message_id=message_id,
                )
            await tx.publish(completed)
            return stored

    async def _extend(
        self, session: AsyncSession, conversation: _Conversation, target: StoredMessage, reply: Reply
    ) -> StoredMessage:
        row = (
            await session.execute(
                messages.update()
                .where(messages.c.message_id == target.message_id)
                .values(
                    content=messages.c.content + reply.text,
                    status=reply.status,
                    prompt_tokens=sa.func.coalesce(messages.c.prompt_tokens, 0) + reply.prompt_tokens,
                    completion_tokens=sa.func.coalesce(messages.c.completion_tokens, 0) + reply.completion_tokens,
                    model=reply.model,
                )
                .returning(*messages.c)
            )
        ).one()
        await session.execute(
            conversations.update()
            .where(conversations.c.conversation_id == conversation.conversation_id)
            .values(last_message_at=reply.created_at)
        )
        if conversation.active_leaf_id != target.message_id:
            await tree.make_active(session, conversation.conversation_id, target.message_id)
        return tree.stored(row)

    async def fail(self, turn: StartedTurn, failed: ChatTurnFailed) -> bool:
        async with self.db.transaction() as tx:
            ended = await tx.session.execute(
                turns.update()
                .where(_newest_attempt(turn))
                .values(status="failed", assistant_message_id=None, failure=failed.reason, finished_at=sa.func.now())
                .returning(turns.c.conversation_id)
            )
            row = ended.first()
            if row is None:
                return False
            if turn.mode == "regenerate" and turn.target is not None and turn.target.role == "assistant":
                # The path ended at the message being answered while the new reply was written: with no new reply,
                # it goes back through the one that was to be replaced.
                conversation = await self._locked_conversation(tx.session, row.conversation_id)
                if conversation is not None and conversation.active_leaf_id == turn.reply_parent_id:
                    await tree.make_active(tx.session, conversation.conversation_id, turn.target.message_id)
            await tx.publish(failed)
            return True

    async def refuse(self, failed: ChatTurnFailed) -> None:
        async with self.db.transaction() as tx:
            await tx.publish(failed)

    async def record_stream_seq(self, turn_id: UUID, seq: int) -> None:
        async with self.db.transaction() as tx:
            await tx.session.execute(
                turns.update()
                .where(turns.c.turn_id == turn_id)
                .values(stream_seq=sa.func.greatest(sa.func.coalesce(turns.c.stream_seq, 0), seq))
            )

    # --- memory ----------------------------------------------------------------------------------------

    async def path_context(self, message_id: UUID) -> PathContext:
        async with self.db.transaction() as tx:
            return await tree.context_at(tx.session, message_id)

    async def save_summary(self, message_id: UUID, memory: Memory) -> None:
        async with self.db.transaction() as tx:
            await tx.session.execute(
                messages.update().where(messages.c.message_id == message_id).values(summary=memory.summary)
            )
