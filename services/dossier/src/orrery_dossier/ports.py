"""What the use cases need from storage and the model, as protocols and plain records."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol
from uuid import UUID

from orrery_dossier.domain import Extraction, Pending, Section, TurnText, UserOverrides
from orrery_shared.events import DossierSnapshot, Event

Source = Literal["extraction", "user"]


@dataclass(frozen=True)
class TurnTarget:
    """A project's row as the turn intake needs it, locked for the rest of the transaction."""

    project_id: UUID
    owner: UUID
    known_terms: list[str]
    pending: Pending
    pending_terms: list[str]
    retry_at: datetime | None


@dataclass(frozen=True)
class PendingTurn:
    """A turn kept for the next extraction."""

    turn_id: UUID
    conversation_id: UUID
    user_text: str
    assistant_text: str
    score: float
    terms: list[str]
    received_at: datetime


@dataclass(frozen=True)
class ProjectState:
    """A project's whole row, locked for the rest of the transaction."""

    project_id: UUID
    owner: UUID
    title: str
    version: int
    snapshot: DossierSnapshot
    overrides: UserOverrides
    attempts: int
    retry_at: datetime | None
    lease_token: UUID | None
    created_at: datetime
    updated_at: datetime

    @property
    def exists(self) -> bool:
        """Whether the project has a dossier (rather than only turns waiting for the first extraction)."""
        return self.version > 0


@dataclass(frozen=True)
class DossierSummary:
    """One line of a user's dossier list."""

    project_id: UUID
    title: str
    version: int
    character_count: int
    theme_count: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class VersionRecord:
    """One version of a dossier."""

    version: int
    title: str
    snapshot: DossierSnapshot
    source: Source
    turn_ids: list[UUID]
    edited_by: UUID | None
    changed_sections: list[Section]
    created_at: datetime


@dataclass(frozen=True)
class Claim:
    """A due project leased to one worker, with what its extraction needs."""

    project_id: UUID
    token: UUID
    title: str
    snapshot: DossierSnapshot
    attempts: int
    turns: list[TurnText]


class StoreTx(Protocol):
    """Storage operations inside one transaction; events published here reach Kafka only if it commits."""

    async def claim_event(self, event_id: UUID, consumer: str) -> bool:
        """Mark an event consumed; False if it already was."""
        ...

    async def publish(self, event: Event) -> None:
        """Publish through the outbox."""
        ...

    async def claim_due(self, now: datetime, lease_until: datetime, token: UUID) -> ProjectState | None:
        """Lease the most overdue project nobody else holds."""
        ...

    async def pending_turns(self, project_id: UUID, limit: int) -> list[TurnText]:
        """The oldest waiting turns of a project."""
        ...

    async def lock_project(self, project_id: UUID) -> ProjectState | None:
        """Lock a project's row (whoever owns it)."""
        ...

    async def consume_pending(self, project_id: UUID, seqs: Sequence[int]) -> list[UUID]:
        """Delete these waiting turns; returns the ids of those that were still there."""
        ...

    async def drop_pending_turns(self, project_id: UUID, turn_ids: Sequence[UUID]) -> int:
        """Delete these turns of the project if they are still waiting; returns how many were."""
        ...

    async def pending_summary(self, project_id: UUID) -> tuple[Pending, list[str]]:
        """What is still waiting after some turns were consumed."""
        ...

    async def create_project(self, project_id: UUID, owner: UUID, now: datetime) -> bool:
        """Insert an empty project row; False if one exists."""
        ...

    async def save_dossier(
        self,
        project_id: UUID,
        *,
        version: int,
        title: str,
        snapshot: DossierSnapshot,
        overrides: UserOverrides,
        known_terms: Sequence[str],
        now: datetime,
        first: bool,
    ) -> None:
        """Store the dossier's new current state."""
        ...

    async def add_version(self, project_id: UUID, record: VersionRecord) -> None:
        """Append a version to the history."""
        ...

    async def finish_extraction(
        self,
        project_id: UUID,
        *,
        pending: Pending,
        pending_terms: Sequence[str],
        due_at: datetime | None,
    ) -> None:
        """Release the lease after a successful extraction and reschedule what is still waiting."""
        ...

    async def fail_extraction(
        self, project_id: UUID, token: UUID, *, attempts: int, retry_at: datetime, error: str
    ) -> bool:
        """Release the lease after a failed extraction; the turns stay and are retried at `retry_at`."""
        ...

    async def release_lease(self, project_id: UUID, token: UUID) -> None:
        """Give a lease back untouched (shutdown)."""
        ...

    async def list_dossiers(self, user_id: UUID, limit: int, offset: int) -> list[DossierSummary]:
        """A user's dossiers, most recently updated first."""
        ...

    async def get_dossier(self, user_id: UUID, project_id: UUID) -> ProjectState | None:
        """A user's dossier (None if absent or someone else's)."""
        ...

    async def delete_project(self, project_id: UUID) -> None:
        """Forget a project: its dossier, history and waiting turns."""
        ...

    async def list_versions(self, project_id: UUID, limit: int, offset: int) -> list[VersionRecord]:
        """A dossier's versions, newest first."""
        ...

    async def get_version(self, project_id: UUID, version: int) -> VersionRecord | None:
        """One version of a dossier."""
        ...

    async def record_merge(self, from_user: UUID, to_user: UUID) -> None:
        """Remember that `from_user` now is `to_user` (for turns of the guest still in flight)."""
        ...

    async def reown(self, from_user: UUID, to_user: UUID) -> int:
        """Give every project of `from_user` to `to_user`; returns how many moved."""
        ...

    async def forget_conversation(self, conversation_id: UUID) -> list[UUID]:
        """Drop a deleted conversation's waiting turns and refuse its later ones; returns the projects they fed."""
        ...

    async def set_pending(
        self, project_id: UUID, pending: Pending, pending_terms: Sequence[str], due_at: datetime | None
    ) -> None:
        """Record what is waiting for a project's next extraction (without touching a lease)."""
        ...

    async def erase_users(self, user_ids: Sequence[UUID]) -> int:
        """Delete the users' projects (dossiers, versions, waiting turns) and merge records; returns how many
        projects went."""
        ...


class IntakeTx(Protocol):
    """The few statements taking in a turn needs, inside one transaction (the consumer's hot path)."""

    async def claim_and_lock(
        self, event_id: UUID, consumer: str, project_id: UUID, user_id: UUID, now: datetime
    ) -> TurnTarget | None:
        """Mark the event consumed and lock its project's row (created when new, owned by the resolved user).

        None if the event was consumed before.
        """
        ...

    async def resolve_user(self, user_id: UUID) -> UUID:
        """The account a (guest) user was merged into, or the user itself."""
        ...

    async def store_turn(
        self,
        target: TurnTarget,
        turn: PendingTurn,
        pending: Pending,
        pending_terms: Sequence[str],
        due_at: datetime | None,
    ) -> bool:
        """Keep a turn for the next extraction and record the new schedule; False if it was already kept."""
        ...


class Store(Protocol):
    """Opens transactions."""

    def transaction(self) -> AbstractAsyncContextManager[StoreTx]:
        """A unit of work: commits on normal exit, rolls back on an exception."""
        ...

    def intake(self) -> AbstractAsyncContextManager[IntakeTx]:
        """A lean unit of work for taking in turns (no events are published from it)."""
        ...


class Extractor(Protocol):
    """The model that reads turns and reports new story information."""

    async def extract(self, title: str, snapshot: DossierSnapshot, turns: Sequence[TurnText]) -> Extraction:
        """What the turns add; raises ExtractionUnavailable when the model cannot answer now."""
        ...


class ExtractionUnavailable(Exception):
    """The model failed (down, rate limited, unusable reply): keep the turns and try again later."""
