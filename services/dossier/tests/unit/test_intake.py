"""The turn intake decides without I/O for small talk and keeps story turns per project."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from orrery_dossier.domain import Pending, SchedulePolicy, TextLimits
from orrery_dossier.handlers import TurnIntake
from orrery_dossier.ports import PendingTurn, TurnTarget
from orrery_shared.events import ChatTurnCompleted, MessageRecord, TokenUsage

NOW = datetime(2025, 1, 1, tzinfo=UTC)


class FakeIntakeTx:
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    async def claim_and_lock(
        self, event_id: UUID, consumer: str, project_id: UUID, user_id: UUID, now: datetime
    ) -> TurnTarget | None:
        if event_id in self.store.claimed:
            return None
        self.store.claimed.add(event_id)
        owner = self.store.owners.setdefault(project_id, self.store.merged.get(user_id, user_id))
        return TurnTarget(project_id, owner, [], self.store.pending.get(project_id, Pending()), [], None)

    async def resolve_user(self, user_id: UUID) -> UUID:
        return self.store.merged.get(user_id, user_id)

    async def store_turn(
        self,
        target: TurnTarget,
        turn: PendingTurn,
        pending: Pending,
        pending_terms: Sequence[str],
        due_at: datetime | None,
    ) -> bool:
        self.store.kept.append(turn)
        self.store.pending[target.project_id] = pending
        self.store.due[target.project_id] = due_at
        return True


class FakeStore:
    def __init__(self) -> None:
        self.transactions = 0
        self.claimed: set[UUID] = set()
        self.owners: dict[UUID, UUID] = {}
        self.merged: dict[UUID, UUID] = {}
        self.pending: dict[UUID, Pending] = {}
        self.due: dict[UUID, datetime | None] = {}
        self.kept: list[PendingTurn] = []

    @asynccontextmanager
    async def intake(self) -> AsyncIterator[FakeIntakeTx]:
        self.transactions += 1
        yield FakeIntakeTx(self)

    def transaction(self) -> Any:
        raise AssertionError("the intake uses its lean transaction only")


def completed(user: UUID, project: UUID, text: str, reply: str = "I see.") -> ChatTurnCompleted:
    return ChatTurnCompleted(
        turn_id=uuid4(),
        conversation_id=uuid4(),
        user_id=user,
        character_id=uuid4(),
        project_id=project,
        user_message=MessageRecord(message_id=uuid4(), content=text, created_at=NOW),
        assistant_message=MessageRecord(message_id=uuid4(), content=reply, created_at=NOW),
        usage=TokenUsage(prompt_tokens=1, completion_tokens=1, model="m"),
    )


def intake(store: FakeStore, woken: list[int] | None = None) -> TurnIntake:
    def wake() -> None:
        if woken is not None:
            woken.append(1)

    policy = SchedulePolicy(extract_score=20, min_batch_turns=3, max_wait_seconds=300)
    return TurnIntake(store, policy, TextLimits(turn_text_max_chars=50), "dossier", wake, clock=lambda: NOW)


async def test_small_talk_is_decided_without_opening_a_transaction() -> None:
    store = FakeStore()
    handler = intake(store)
    user, project = uuid4(), uuid4()
    decisions = [await handler.take(completed(user, project, text)) for text in ("lol", "👍", "what happened next?")]
    assert decisions == ["trivial", "trivial", "low_signal"]
    assert store.transactions == 0


async def test_story_turns_are_kept_cut_to_size_and_wake_the_workers_once_due() -> None:
    store, woken = FakeStore(), list[int]()
    handler = intake(store, woken)
    user, project = uuid4(), uuid4()
    texts = [
        "My protagonist is Mara, a smuggler who grew up on Titan and never looked back.",
        "Her sister Lena betrayed her during the war.",
        "The villain is called Oberon and he rules the Glass City.",
    ]
    decisions = [await handler.take(completed(user, project, text)) for text in texts]
    assert decisions == ["kept", "kept", "due"]
    assert woken == [1]
    assert store.due[project] == NOW
    assert all(len(turn.user_text) <= 50 for turn in store.kept)
    assert store.pending[project].count == 3


async def test_a_redelivered_turn_changes_nothing() -> None:
    store = FakeStore()
    handler = intake(store)
    event = completed(uuid4(), uuid4(), "My hero was born on Mars.")
    assert [await handler.take(event), await handler.take(event)] == ["kept", "duplicate"]
    assert len(store.kept) == 1


async def test_turns_for_another_users_project_are_ignored_unless_merged_into_the_owner() -> None:
    store = FakeStore()
    handler = intake(store)
    owner, stranger, guest, project = uuid4(), uuid4(), uuid4(), uuid4()
    store.owners[project] = owner
    store.merged[guest] = owner
    assert await handler.take(completed(stranger, project, "My hero was born on Mars.")) == "foreign"
    assert await handler.take(completed(guest, project, "My hero was born on Venus.")) == "kept"
    assert len(store.kept) == 1


async def test_a_turn_without_a_user_message_an_edited_greeting_is_decided_like_any_other() -> None:
    store = FakeStore()
    user, project = uuid4(), uuid4()
    event = completed(user, project, "", "Captain Mara of Titan steals the Oberon star map from the Vorth.")
    event = event.model_copy(update={"user_message": None, "mode": "edit"})
    # No user message is no user text: decided on the reply, not an error that would send the event to the DLQ.
    assert await intake(store).take(event) in {"trivial", "low_signal", "kept", "due"}
