"""Answering a turn (orrery_chat.handlers.handle_turn) in every mode, on fakes of its ports: the turn store, the
token stream and the language model. No database, Redis or network; tokens are counted in words."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from orrery_chat.domain import (
    CONTINUE_NUDGE,
    CharacterUnknown,
    ChatError,
    ConversationNotFound,
    Memory,
    MemoryPolicy,
    MessageNotFound,
    NotAllowed,
    PathContext,
    Persona,
    Role,
    StoredMessage,
)
from orrery_chat.handlers import EXPIRED, ChatDeps, handle_turn
from orrery_chat.ports import FinishedTurn, Mode, Reply, StartedTurn
from orrery_shared.events import ChatTurnCompleted, ChatTurnFailed, ChatTurnRequested, MessageRecord, TokenUsage
from orrery_shared.llm import ChatResult, ChatStream, LLMError, ProviderUnavailableError, StreamInterruptedError
from orrery_shared.llm.messages import ChatMessage, assistant, system, user
from orrery_shared.llm.usage import Usage

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PROJECT = uuid4()
PERSONA = Persona(uuid4(), "Zed", "Vega", "male", "Vorth", "smuggler", "wry", "ran silk", "clipped", "Ahoy, traveller.")
PROVIDER_PROMPT_TOKENS = 42
GENERATION_FAILED = "the character could not answer right now; please try again"
CUT_SHORT = "the character's reply was cut short; please try again"


def words(text: str) -> int:
    return len(text.split())


def provider_usage(task: str, completion_tokens: int) -> Usage:
    return Usage(
        task=task,
        provider="stub",
        model="stub-model",
        prompt_tokens=PROVIDER_PROMPT_TOKENS,
        completion_tokens=completion_tokens,
        latency_s=0.1,
        ttft_s=0.01,
        estimated=False,
        requests=1,
    )


# --- the language model -------------------------------------------------------------------------------


class ScriptedReply(ChatStream):
    """A ChatStream yielding scripted deltas, then ending with a result; or raising `error` once `fail_after`
    deltas were yielded. `.text` is what was yielded so far, `.result` exists once it ended, like the real one's."""

    def __init__(self, deltas: Sequence[str], error: LLMError | None = None, fail_after: int = 0) -> None:
        # Not ChatStream.__init__: there is no client or provider behind this one.
        self.deltas = list(deltas)
        self.error = error
        self.fail_after = fail_after
        self.read = 0  # deltas handed to the reader
        self.closed = False
        self._yielded: list[str] = []
        self._ended: ChatResult | None = None

    @property
    def text(self) -> str:
        return "".join(self._yielded)

    @property
    def result(self) -> ChatResult:
        if self._ended is None:
            raise RuntimeError("the stream has not ended")
        return self._ended

    async def __anext__(self) -> str:
        if self.closed:
            raise StopAsyncIteration
        if self.error is not None and self.read == self.fail_after:
            self.closed = True
            raise self.error
        if self.read == len(self.deltas):
            self._ended = ChatResult(self.text, "stop", provider_usage("chat", self.read))
            raise StopAsyncIteration
        delta = self.deltas[self.read]
        self.read += 1
        self._yielded.append(delta)
        await asyncio.sleep(0)
        return delta

    async def aclose(self) -> None:
        self.closed = True


class FakeLLM:
    """The LanguageModel port: a scripted reply per stream_chat, a scripted summary per complete."""

    def __init__(
        self,
        deltas: Sequence[str] = ("She ", "is ", "fast."),
        *,
        error: LLMError | None = None,
        fail_after: int = 0,
        summary: str = "A summary.",
    ) -> None:
        self.deltas = deltas
        self.error = error
        self.fail_after = fail_after
        self.summary = summary
        self.summary_gate: asyncio.Event | None = None  # complete waits for it when set
        self.prompts: list[tuple[list[ChatMessage], str]] = []
        self.replies: list[ScriptedReply] = []
        self.completions: list[tuple[list[ChatMessage], str]] = []

    def stream_chat(self, messages: Sequence[ChatMessage], *, task: str = "chat") -> ChatStream:
        self.prompts.append((list(messages), task))
        reply = ScriptedReply(self.deltas, self.error, self.fail_after)
        self.replies.append(reply)
        return reply

    async def complete(self, messages: Sequence[ChatMessage], *, task: str = "chat") -> ChatResult:
        self.completions.append((list(messages), task))
        if self.summary_gate is not None:
            await self.summary_gate.wait()
        return ChatResult(self.summary, "stop", provider_usage(task, words(self.summary)))

    @property
    def prompt(self) -> list[ChatMessage]:
        """The one prompt the turn streamed a reply for."""
        [(messages, task)] = self.prompts
        assert task == "chat"
        return messages

    @property
    def reply(self) -> ScriptedReply:
        [reply] = self.replies
        return reply


# --- the token stream ---------------------------------------------------------------------------------


class FakeStream:
    """The TokenStream port, written in memory. Like the Redis one, a push is refused once the stream is stopped,
    and the push that finds the cancel flag (or a later attempt's fence) writes nothing: `cancel_after=N` or
    `supersede_after=N` lets exactly N deltas through. `fail_after=N` makes the push after N deltas raise
    ConnectionError (Redis gone). Every write numbers on `seq`."""

    def __init__(
        self,
        *,
        cancelled: bool = False,
        cancel_after: int | None = None,
        supersede_after: int | None = None,
        fail_after: int | None = None,
    ) -> None:
        self.seq = 0
        self.attempt = 0
        self.cancel_requested = False
        self.superseded = False
        self.cancel_flag = cancelled
        self.cancel_after = cancel_after
        self.supersede_after = supersede_after
        self.fail_after = fail_after
        self.opened_for: list[UUID] = []
        self.entries: list[tuple[Any, ...]] = []
        self.restarted_as: tuple[int, int] | None = None  # (attempt, seq) when restart was written
        self._written: list[str] = []

    @property
    def stopped(self) -> bool:
        return self.cancel_requested or self.superseded

    @property
    def text(self) -> str:
        return "".join(self._written)

    @property
    def time_to_first_delta(self) -> float | None:
        return 0.01 if self._written else None

    @property
    def deltas(self) -> list[str]:
        return [entry[1] for entry in self.entries if entry[0] == "delta"]

    @property
    def kinds(self) -> list[str]:
        return [entry[0] for entry in self.entries]

    def _write(self, *entry: Any) -> None:
        self.seq += 1
        self.entries.append(entry)

    async def push(self, text: str) -> None:
        if self.stopped:
            return
        written = len(self._written)
        if self.fail_after is not None and written >= self.fail_after:
            raise ConnectionError("Redis went away")
        if self.cancel_flag or (self.cancel_after is not None and written >= self.cancel_after):
            self.cancel_requested = True
            return
        if self.supersede_after is not None and written >= self.supersede_after:
            self.superseded = True
            return
        self._write("delta", text)
        self._written.append(text)

    async def flush(self) -> None:
        pass

    async def cancelled(self) -> bool:
        return self.cancel_flag

    async def restart(self) -> None:
        self.restarted_as = (self.attempt, self.seq)
        self._write("restart")

    async def done(self, message_id: UUID, status: str) -> None:
        self._write("done", message_id, status)

    async def error(self, reason: str, retryable: bool) -> None:
        self._write("error", reason, retryable)

    async def announce_done(self, message_id: UUID, status: str) -> None:
        self._write("announce_done", message_id, status)

    async def announce_error(self, reason: str, retryable: bool) -> None:
        self._write("announce_error", reason, retryable)


# --- the turn store -----------------------------------------------------------------------------------


class FakeStore:
    """The TurnStore port in memory: `begin` gives the scripted outcome (or raises it); the conversation's
    messages (a tree, by parent) and summaries serve `path_context`; what the handler stores is recorded."""

    def __init__(self, begins: StartedTurn | FinishedTurn | ChatError, messages: Sequence[StoredMessage]) -> None:
        self.begins = begins
        self.messages = {m.message_id: m for m in messages}
        self.summaries: dict[UUID, Memory] = {}
        self.finish_stores = True  # False: a later attempt took the turn over
        self.fail_ends = True
        self.seq_error: Exception | None = None
        self.begun: list[tuple[ChatTurnRequested, float]] = []
        self.finished: list[tuple[StartedTurn, Reply, ChatTurnCompleted]] = []
        self.stored: list[StoredMessage] = []
        self.failed: list[tuple[StartedTurn, ChatTurnFailed]] = []
        self.refused: list[ChatTurnFailed] = []
        self.stream_seqs: list[tuple[UUID, int]] = []
        self.contexts_read: list[UUID] = []
        self.saved: list[tuple[UUID, Memory]] = []

    async def begin(self, event: ChatTurnRequested, character_wait_s: float) -> StartedTurn | FinishedTurn:
        self.begun.append((event, character_wait_s))
        if isinstance(self.begins, ChatError):
            raise self.begins
        return self.begins

    async def finish(self, turn: StartedTurn, reply: Reply, completed: ChatTurnCompleted) -> StoredMessage | None:
        self.finished.append((turn, reply, completed))
        if not self.finish_stores:
            return None
        if turn.mode == "continue" and turn.target is not None:
            stored = replace(turn.target, content=turn.target.content + reply.text, status=reply.status)
        else:
            stored = StoredMessage(
                completed.assistant_message.message_id,
                max(m.seq for m in self.messages.values()) + 1,
                "assistant",
                reply.text,
                reply.status,
                reply.created_at,
                turn.reply_parent_id,
                turn.turn_id,
            )
        self.messages[stored.message_id] = stored
        self.stored.append(stored)
        return stored

    async def fail(self, turn: StartedTurn, failed: ChatTurnFailed) -> bool:
        if self.fail_ends:
            self.failed.append((turn, failed))
        return self.fail_ends

    async def refuse(self, failed: ChatTurnFailed) -> None:
        self.refused.append(failed)

    async def record_stream_seq(self, turn_id: UUID, seq: int) -> None:
        if self.seq_error is not None:
            raise self.seq_error
        self.stream_seqs.append((turn_id, seq))

    async def path_context(self, message_id: UUID) -> PathContext:
        self.contexts_read.append(message_id)
        tail = [self.messages[message_id]]
        memory = Memory()
        parent_id = tail[0].parent_id
        while parent_id is not None:
            if parent_id in self.summaries:  # the nearest summary strictly above the message
                memory = self.summaries[parent_id]
                break
            tail.append(self.messages[parent_id])
            parent_id = self.messages[parent_id].parent_id
        return PathContext(memory, tail[::-1])

    async def save_summary(self, message_id: UUID, memory: Memory) -> None:
        self.saved.append((message_id, memory))
        self.summaries[message_id] = memory


# --- a conversation -----------------------------------------------------------------------------------


@dataclass
class Chat:
    """A conversation: the greeting, the user's question and the character's answer, on one path."""

    conversation_id: UUID = field(default_factory=uuid4)
    user_id: UUID = field(default_factory=uuid4)
    messages: list[StoredMessage] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.greeting = self.add("assistant", PERSONA.greeting, None)
        first_turn = uuid4()
        self.question = self.add("user", "Where are you from?", self.greeting, first_turn)
        self.answer = self.add("assistant", "From Vega, of course.", self.question, first_turn)

    def add(self, role: Role, content: str, parent: StoredMessage | None, turn_id: UUID | None = None) -> StoredMessage:
        seq = len(self.messages) + 1
        parent_id = parent.message_id if parent is not None else None
        message = StoredMessage(
            uuid4(), seq, role, content, "complete", T0 + timedelta(minutes=seq), parent_id, turn_id
        )
        self.messages.append(message)
        return message

    def requested(
        self, mode: Mode = "reply", content: str = "", message_id: UUID | None = None, **envelope: Any
    ) -> ChatTurnRequested:
        return ChatTurnRequested(
            turn_id=uuid4(),
            conversation_id=self.conversation_id,
            user_id=self.user_id,
            character_id=PERSONA.character_id,
            content=content,
            mode=mode,
            message_id=message_id,
            **envelope,
        )

    def reply_turn(self, **envelope: Any) -> tuple[ChatTurnRequested, StoredMessage]:
        """A reply to a new user message below the answer, and that message (as `begin` records it)."""
        event = self.requested("reply", "Tell me about your ship.", **envelope)
        asked = self.add("user", event.content, self.answer, event.turn_id)
        return event, asked


def started(
    event: ChatTurnRequested,
    context: list[StoredMessage],
    user_message: StoredMessage | None,
    *,
    target: StoredMessage | None = None,
    reply_parent_id: UUID | None = None,
    attempt: int = 1,
    redelivered: bool = False,
    stream_seq: int = 0,
    replaced: tuple[UUID, ...] = (),
) -> StartedTurn:
    return StartedTurn(
        turn_id=event.turn_id,
        attempt=attempt,
        redelivered=redelivered,
        stream_seq=stream_seq,
        mode=event.mode,
        project_id=PROJECT,
        persona=PERSONA,
        user_message=user_message,
        reply_parent_id=reply_parent_id if reply_parent_id is not None else context[-1].message_id,
        target=target,
        context=PathContext(Memory(), context),
        replaced_turn_ids=replaced,
    )


def a_reply(
    chat: Chat, occurred_at: datetime | None = None, **turn: Any
) -> tuple[ChatTurnRequested, StartedTurn, StoredMessage]:
    """A reply turn as `begin` starts it: the path down to the user's new message."""
    event, asked = chat.reply_turn(**({"occurred_at": occurred_at} if occurred_at is not None else {}))
    return event, started(event, [chat.greeting, chat.question, chat.answer, asked], asked, **turn), asked


def deps_of(
    store: FakeStore, stream: FakeStream, llm: FakeLLM, *, policy: MemoryPolicy | None = None, **settings: Any
) -> ChatDeps:
    def open_stream(turn_id: UUID) -> FakeStream:
        stream.opened_for.append(turn_id)
        return stream

    return ChatDeps(
        store=store, open_stream=open_stream, llm=llm, count=words, policy=policy or MemoryPolicy(), **settings
    )


def record(message: StoredMessage) -> MessageRecord:
    return MessageRecord(message_id=message.message_id, content=message.content, created_at=message.created_at)


def contents(prompt: list[ChatMessage]) -> list[str]:
    return [m["content"] for m in prompt]


# --- a reply ------------------------------------------------------------------------------------------


async def test_a_reply_streams_its_deltas_in_order_then_stores_the_whole_text_and_says_done() -> None:
    chat = Chat()
    event, turn, asked = a_reply(chat)
    store, stream, llm = FakeStore(turn, chat.messages), FakeStream(), FakeLLM(["She ", "is ", "fast."])

    await handle_turn(event, deps_of(store, stream, llm, character_wait_s=2.5))

    assert stream.opened_for == [event.turn_id]
    assert store.begun == [(event, 2.5)]
    assert llm.prompt == [
        system(llm.prompt[0]["content"]),
        assistant("Ahoy, traveller."),
        user("Where are you from?"),
        assistant("From Vega, of course."),
        user("Tell me about your ship."),
    ]
    assert "You are Zed" in llm.prompt[0]["content"]
    assert stream.attempt == 1
    assert stream.kinds == ["delta", "delta", "delta", "done"]
    assert stream.deltas == ["She ", "is ", "fast."]
    [(finished, reply, completed)] = store.finished
    assert finished is turn
    assert (reply.text, reply.status) == ("She is fast.", "complete")
    assert (reply.prompt_tokens, reply.completion_tokens, reply.model) == (PROVIDER_PROMPT_TOKENS, 3, "stub-model")
    assert (completed.turn_id, completed.conversation_id, completed.user_id) == (
        event.turn_id,
        chat.conversation_id,
        chat.user_id,
    )
    assert (completed.character_id, completed.project_id) == (PERSONA.character_id, PROJECT)
    assert completed.correlation_id == str(event.turn_id)
    assert completed.user_message == record(asked)
    assert completed.assistant_message.content == "She is fast."
    assert completed.assistant_message.message_id not in {m.message_id for m in chat.messages}
    assert (completed.status, completed.mode, completed.replaced_turn_ids) == ("complete", "reply", [])
    assert completed.usage == TokenUsage(prompt_tokens=PROVIDER_PROMPT_TOKENS, completion_tokens=3, model="stub-model")
    [stored] = store.stored
    assert stream.entries[-1] == ("done", stored.message_id, "complete")
    assert stored.message_id == completed.assistant_message.message_id
    assert llm.reply.read == 3 and not llm.reply.closed
    assert (store.failed, store.refused, store.stream_seqs) == ([], [], [])


# --- regenerate, continue, edit -----------------------------------------------------------------------


async def test_a_regenerate_prompts_from_the_started_turns_context_only_and_names_the_turns_it_replaces() -> None:
    chat = Chat()
    off_path = chat.add("user", "Do you like Sirius?", chat.greeting, uuid4())  # another branch
    event = chat.requested("regenerate", message_id=chat.answer.message_id)
    assert chat.answer.turn_id is not None
    turn = started(event, [chat.greeting, chat.question], chat.question, replaced=(chat.answer.turn_id,))
    store, stream, llm = FakeStore(turn, chat.messages), FakeStream(), FakeLLM(["From ", "Altair."])

    await handle_turn(event, deps_of(store, stream, llm))

    sent = contents(llm.prompt)
    assert sent[1:] == ["Ahoy, traveller.", "Where are you from?"]
    assert chat.answer.content not in sent and off_path.content not in sent
    [(_, reply, completed)] = store.finished
    assert reply.text == "From Altair."
    assert completed.mode == "regenerate"
    assert completed.replaced_turn_ids == [chat.answer.turn_id]
    assert completed.user_message == record(chat.question)
    assert completed.assistant_message.message_id != chat.answer.message_id
    [stored] = store.stored
    assert stored.parent_id == chat.question.message_id
    assert stream.entries[-1] == ("done", stored.message_id, "complete")


async def test_a_continue_prompts_with_the_message_then_the_nudge_and_stores_it_extended() -> None:
    chat = Chat()
    event = chat.requested("continue", message_id=chat.answer.message_id)
    turn = started(
        event,
        [chat.greeting, chat.question, chat.answer],
        chat.question,
        target=chat.answer,
        reply_parent_id=chat.question.message_id,
    )
    store, stream, llm = FakeStore(turn, chat.messages), FakeStream(), FakeLLM([" Born", " there."])

    await handle_turn(event, deps_of(store, stream, llm))

    assert llm.prompt[-2:] == [assistant("From Vega, of course."), system(CONTINUE_NUDGE)]
    assert stream.deltas == [" Born", " there."]
    [(_, reply, completed)] = store.finished
    assert reply.text == " Born there."  # the reply is what the model added
    assert completed.mode == "continue"
    assert completed.assistant_message.message_id == chat.answer.message_id
    assert completed.assistant_message.content == "From Vega, of course. Born there."
    assert completed.user_message == record(chat.question)
    assert stream.entries[-1] == ("done", chat.answer.message_id, "complete")


async def test_an_edited_character_message_is_stored_as_the_users_text_without_calling_the_model() -> None:
    chat = Chat()
    event = chat.requested("edit", "From Sirius, actually.", chat.answer.message_id)
    assert chat.answer.turn_id is not None
    turn = started(
        event, [chat.greeting, chat.question], chat.question, target=chat.answer, replaced=(chat.answer.turn_id,)
    )
    assert not turn.generates
    store, stream, llm = FakeStore(turn, chat.messages), FakeStream(), FakeLLM()

    await handle_turn(event, deps_of(store, stream, llm))

    assert llm.prompts == []
    [(_, reply, completed)] = store.finished
    assert (reply.text, reply.status, reply.model) == ("From Sirius, actually.", "complete", "edit")
    assert (reply.prompt_tokens, reply.completion_tokens) == (0, 0)
    assert completed.mode == "edit"
    assert completed.assistant_message.content == "From Sirius, actually."
    assert completed.assistant_message.message_id != chat.answer.message_id  # a new alternative
    assert completed.replaced_turn_ids == [chat.answer.turn_id]
    assert completed.user_message == record(chat.question)
    [stored] = store.stored
    assert stream.entries == [("done", stored.message_id, "complete")]


async def test_an_edited_user_message_is_answered_anew_by_the_model() -> None:
    chat = Chat()
    event = chat.requested("edit", "Where were you born?", chat.question.message_id)
    edited = chat.add("user", event.content, chat.greeting, event.turn_id)  # the copy `begin` records
    assert chat.question.turn_id is not None
    turn = started(event, [chat.greeting, edited], edited, target=chat.question, replaced=(chat.question.turn_id,))
    assert turn.generates
    store, stream, llm = FakeStore(turn, chat.messages), FakeStream(), FakeLLM(["On ", "Vega."])

    await handle_turn(event, deps_of(store, stream, llm))

    assert llm.prompt[-1] == user("Where were you born?")
    assert "Where are you from?" not in contents(llm.prompt)
    [(_, reply, completed)] = store.finished
    assert reply.text == "On Vega."
    assert completed.mode == "edit"
    assert completed.user_message == record(edited)
    assert completed.replaced_turn_ids == [chat.question.turn_id]
    [stored] = store.stored
    assert stored.parent_id == edited.message_id
    assert stream.kinds == ["delta", "delta", "done"]


# --- redeliveries -------------------------------------------------------------------------------------


async def test_a_redelivered_turn_restarts_its_stream_as_the_new_attempt_before_any_delta() -> None:
    chat = Chat()
    event, turn, _ = a_reply(chat, attempt=2, redelivered=True, stream_seq=5)
    store, stream, llm = FakeStore(turn, chat.messages), FakeStream(), FakeLLM(["She ", "is ", "fast."])

    await handle_turn(event, deps_of(store, stream, llm))

    assert stream.kinds == ["restart", "delta", "delta", "delta", "done"]
    assert stream.restarted_as == (2, 5)  # fenced as attempt 2, numbered after the earlier attempt's entries
    assert stream.seq == 5 + 5
    [(_, reply, _)] = store.finished
    assert reply.text == "She is fast."


async def test_a_redelivered_completed_turn_is_only_announced_again() -> None:
    chat = Chat()
    event, _, _ = a_reply(chat)
    stored_id = uuid4()
    store = FakeStore(FinishedTurn("completed", stored_id, None), chat.messages)
    stream, llm = FakeStream(), FakeLLM()

    await handle_turn(event, deps_of(store, stream, llm))

    assert stream.entries == [("announce_done", stored_id, "complete")]  # turn.done's word, not the row's
    assert stream.attempt == 0  # an announcement is not fenced
    assert llm.prompts == []
    assert (store.finished, store.failed, store.refused) == ([], [], [])


async def test_a_redelivered_cancelled_turn_is_announced_done_as_cancelled() -> None:
    chat = Chat()
    event, _, _ = a_reply(chat)
    stored_id = uuid4()
    store, stream, llm = FakeStore(FinishedTurn("cancelled", stored_id, None), chat.messages), FakeStream(), FakeLLM()

    await handle_turn(event, deps_of(store, stream, llm))

    assert stream.entries == [("announce_done", stored_id, "cancelled")]
    assert llm.prompts == []


@pytest.mark.parametrize(
    ("failure", "announced"), [(GENERATION_FAILED, GENERATION_FAILED), (None, "failed")], ids=["reason", "none"]
)
async def test_a_redelivered_failed_turn_is_only_announced_again(failure: str | None, announced: str) -> None:
    chat = Chat()
    event, _, _ = a_reply(chat)
    store, stream, llm = FakeStore(FinishedTurn("failed", None, failure), chat.messages), FakeStream(), FakeLLM()

    await handle_turn(event, deps_of(store, stream, llm))

    assert stream.entries == [("announce_error", announced, True)]
    assert llm.prompts == []
    assert (store.finished, store.failed) == ([], [])


# --- refusals -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "reason", "retryable"),
    [
        (ConversationNotFound(uuid4()), "not_found", False),
        (MessageNotFound(uuid4()), "message_not_found", False),
        (
            NotAllowed("only the character's messages can be continued"),
            "not_allowed: only the character's messages can be continued",
            False,
        ),
        (CharacterUnknown(uuid4()), "unknown_character", True),
    ],
    ids=["conversation", "message", "not-allowed", "character"],
)
async def test_a_turn_begin_refuses_is_published_as_failed_and_ends_the_stream(
    error: ChatError, reason: str, retryable: bool
) -> None:
    chat = Chat()
    event = chat.requested("continue", message_id=chat.question.message_id)
    store, stream, llm = FakeStore(error, chat.messages), FakeStream(), FakeLLM()

    await handle_turn(event, deps_of(store, stream, llm))

    [failed] = store.refused
    assert (failed.turn_id, failed.conversation_id, failed.user_id) == (
        event.turn_id,
        chat.conversation_id,
        chat.user_id,
    )
    assert (failed.reason, failed.retryable) == (reason, retryable)
    assert failed.correlation_id == str(event.turn_id)
    assert stream.entries == [("error", reason, retryable)]
    assert stream.attempt == 0  # no attempt was recorded: written unfenced
    assert llm.prompts == []
    assert (store.finished, store.failed) == ([], [])


# --- cancelling ---------------------------------------------------------------------------------------


async def test_a_turn_cancelled_before_it_started_stores_an_empty_cancelled_reply_without_streaming() -> None:
    chat = Chat()
    event, turn, _ = a_reply(chat)
    store, stream, llm = FakeStore(turn, chat.messages), FakeStream(cancelled=True), FakeLLM()

    await handle_turn(event, deps_of(store, stream, llm))

    assert llm.reply.read == 0 and llm.reply.closed
    [(_, reply, completed)] = store.finished
    assert (reply.text, reply.status) == ("", "cancelled")
    assert (reply.model, reply.completion_tokens) == ("unknown", 0)  # estimated: no provider counts
    assert reply.prompt_tokens > 0
    assert completed.status == "cancelled"
    [stored] = store.stored
    assert stream.entries == [("done", stored.message_id, "cancelled")]


async def test_a_turn_cancelled_mid_stream_keeps_what_the_stream_showed() -> None:
    chat = Chat()
    event, turn, _ = a_reply(chat)
    store, stream = FakeStore(turn, chat.messages), FakeStream(cancel_after=2)
    llm = FakeLLM(["Once ", "upon ", "a ", "time."])

    await handle_turn(event, deps_of(store, stream, llm))

    assert stream.deltas == ["Once ", "upon "]
    assert llm.reply.read == 3 and llm.reply.closed  # the third delta found the flag; nothing more was read
    assert llm.reply.text == "Once upon a "
    [(_, reply, completed)] = store.finished
    assert (reply.text, reply.status) == ("Once upon ", "cancelled")
    assert (reply.model, reply.completion_tokens) == ("unknown", 3)  # the cost: every delta the model sent
    assert (completed.status, completed.assistant_message.content) == ("cancelled", "Once upon ")
    [stored] = store.stored
    assert stream.entries[-1] == ("done", stored.message_id, "cancelled")


# --- a later attempt took over ------------------------------------------------------------------------


async def test_a_turn_superseded_mid_stream_stores_and_says_nothing_more() -> None:
    chat = Chat()
    event, turn, _ = a_reply(chat)
    store, stream = FakeStore(turn, chat.messages), FakeStream(supersede_after=1)
    llm = FakeLLM(["Once ", "upon ", "a ", "time."])

    await handle_turn(event, deps_of(store, stream, llm))

    assert stream.entries == [("delta", "Once ")]
    assert llm.reply.read == 2 and llm.reply.closed
    assert (store.finished, store.failed) == ([], [])


async def test_a_reply_a_later_attempt_stored_first_is_not_announced() -> None:
    chat = Chat()
    event, turn, _ = a_reply(chat)
    store, stream, llm = FakeStore(turn, chat.messages), FakeStream(), FakeLLM(["She ", "is ", "fast."])
    store.finish_stores = False
    deps = deps_of(store, stream, llm, policy=MemoryPolicy(window_tokens=1))

    await handle_turn(event, deps)

    assert len(store.finished) == 1
    assert stream.kinds == ["delta", "delta", "delta"]
    assert not deps.background  # nor folded into memory
    assert llm.completions == []


async def test_an_edit_a_later_attempt_stored_first_is_not_announced() -> None:
    chat = Chat()
    event = chat.requested("edit", "From Sirius, actually.", chat.answer.message_id)
    turn = started(event, [chat.greeting, chat.question], chat.question, target=chat.answer)
    store, stream = FakeStore(turn, chat.messages), FakeStream()
    store.finish_stores = False

    await handle_turn(event, deps_of(store, stream, FakeLLM()))

    assert len(store.finished) == 1
    assert stream.entries == []


# --- failures -----------------------------------------------------------------------------------------


async def test_a_model_failing_before_its_first_delta_fails_the_turn() -> None:
    chat = Chat()
    event, turn, _ = a_reply(chat)
    store, stream = FakeStore(turn, chat.messages), FakeStream()
    llm = FakeLLM(error=ProviderUnavailableError("HTTP 503", provider="stub", model="stub-model"))

    await handle_turn(event, deps_of(store, stream, llm))

    [(failed_turn, failed)] = store.failed
    assert failed_turn is turn
    assert (failed.turn_id, failed.conversation_id, failed.user_id) == (
        event.turn_id,
        chat.conversation_id,
        chat.user_id,
    )
    assert (failed.reason, failed.retryable) == (GENERATION_FAILED, True)
    assert stream.entries == [("error", GENERATION_FAILED, True)]
    assert store.finished == []


async def test_a_reply_cut_short_mid_stream_fails_the_turn() -> None:
    chat = Chat()
    event, turn, _ = a_reply(chat)
    store, stream = FakeStore(turn, chat.messages), FakeStream()
    cut = StreamInterruptedError("connection reset", partial_text="Once upon ", provider="stub")
    llm = FakeLLM(["Once ", "upon ", "a ", "time."], error=cut, fail_after=2)

    await handle_turn(event, deps_of(store, stream, llm))

    [(_, failed)] = store.failed
    assert (failed.reason, failed.retryable) == (CUT_SHORT, True)
    assert stream.entries == [("delta", "Once "), ("delta", "upon "), ("error", CUT_SHORT, True)]
    assert store.finished == []


async def test_a_failure_a_later_attempt_ended_first_is_not_announced() -> None:
    chat = Chat()
    event, turn, _ = a_reply(chat)
    store, stream = FakeStore(turn, chat.messages), FakeStream()
    store.fail_ends = False

    await handle_turn(event, deps_of(store, stream, FakeLLM(error=ProviderUnavailableError("HTTP 503"))))

    assert stream.entries == []


@pytest.mark.parametrize(("age_s", "expired"), [(2 * 3600, True), (60, False)], ids=["expired", "fresh"])
async def test_a_turn_that_waited_past_its_expiry_fails_without_calling_the_model(age_s: int, expired: bool) -> None:
    chat = Chat()
    event, turn, _ = a_reply(chat, occurred_at=datetime.now(UTC) - timedelta(seconds=age_s))
    store, stream, llm = FakeStore(turn, chat.messages), FakeStream(), FakeLLM()

    await handle_turn(event, deps_of(store, stream, llm, turn_expiry_s=600.0))

    if expired:
        [(_, failed)] = store.failed
        assert (failed.reason, failed.retryable) == (EXPIRED, True)
        assert stream.entries == [("error", EXPIRED, True)]
        assert llm.prompts == [] and store.finished == []
    else:
        assert store.failed == [] and len(store.finished) == 1
        assert stream.kinds[-1] == "done"


# --- memory -------------------------------------------------------------------------------------------


async def test_a_reply_that_outgrows_the_window_folds_the_oldest_messages_in_the_background() -> None:
    chat = Chat()
    event, turn, asked = a_reply(chat)
    store, stream = FakeStore(turn, chat.messages), FakeStream()
    llm = FakeLLM(["She ", "is ", "fast."], summary="  Zed is from Vega; the user asked about his ship.\n")
    llm.summary_gate = asyncio.Event()
    # Costs (words + 4): greeting 6, question 8, answer 8, asked 9, reply 7 = 38 > 20; folding down to 10 keeps
    # only the reply, so everything up to the user's message is folded.
    deps = deps_of(store, stream, llm, policy=MemoryPolicy(window_tokens=20, fold_to_share=0.5))

    async with asyncio.timeout(5):  # the turn does not wait for the summary
        await handle_turn(event, deps)

    [stored] = store.stored
    assert stream.entries[-1] == ("done", stored.message_id, "complete")
    assert len(deps.background) == 1 and store.saved == []
    llm.summary_gate.set()
    await deps.drain()

    assert store.contexts_read == [stored.message_id]
    [(request, task)] = llm.completions
    assert task == "summary"
    transcript = request[-1]["content"]
    assert "User: Where are you from?" in transcript and "User: Tell me about your ship." in transcript
    assert "She is fast." not in transcript  # kept in the window
    summary = "Zed is from Vega; the user asked about his ship."
    assert store.saved == [(asked.message_id, Memory(summary, asked.message_id))]
    assert not deps.background


async def test_a_reply_within_the_window_folds_nothing() -> None:
    chat = Chat()
    event, turn, _ = a_reply(chat)
    store, stream, llm = FakeStore(turn, chat.messages), FakeStream(), FakeLLM()
    deps = deps_of(store, stream, llm, policy=MemoryPolicy(window_tokens=1500))

    await handle_turn(event, deps)

    assert not deps.background
    await deps.drain()
    assert (llm.completions, store.contexts_read, store.saved) == ([], [], [])


# --- the stream failing -------------------------------------------------------------------------------


async def test_a_stream_write_failing_propagates_and_remembers_how_far_the_stream_was_numbered() -> None:
    chat = Chat()
    event, turn, _ = a_reply(chat)
    store, stream = FakeStore(turn, chat.messages), FakeStream(fail_after=2)

    with pytest.raises(ConnectionError):
        await handle_turn(event, deps_of(store, stream, FakeLLM(["Once ", "upon ", "a ", "time."])))

    assert store.stream_seqs == [(event.turn_id, 2)]
    assert (store.finished, store.failed) == ([], [])


async def test_a_redelivered_turns_stream_failing_remembers_the_seq_numbered_on_from_the_earlier_attempt() -> None:
    chat = Chat()
    event, turn, _ = a_reply(chat, attempt=3, redelivered=True, stream_seq=7)
    store, stream = FakeStore(turn, chat.messages), FakeStream(fail_after=1)

    with pytest.raises(ConnectionError):
        await handle_turn(event, deps_of(store, stream, FakeLLM(["Once ", "upon "])))

    assert store.stream_seqs == [(event.turn_id, 7 + 1 + 1)]  # the restart and one delta


async def test_a_stream_failing_before_writing_anything_records_no_seq() -> None:
    chat = Chat()
    event, turn, _ = a_reply(chat)
    store, stream = FakeStore(turn, chat.messages), FakeStream(fail_after=0)

    with pytest.raises(ConnectionError):
        await handle_turn(event, deps_of(store, stream, FakeLLM()))

    assert store.stream_seqs == []


async def test_the_streams_error_propagates_even_when_its_seq_cannot_be_recorded() -> None:
    chat = Chat()
    event, turn, _ = a_reply(chat)
    store, stream = FakeStore(turn, chat.messages), FakeStream(fail_after=1)
    store.seq_error = OSError("the database is unreachable")

    with pytest.raises(ConnectionError):
        await handle_turn(event, deps_of(store, stream, FakeLLM()))
