"""Use cases of the chat service: answering a turn (a reply, a regenerate, a continue, an edit), keeping memory,
ending a conversation, projections, forgetting. They take ports (orrery_chat.ports), never connections.

A turn is processed exactly once in effect even though Kafka delivers at least once (see orrery_chat.store): a
redelivery of a finished turn only re-announces its result; a redelivery of a turn interrupted mid-stream (the
process died) announces `restart` and generates the reply anew. A redelivery can come while the earlier attempt
is still alive (a rebalance handed the turn to another process): only the newest attempt may write to the token
stream or store a result, so the older one finds out at its next write or when it stores, and stops without a
word.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from redis.asyncio import Redis

from orrery_chat import repository as repo
from orrery_chat.domain import (
    CharacterUnknown,
    ConversationNotFound,
    Memory,
    MemoryPolicy,
    MessageNotFound,
    NotAllowed,
    Persona,
    StoredMessage,
    TokenCounter,
    build_prompt,
    conversation_summary_request,
    messages_to_fold,
    summary_request,
)
from orrery_chat.metrics import FIRST_DELTA_SECONDS
from orrery_chat.ports import FinishedTurn, LanguageModel, Reply, StartedTurn, TokenStream, TurnStore
from orrery_shared.db import Database, Transaction
from orrery_shared.events import (
    CharacterCreated,
    ChatTurnCompleted,
    ChatTurnFailed,
    ChatTurnRequested,
    ConversationDeleted,
    MessageRecord,
    TokenUsage,
    UserErased,
    UserMerged,
)
from orrery_shared.llm import ChatResult, LLMError, StreamInterruptedError
from orrery_shared.llm.messages import ChatMessage
from orrery_shared.turn_keys import all_keys

log = logging.getLogger(__name__)

EXPIRED = "expired: the message waited too long to be answered; send it again"


@dataclass
class ChatDeps:
    store: TurnStore
    open_stream: Callable[[UUID], TokenStream]  # a turn's token stream, by turn id
    llm: LanguageModel
    count: TokenCounter
    db: Database | None = None  # the read API's and projections' transactions
    redis: Redis | None = None  # deleting token streams
    policy: MemoryPolicy = field(default_factory=MemoryPolicy)
    character_wait_s: float = 5.0
    turn_expiry_s: float = 600.0
    stream_active_ttl: int = 3600
    stream_finished_ttl: int = 300
    background: set[asyncio.Task[None]] = field(default_factory=set)
    memory_locks: weakref.WeakValueDictionary[UUID, asyncio.Lock] = field(default_factory=weakref.WeakValueDictionary)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background, keeping a reference until it ends."""
        task = asyncio.create_task(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def drain(self) -> None:
        """Let background work finish (called at shutdown)."""
        if self.background:
            await asyncio.wait(list(self.background), timeout=30)

    @property
    def database(self) -> Database:
        assert self.db is not None, "this use case needs the database"
        return self.db


# --- answering a turn ---------------------------------------------------------------------------------


async def handle_turn(event: ChatTurnRequested, deps: ChatDeps) -> None:
    """Answer one turn: stream the reply to Redis, then store it and announce the result."""
    stream = deps.open_stream(event.turn_id)
    try:
        await _answer(event, deps, stream)
    except BaseException:
        # The turn is retried (Redis restarting, say, which loses the stream), maybe by another process: the
        # retry numbers on from what was written, so readers resuming after a seq they saw miss nothing.
        if stream.seq:
            await _record_stream_seq(deps, event.turn_id, stream.seq)
        raise


async def _record_stream_seq(deps: ChatDeps, turn_id: UUID, seq: int) -> None:
    try:
        async with asyncio.timeout(5):
            await deps.store.record_stream_seq(turn_id, seq)
    except Exception as error:
        log.warning("the stream's seq could not be recorded", extra={"turn_id": str(turn_id), "error": repr(error)})


async def _answer(event: ChatTurnRequested, deps: ChatDeps, stream: TokenStream) -> None:
    # Whether the user cancelled while the turn was queued is read beside its transaction, not after it.
    cancelled_early = asyncio.ensure_future(stream.cancelled())
    try:
        try:
            started = await deps.store.begin(event, deps.character_wait_s)
        except ConversationNotFound:
            await _refuse(event, deps, stream, "not_found", retryable=False)
            return
        except MessageNotFound:
            await _refuse(event, deps, stream, "message_not_found", retryable=False)
            return
        except NotAllowed as why:
            await _refuse(event, deps, stream, f"not_allowed: {why}", retryable=False)
            return
        except CharacterUnknown:
            await _refuse(event, deps, stream, "unknown_character", retryable=True)
            return
        if isinstance(started, FinishedTurn):
            await _announce(started, stream)
            return
        stream.attempt = started.attempt
        stream.seq = max(stream.seq, started.stream_seq)
        if _expired(event, deps):
            # Nobody waits for a reply this late (after an outage, say): keep the message, spend no tokens.
            await _fail(
                event, started, deps, stream, "expired: the message waited too long to be answered; send it again"
            )
            return
        if started.redelivered:
            await stream.restart()
        cancelled = await cancelled_early
    finally:
        cancelled_early.cancel()
        await asyncio.gather(cancelled_early, return_exceptions=True)
    if started.generates:
        await _generate(event, started, deps, stream, cancelled)
    else:
        await _store_edit(event, started, deps, stream)


async def _announce(finished: FinishedTurn, stream: TokenStream) -> None:
    if finished.status == "failed":
        await stream.announce_error(finished.failure or "failed", retryable=True)
    else:
        assert finished.assistant_message_id is not None
        # The turn's row says "completed"; the stream speaks of the reply, as turn.done does: "complete".
        status = "complete" if finished.status == "completed" else finished.status
        await stream.announce_done(finished.assistant_message_id, status)


def _expired(event: ChatTurnRequested, deps: ChatDeps) -> bool:
    return (datetime.now(UTC) - event.occurred_at).total_seconds() > deps.turn_expiry_s


async def _generate(
    event: ChatTurnRequested, turn: StartedTurn, deps: ChatDeps, stream: TokenStream, cancelled: bool
) -> None:
    prompt = build_prompt(turn.persona, turn.context, deps.policy, deps.count, continuing=turn.mode == "continue")
    reply = deps.llm.stream_chat(prompt.messages, task="chat")
    try:
        if not cancelled:
            async for delta in reply:
                await stream.push(delta)
                if stream.stopped:
                    break
            await stream.flush()
            if stream.time_to_first_delta is not None:
                FIRST_DELTA_SECONDS.observe(stream.time_to_first_delta)
        if stream.superseded:
            await reply.aclose()
            _superseded(turn)
            return
        cancelled = cancelled or stream.cancel_requested
        if cancelled:
            await reply.aclose()
            usage = _estimated_usage(prompt.messages, reply.text, deps.count)
        else:
            usage = _usage(reply.result)
    except StreamInterruptedError as error:
        log.warning("reply interrupted", extra={"turn_id": str(turn.turn_id), "error": error.message})
        await _fail(event, turn, deps, stream, "the character's reply was cut short; please try again")
        return
    except LLMError as error:
        log.warning("reply failed", extra={"turn_id": str(turn.turn_id), "error": str(error)})
        await _fail(event, turn, deps, stream, "the character could not answer right now; please try again")
        return
    except BaseException:
        await reply.aclose()  # the turn is retried (Redis gone, say): release the provider's connection now
        raise
    # A cancelled reply keeps what its readers were shown; deltas read after the flag was seen are not part of it.
    text = stream.text if cancelled else reply.text
    stored = await _complete(event, turn, deps, _reply(text, "cancelled" if cancelled else "complete", usage))
    if stored is None:
        _superseded(turn)
        return
    await stream.done(stored.message_id, "cancelled" if cancelled else "complete")
    # Folding memory calls the LLM; doing it beside the lane lets the conversation's next turn start now. Most
    # turns have nothing to fold, which is known without a task of its own.
    if _fold_due(turn, stored, deps):
        deps.spawn(update_memory(event.conversation_id, turn.persona, stored, deps))


async def _store_edit(event: ChatTurnRequested, turn: StartedTurn, deps: ChatDeps, stream: TokenStream) -> None:
    """An edited message of the character: the user's text, stored as its new alternative (no model call)."""
    usage = TokenUsage(prompt_tokens=0, completion_tokens=0, model="edit")
    stored = await _complete(event, turn, deps, _reply(event.content, "complete", usage))
    if stored is None:
        _superseded(turn)
        return
    await stream.done(stored.message_id, "complete")


def _reply(text: str, status: str, usage: TokenUsage) -> Reply:
    return Reply(
        text=text,
        status="cancelled" if status == "cancelled" else "complete",
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        model=usage.model,
        created_at=datetime.now(UTC),
    )


def _usage(result: ChatResult) -> TokenUsage:
    u = result.usage
    return TokenUsage(
        prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens, model=u.model, provider=u.provider
    )


def _estimated_usage(messages: list[ChatMessage], text: str, count: TokenCounter) -> TokenUsage:
    # A stream stopped early reports no provider counts; estimate what was spent.
    prompt = sum(count(m["content"]) for m in messages)
    return TokenUsage(prompt_tokens=prompt, completion_tokens=count(text), model="unknown")


def _superseded(turn: StartedTurn) -> None:
    # A later attempt answers the turn (a rebalance handed it on while this one was alive): this one says nothing.
    log.info("turn taken over by a later attempt", extra={"turn_id": str(turn.turn_id), "attempt": turn.attempt})


async def _complete(event: ChatTurnRequested, turn: StartedTurn, deps: ChatDeps, reply: Reply) -> StoredMessage | None:
    """Store the reply and announce the turn's end; None (storing nothing) when a later attempt took it over."""
    if turn.mode == "continue" and turn.target is not None:
        message_id, content = turn.target.message_id, turn.target.content + reply.text
    else:
        message_id, content = uuid4(), reply.text
    user = turn.user_message
    completed = ChatTurnCompleted(
        correlation_id=str(event.turn_id),
        turn_id=event.turn_id,
        conversation_id=event.conversation_id,
        user_id=event.user_id,
        character_id=turn.persona.character_id,
        project_id=turn.project_id,
        user_message=MessageRecord(message_id=user.message_id, content=user.content, created_at=user.created_at)
        if user is not None
        else None,
        assistant_message=MessageRecord(message_id=message_id, content=content, created_at=reply.created_at),
        status=reply.status,
        usage=TokenUsage(
            prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens, model=reply.model
        ),
        mode=turn.mode,
        replaced_turn_ids=list(turn.replaced_turn_ids),
    )
    return await deps.store.finish(turn, reply, completed)


async def _fail(event: ChatTurnRequested, turn: StartedTurn, deps: ChatDeps, stream: TokenStream, reason: str) -> None:
    if not await deps.store.fail(turn, _failed(event, reason, retryable=True)):
        _superseded(turn)
        return
    await stream.error(reason, retryable=True)


async def _refuse(event: ChatTurnRequested, deps: ChatDeps, stream: TokenStream, reason: str, retryable: bool) -> None:
    await deps.store.refuse(_failed(event, reason, retryable))
    await stream.error(reason, retryable)


def _failed(event: ChatTurnRequested, reason: str, retryable: bool) -> ChatTurnFailed:
    return ChatTurnFailed(
        correlation_id=str(event.turn_id),
        turn_id=event.turn_id,
        conversation_id=event.conversation_id,
        user_id=event.user_id,
        reason=reason,
        retryable=retryable,
    )


# --- memory -------------------------------------------------------------------------------------------


def _path_with(turn: StartedTurn, stored: StoredMessage) -> list[StoredMessage]:
    """The turn's path context with its stored reply at the end (a continued message replaced by its new text)."""
    tail = turn.context.tail
    if turn.mode == "continue" and tail and tail[-1].message_id == stored.message_id:
        tail = tail[:-1]
    return [*tail, stored]


def _fold_due(turn: StartedTurn, stored: StoredMessage, deps: ChatDeps) -> bool:
    """Whether the path's recent window has outgrown its budget (a newer summary leaves even less to fold)."""
    return bool(messages_to_fold(_path_with(turn, stored), deps.policy, deps.count))


async def update_memory(conversation_id: UUID, persona: Persona, stored: StoredMessage, deps: ChatDeps) -> None:
    """Fold the oldest messages of the path ending at `stored` into a rolling summary (once `_fold_due`)."""
    lock = deps.memory_locks.setdefault(conversation_id, asyncio.Lock())
    async with lock:  # one fold at a time per conversation, each starting from the latest summary
        await _fold(persona, stored, deps)


async def _fold(persona: Persona, stored: StoredMessage, deps: ChatDeps) -> None:
    context = await deps.store.path_context(stored.message_id)
    folded = messages_to_fold(context.tail, deps.policy, deps.count)
    if not folded:
        return
    try:
        result = await deps.llm.complete(summary_request(context.memory, persona, folded), task="summary")
    except LLMError as error:
        # The window simply stays larger until a later turn succeeds in folding it.
        log.warning("memory summary failed; will retry on a later turn", extra={"error": str(error)})
        return
    # The summary belongs to the last message it covers: every branch below that message shares it.
    await deps.store.save_summary(folded[-1].message_id, Memory(result.text.strip(), folded[-1].message_id))


async def end_conversation(conversation_id: UUID, user_id: UUID, deps: ChatDeps) -> tuple[str, datetime]:
    """End a conversation with a summary of its active path (the rolling memory plus the unsummarised tail)."""
    async with deps.database.transaction() as tx:
        conversation = await repo.conversation_of(tx.session, conversation_id, user_id)
        if conversation is None or conversation.active_leaf_id is None:
            raise ConversationNotFound(conversation_id)
        persona = await repo.persona(tx.session, conversation.character_id)
        context = await repo.context_at(tx.session, conversation.active_leaf_id)
    if persona is None:
        raise ConversationNotFound(conversation_id)
    request = conversation_summary_request(persona, context.memory, context.tail)
    result = await deps.llm.complete(request, task="summary")
    summary = result.text.strip()
    async with deps.database.transaction() as tx:
        ended_at = await repo.end_conversation(tx.session, conversation_id, summary)
    if ended_at is None:
        raise ConversationNotFound(conversation_id)  # deleted while the summary was being written
    return summary, ended_at


# --- projections --------------------------------------------------------------------------------------


async def project_character(event: CharacterCreated, tx: Transaction) -> None:
    """Keep chat's own copy of a character (an upsert: replays are harmless)."""
    await repo.upsert_character(tx.session, event)


async def reown_after_merge(event: UserMerged, tx: Transaction) -> None:
    """A guest became an account: its conversations (and private characters) now belong to the account."""
    moved = await repo.reown(tx.session, event.from_user_id, event.to_user_id)
    log.info("conversations re-owned", extra={"count": moved})


# --- forgetting ---------------------------------------------------------------------------------------


def _streams_since(deps: ChatDeps) -> datetime:
    """Turns created before this can have no token stream left: an open stream lives `stream_active_ttl` past its
    last write, a finished one `stream_finished_ttl`."""
    return datetime.now(UTC) - timedelta(seconds=deps.stream_active_ttl + deps.stream_finished_ttl)


async def delete_conversation(conversation_id: UUID, user_id: UUID, deps: ChatDeps) -> bool:
    """Delete a user's conversation; the event it publishes makes the rest of the platform forget it (its token
    streams here, its waiting turns and, when nothing else feeds it, its dossier). False if there is none."""
    async with deps.database.transaction() as tx:
        deleted = await repo.delete_conversation(tx.session, conversation_id, user_id, _streams_since(deps))
        if deleted is None:
            return False
        await tx.publish(deleted)
    return True


async def drop_streams(turn_ids: list[UUID], redis: Redis | None) -> None:
    """Delete every key of these turns (streams, cancel flags, fences, owners): nothing is left to resume or relay.
    Deleting twice is harmless."""
    assert redis is not None, "deleting token streams needs Redis"
    keys = [key for turn_id in turn_ids for key in all_keys(turn_id)]
    for start in range(0, len(keys), 500):
        await redis.delete(*keys[start : start + 500])


async def forget_conversation(event: ConversationDeleted, deps: ChatDeps) -> None:
    """A conversation was deleted: its replies no longer stream to anyone."""
    await drop_streams(event.turn_ids, deps.redis)


async def erase_user(event: UserErased, tx: Transaction, deps: ChatDeps) -> None:
    """A user erased their account: their conversations, messages, turns, private characters and token streams
    go (the guests merged into them with them)."""
    users = [event.user_id, *event.merged_user_ids]
    recent = await repo.erase_user(tx.session, users, _streams_since(deps))
    await drop_streams(recent, deps.redis)
    log.info("user erased", extra={"turn_streams": len(recent)})
