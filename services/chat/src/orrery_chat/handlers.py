"""Use cases of the chat service: answering a turn, keeping memory, ending a conversation, projections.

A turn is processed exactly once in effect even though Kafka delivers at least once: the `turns` row records
how far it got. A redelivery of a finished turn only re-announces `done`; a redelivery of a turn that was
interrupted mid-stream (the process died) announces `restart` and generates the reply anew; either way one
assistant message and one completed event exist.

A redelivery can also come while the earlier attempt is still alive (a rebalance handed the turn to another
process). Attempts are therefore fenced: each has a number (`turns.attempts`), only the newest may write to the
token stream (see orrery_chat.streams) or store a result, and the database holds at most one reply per turn. The
older attempt finds out at its next write or when it stores, and stops without a word.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID, uuid4

from redis.asyncio import Redis

from orrery_chat import repository as repo
from orrery_chat import turn_statements as sql
from orrery_chat.domain import (
    CharacterUnknown,
    ConversationNotFound,
    Memory,
    MemoryPolicy,
    Persona,
    Prompt,
    StoredMessage,
    TokenCounter,
    build_prompt,
    conversation_summary_request,
    messages_to_fold,
    summary_request,
    title_from,
)
from orrery_chat.metrics import FIRST_DELTA_SECONDS, PROMPT_GUESSES
from orrery_chat.personas import PersonaCache
from orrery_chat.recent import RecentConversations
from orrery_chat.streams import TokenStream
from orrery_shared.db import Database, Transaction
from orrery_shared.db.direct import DirectTransaction
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
from orrery_shared.llm import ChatResult, ChatStream, LLMError, StreamInterruptedError
from orrery_shared.llm.messages import ChatMessage
from orrery_shared.turn_keys import all_keys

log = logging.getLogger(__name__)


class LanguageModel(Protocol):
    def stream_chat(self, messages: list[ChatMessage], *, task: str = "chat") -> ChatStream: ...

    async def complete(self, messages: list[ChatMessage], *, task: str = "chat") -> ChatResult: ...


@dataclass
class ChatDeps:
    db: Database
    redis: Redis
    llm: LanguageModel
    count: TokenCounter
    policy: MemoryPolicy = field(default_factory=MemoryPolicy)
    character_wait_s: float = 5.0
    turn_expiry_s: float = 600.0
    stream_active_ttl: int = 3600
    stream_finished_ttl: int = 300
    personas: PersonaCache = field(default_factory=PersonaCache)
    recent: RecentConversations = field(default_factory=RecentConversations)
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


@dataclass(frozen=True)
class TurnContext:
    event: ChatTurnRequested
    project_id: UUID
    persona: Persona
    memory: Memory
    history: list[StoredMessage]
    user_message: StoredMessage
    redelivered: bool
    attempt: int  # this delivery's number among the turn's attempts (turns.attempts)
    stream_seq: int = 0  # the last seq an interrupted earlier attempt wrote (turns.stream_seq)


@dataclass(frozen=True)
class FinishedTurn:
    status: str
    assistant_message_id: UUID | None
    failure: str | None


# --- answering a turn ---------------------------------------------------------------------------------


async def handle_turn(event: ChatTurnRequested, deps: ChatDeps) -> None:
    """Answer one turn: stream the reply to Redis, then store both messages and announce the result."""
    stream = TokenStream(
        deps.redis,
        event.turn_id,
        active_ttl=deps.stream_active_ttl,
        finished_ttl=deps.stream_finished_ttl,
    )
    guess = _guess_reply(event, deps)
    # Whether the user cancelled before the reply started is read beside the turn's statement, not after it, so
    # that a turn cancelled while queued asks the LLM nothing. A guess has asked already: its first write reads
    # the flag instead (and writes nothing if it is set), a round trip fewer.
    cancelled_early = None if guess is not None else asyncio.ensure_future(stream.cancelled())
    if cancelled_early is not None:
        cancelled_early.add_done_callback(_retrieve_outcome)  # paths that never await it must not log its error
    try:
        await _answer(event, deps, stream, cancelled_early, guess)
    except BaseException:
        # The turn is retried (Redis restarting, say, which loses the stream), maybe by another process: the
        # retry numbers on from what was written, so readers resuming after a seq they saw miss nothing.
        if stream.seq:
            await _record_stream_seq(deps, event.turn_id, stream.seq)
        raise
    finally:
        if cancelled_early is not None:
            cancelled_early.cancel()  # a no-op once it is done
        if guess is not None and not guess.taken:
            await guess.drop()


async def _record_stream_seq(deps: ChatDeps, turn_id: UUID, seq: int) -> None:
    try:
        async with asyncio.timeout(5), deps.db.direct_transaction() as tx:
            await sql.record_stream_seq(tx, turn_id, seq)
    except Exception as error:
        log.warning("the stream's seq could not be recorded", extra={"turn_id": str(turn_id), "error": repr(error)})


def _retrieve_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class GuessedReply:
    """A reply requested from the prompt this process expects (see orrery_chat.recent) while the turn's statement
    runs: the database's part of the wait is hidden in the LLM's time to first token. It is used only if the
    prompt built from what the statement returned is the same; otherwise it is dropped before any of its deltas
    is written anywhere. Each guess is counted once, as used or discarded."""

    def __init__(self, prompt: Prompt, reply: ChatStream) -> None:
        self.prompt = prompt
        self.reply = reply
        self.first = asyncio.ensure_future(self._first_delta())
        self.first.add_done_callback(_retrieve_outcome)
        self.taken = False
        self._counted = False

    async def _first_delta(self) -> str | None:
        """The reply's first delta (None if it has none)."""
        try:
            return await self.reply.__anext__()
        except StopAsyncIteration:
            return None

    def take(self, prompt: Prompt) -> bool:
        """Whether the guess is `prompt`, taking it if so."""
        self.taken = prompt.messages == self.prompt.messages
        self._count("used" if self.taken else "discarded")
        return self.taken

    async def drop(self) -> None:
        self._count("discarded")  # a turn that ended before its prompt was compared (cancelled, refused)
        self.first.cancel()
        await asyncio.gather(self.first, return_exceptions=True)
        await self.reply.aclose()

    def _count(self, outcome: str) -> None:
        if not self._counted:
            self._counted = True
            PROMPT_GUESSES.labels(outcome).inc()


def _guess_reply(event: ChatTurnRequested, deps: ChatDeps) -> GuessedReply | None:
    """Request the reply from what this process knew of the conversation after its last turn, if it knows it.

    The request leaves before the turn's cancel flag is read: waiting for that round trip would put it before
    the provider's time to first token. A turn cancelled while queued is rare; the guess's first write reads the
    flag and writes nothing, so its request is all it costs."""
    recent = deps.recent.get(event.conversation_id)
    persona = deps.personas.get(event.character_id)
    if recent is None or not recent.history or persona is None or not persona.visible_to(event.user_id):
        return None
    if _expired(event, deps):
        return None  # it will not be answered
    message = StoredMessage(uuid4(), recent.history[-1].seq + 1, "user", event.content, "complete", event.occurred_at)
    prompt = build_prompt(persona, recent.memory, [*recent.history, message], deps.policy, deps.count)
    return GuessedReply(prompt, deps.llm.stream_chat(prompt.messages, task="chat"))  # type: ignore[arg-type]


async def _answer(
    event: ChatTurnRequested,
    deps: ChatDeps,
    stream: TokenStream,
    cancelled_early: asyncio.Future[bool] | None,
    guess: GuessedReply | None = None,
) -> None:
    try:
        started = await _begin_with_patience(event, deps)
    except ConversationNotFound:
        await _reject(event, deps, stream, "not_found", retryable=False)
        return
    except CharacterUnknown:
        await _reject(event, deps, stream, "unknown_character", retryable=True)
        return
    if isinstance(started, FinishedTurn):
        if started.status == "failed":
            await stream.announce_error(started.failure or "failed", retryable=True)
        else:
            assert started.assistant_message_id is not None
            await stream.announce_done(started.assistant_message_id, started.status)
        return
    stream.attempt = started.attempt
    stream.seq = max(stream.seq, started.stream_seq)
    if _expired(event, deps):
        # Nobody waits for a reply this late (after an outage, say): keep the message, spend no tokens.
        await _fail(started, deps, stream, "expired: the message waited too long to be answered; send it again")
        return
    if started.redelivered:
        await stream.restart()
        guess = None  # a new request, after the restart
    if cancelled_early is not None:
        cancelled = await cancelled_early
    elif guess is None:
        cancelled = await stream.cancelled()  # the guess was dropped: no new request for a cancelled turn
    else:
        cancelled = False  # the guess's first write reads the flag
    await _generate(started, deps, stream, cancelled, guess)


def _expired(event: ChatTurnRequested, deps: ChatDeps) -> bool:
    return (datetime.now(UTC) - event.occurred_at).total_seconds() > deps.turn_expiry_s


async def _begin_with_patience(event: ChatTurnRequested, deps: ChatDeps) -> TurnContext | FinishedTurn:
    # character.created and the first turn travel on different topics: give the projection a moment.
    deadline = time.monotonic() + deps.character_wait_s
    while True:
        try:
            started = await begin_in_one_statement(event, deps)
            if started is not None:
                return started
            async with deps.db.direct_transaction() as tx:
                return await begin_turn(tx, event, deps.personas)
        except CharacterUnknown:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.2)


async def begin_in_one_statement(event: ChatTurnRequested, deps: ChatDeps) -> TurnContext | None:
    """The common cases with a known character, each as one statement committed on its own (no BEGIN and COMMIT
    round trips): a next turn in the user's own conversation, or a new conversation's first turn. None, having
    changed nothing, for any other case (a redelivery, someone else's conversation), which `begin_turn` handles."""
    persona = deps.personas.get(event.character_id)
    if persona is None or not persona.visible_to(event.user_id):
        return None  # begin_turn reads the character and checks it
    if event.project_id is not None:
        return None  # begin_turn checks that a named project is not someone else's
    message_id = uuid4()
    recent = deps.recent.get(event.conversation_id)
    async with deps.db.direct_statements() as statements:
        fresh = await sql.start_turn_if_new(
            statements,
            turn_id=event.turn_id,
            conversation_id=event.conversation_id,
            user_id=event.user_id,
            character_id=event.character_id,
            message_id=message_id,
            content=event.content,
            client_msg_id=event.client_msg_id,
            known=(recent.memory, recent.history) if recent is not None else None,
        )
        if fresh is not None:
            started, history = fresh
            return TurnContext(event, started.project_id, persona, started.memory, history, history[-1], False, 1)
        project_id = event.project_id or uuid4()
        opening = await sql.start_conversation_if_new(
            statements,
            turn_id=event.turn_id,
            conversation_id=event.conversation_id,
            user_id=event.user_id,
            persona=persona,
            project_id=project_id,
            title=title_from(event.content),
            message_id=message_id,
            content=event.content,
            client_msg_id=event.client_msg_id,
        )
    if opening is None:
        return None
    return TurnContext(event, project_id, persona, Memory(), opening, opening[-1], False, 1)


async def begin_turn(
    tx: DirectTransaction, event: ChatTurnRequested, personas: PersonaCache
) -> TurnContext | FinishedTurn:
    """Record the user's message and the turn (first delivery), or find out how far an earlier delivery got and
    take the turn over from it (a new attempt)."""
    locked = await sql.conversation_and_turn_for_update(tx, event.conversation_id, event.turn_id)
    # No conversation yet means no turn of it either (deleting a conversation deletes its turns).
    conversation, turn = locked if locked is not None else (None, None)
    if turn is not None and turn.status != "processing":
        return FinishedTurn(turn.status, turn.assistant_message_id, turn.failure)
    if conversation is not None and conversation.user_id != event.user_id:
        raise ConversationNotFound(event.conversation_id)
    character_id = conversation.character_id if conversation is not None else event.character_id
    persona = await _visible_persona(tx, character_id, event.user_id, personas)
    if conversation is None:
        if event.project_id is not None and await sql.project_of_another(tx, event.project_id, event.user_id):
            raise ConversationNotFound(event.conversation_id)  # as for someone else's conversation: not found
        conversation = await sql.create_conversation(
            tx,
            conversation_id=event.conversation_id,
            user_id=event.user_id,
            character_id=character_id,
            project_id=event.project_id or uuid4(),
            title=title_from(event.content),
        )
        await sql.append_greeting(tx, event.conversation_id, uuid4(), persona.greeting)
    memory = conversation.memory
    if turn is None:
        history = await sql.start_turn(
            tx,
            turn_id=event.turn_id,
            conversation_id=event.conversation_id,
            message_id=uuid4(),
            content=event.content,
            client_msg_id=event.client_msg_id,
            after_seq=memory.upto_seq,
        )
        user_message, redelivered, attempt, stream_seq = history[-1], False, 1, 0
    else:
        attempt, stream_seq = await sql.retry_turn(tx, event.turn_id)
        found = await sql.message(tx, turn.user_message_id)
        assert found is not None
        user_message, redelivered = found, True
        history = await sql.messages_after(tx, event.conversation_id, memory.upto_seq)
    # The reply answers this turn's message: later messages (none, normally) stay out of its prompt.
    history = [m for m in history if m.seq <= user_message.seq]
    return TurnContext(
        event, conversation.project_id, persona, memory, history, user_message, redelivered, attempt, stream_seq
    )


async def _visible_persona(tx: DirectTransaction, character_id: UUID, user_id: UUID, personas: PersonaCache) -> Persona:
    cached = personas.get(character_id)
    if cached is not None and cached.visible_to(user_id):
        return cached
    persona = await sql.persona(tx, character_id)
    if persona is None or not persona.visible_to(user_id):
        raise CharacterUnknown(character_id)
    personas.put(persona)
    return persona


async def _generate(
    ctx: TurnContext, deps: ChatDeps, stream: TokenStream, cancelled: bool, guess: GuessedReply | None = None
) -> None:
    prompt = build_prompt(ctx.persona, ctx.memory, ctx.history, deps.policy, deps.count)
    guessed = guess if guess is not None and not cancelled and guess.take(prompt) else None
    reply = guessed.reply if guessed else deps.llm.stream_chat(prompt.messages, task="chat")  # type: ignore[arg-type]
    try:
        if guessed is not None:
            first = await guessed.first
            if first is not None:
                await stream.push(first)
        if not cancelled and not stream.stopped:
            async for delta in reply:
                await stream.push(delta)
                if stream.stopped:
                    break
            await stream.flush()
            if stream.time_to_first_delta is not None:
                FIRST_DELTA_SECONDS.observe(stream.time_to_first_delta)
        if stream.superseded:
            await reply.aclose()
            _superseded(ctx)
            return
        cancelled = cancelled or stream.cancel_requested
        if cancelled:
            await reply.aclose()
            usage = _estimated_usage(prompt.messages, reply.text, deps.count)
        else:
            usage = _usage(reply.result)
    except StreamInterruptedError as error:
        log.warning("reply interrupted", extra={"turn_id": str(ctx.event.turn_id), "error": error.message})
        await _fail(ctx, deps, stream, "the character's reply was cut short; please try again")
        return
    except LLMError as error:
        log.warning("reply failed", extra={"turn_id": str(ctx.event.turn_id), "error": str(error)})
        await _fail(ctx, deps, stream, "the character could not answer right now; please try again")
        return
    status = "cancelled" if cancelled else "complete"
    # A cancelled reply keeps what its readers were shown; deltas read after the flag was seen are not part of it.
    assistant = await _complete(ctx, deps, stream.text if cancelled else reply.text, status, usage)
    if assistant is None:
        _superseded(ctx)
        return
    deps.recent.answered(ctx.event.conversation_id, ctx.memory, [*ctx.history, assistant])
    await stream.done(assistant.message_id, status)
    # Folding memory calls the LLM; doing it beside the lane lets the conversation's next turn start now. Most
    # turns have nothing to fold, which is known without a task of its own.
    if _fold_due(ctx, assistant, deps):
        deps.spawn(update_memory(ctx, assistant, deps))


def _usage(result: ChatResult) -> TokenUsage:
    u = result.usage
    return TokenUsage(
        prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens, model=u.model, provider=u.provider
    )


def _estimated_usage(messages: list[dict[str, str]], text: str, count: TokenCounter) -> TokenUsage:
    # A stream stopped early reports no provider counts; estimate what was spent.
    prompt = sum(count(m["content"]) for m in messages)
    return TokenUsage(prompt_tokens=prompt, completion_tokens=count(text), model="unknown")


def _superseded(ctx: TurnContext) -> None:
    # A later attempt answers the turn (a rebalance handed it on while this one was alive): this one says nothing.
    log.info("turn taken over by a later attempt", extra={"turn_id": str(ctx.event.turn_id), "attempt": ctx.attempt})


async def _complete(
    ctx: TurnContext, deps: ChatDeps, text: str, status: str, usage: TokenUsage
) -> StoredMessage | None:
    """Store the reply and announce the turn's end; None (storing nothing) when a later attempt took it over."""
    event = ctx.event
    reply = MessageRecord(message_id=uuid4(), content=text, created_at=datetime.now(UTC))
    completed = ChatTurnCompleted(
        correlation_id=str(event.turn_id),
        turn_id=event.turn_id,
        conversation_id=event.conversation_id,
        user_id=event.user_id,
        character_id=ctx.persona.character_id,
        project_id=ctx.project_id,
        user_message=_record(ctx.user_message),
        assistant_message=reply,
        status="complete" if status == "complete" else "cancelled",
        usage=usage,
    )
    # One statement, committed on its own: the reply, the turn's end and the event (no BEGIN and COMMIT).
    async with deps.db.direct_statements() as statements:
        return await sql.finish_turn(
            statements,
            turn_id=event.turn_id,
            attempt=ctx.attempt,
            conversation_id=event.conversation_id,
            message_id=reply.message_id,
            content=text,
            status=status,
            turn_status="completed" if status == "complete" else status,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            model=usage.model,
            created_at=reply.created_at,
            event=completed,
        )


def _record(message: StoredMessage) -> MessageRecord:
    return MessageRecord(message_id=message.message_id, content=message.content, created_at=message.created_at)


async def _fail(ctx: TurnContext, deps: ChatDeps, stream: TokenStream, reason: str) -> None:
    event = ctx.event
    deps.recent.forget(event.conversation_id)
    async with deps.db.direct_transaction() as tx:
        failed = await sql.fail_turn(tx, event.turn_id, ctx.attempt, reason)
        if failed:
            await tx.publish(_failed(event, reason, retryable=True))
    if not failed:
        _superseded(ctx)
        return
    await stream.error(reason, retryable=True)


async def _reject(event: ChatTurnRequested, deps: ChatDeps, stream: TokenStream, reason: str, retryable: bool) -> None:
    async with deps.db.direct_transaction() as tx:
        await tx.publish(_failed(event, reason, retryable))
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


def _fold_due(ctx: TurnContext, assistant: StoredMessage, deps: ChatDeps) -> bool:
    """Whether the recent window has outgrown its budget by the memory this turn started from (a newer memory
    leaves even less to fold)."""
    recent = [m for m in [*ctx.history, assistant] if m.seq > ctx.memory.upto_seq]
    return bool(messages_to_fold(recent, ctx.memory, deps.policy, deps.count))


async def update_memory(ctx: TurnContext, assistant: StoredMessage, deps: ChatDeps) -> None:
    """Fold the oldest messages into the rolling summary (once `_fold_due`)."""
    lock = deps.memory_locks.setdefault(ctx.event.conversation_id, asyncio.Lock())
    async with lock:  # one fold at a time per conversation, each starting from the latest summary
        await _fold(ctx, assistant, deps)


async def _fold(ctx: TurnContext, assistant: StoredMessage, deps: ChatDeps) -> None:
    async with deps.db.direct_transaction() as tx:
        conversation = await sql.conversation_of(tx, ctx.event.conversation_id, ctx.event.user_id)
    if conversation is None:
        return
    memory = conversation.memory
    history = [m for m in [*ctx.history, assistant] if m.seq > memory.upto_seq]
    folded = messages_to_fold(history, memory, deps.policy, deps.count)
    if not folded:
        return
    try:
        result = await deps.llm.complete(summary_request(memory, ctx.persona, folded), task="summary")  # type: ignore[arg-type]
    except LLMError as error:
        # The window simply stays larger until a later turn succeeds in folding it.
        log.warning("memory summary failed; will retry on a later turn", extra={"error": str(error)})
        return
    memory = Memory(result.text.strip(), folded[-1].seq)
    async with deps.db.direct_transaction() as tx:
        await sql.save_memory(tx, ctx.event.conversation_id, memory)
    deps.recent.folded(ctx.event.conversation_id, memory)


async def end_conversation(conversation_id: UUID, user_id: UUID, deps: ChatDeps) -> tuple[str, datetime]:
    """End a conversation with a summary of all of it (the rolling memory plus the unsummarised tail)."""
    async with deps.db.direct_transaction() as tx:
        conversation = await sql.conversation_of(tx, conversation_id, user_id)
        if conversation is None:
            raise ConversationNotFound(conversation_id)
        persona = await sql.persona(tx, conversation.character_id)
        memory = conversation.memory
        tail = await sql.messages_after(tx, conversation_id, memory.upto_seq)
    if persona is None:
        raise ConversationNotFound(conversation_id)
    result = await deps.llm.complete(conversation_summary_request(persona, memory, tail), task="summary")  # type: ignore[arg-type]
    summary = result.text.strip()
    async with deps.db.transaction() as tx:
        ended_at = await repo.end_conversation(tx.session, conversation_id, summary)
    if ended_at is None:
        raise ConversationNotFound(conversation_id)  # deleted while the summary was being written
    return summary, ended_at


# --- projections --------------------------------------------------------------------------------------


async def project_character(event: CharacterCreated, tx: Transaction, personas: PersonaCache) -> None:
    """Keep chat's own copy of a character (an upsert: replays are harmless), and its persona at hand: the
    character's first turn usually follows within seconds, and a known persona lets it start in one statement."""
    await repo.upsert_character(tx.session, event)
    personas.put(repo.persona_of(event))


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
    async with deps.db.transaction() as tx:
        deleted = await repo.delete_conversation(tx.session, conversation_id, user_id, _streams_since(deps))
        if deleted is None:
            return False
        await tx.publish(deleted)
    deps.recent.forget(conversation_id)
    return True


async def drop_streams(turn_ids: list[UUID], redis: Redis) -> None:
    """Delete every key of these turns (streams, cancel flags, fences, owners): nothing is left to resume or relay.
    Deleting twice is harmless."""
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
