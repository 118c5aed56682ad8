"""Use cases: taking in completed turns, running extractions, users' dossier commands, and account merges."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID, uuid4

from prometheus_client import Counter

from orrery_dossier.domain import (
    Extraction,
    SchedulePolicy,
    TextLimits,
    apply_user_edit,
    assess_turn,
    changed_sections,
    is_trivial,
    known_terms,
    merge_extraction,
    retry_delay,
    select_batch,
    suggested_title,
)
from orrery_dossier.domain import add_terms as add_pending_terms
from orrery_dossier.ports import (
    DossierSummary,
    ExtractionUnavailable,
    Extractor,
    PendingTurn,
    ProjectState,
    Store,
    StoreTx,
    VersionRecord,
)
from orrery_shared.events import (
    ChatTurnCompleted,
    ConversationDeleted,
    DossierSnapshot,
    DossierUpdated,
    UserErased,
    UserMerged,
    utcnow,
)

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

TURNS = Counter("orrery_dossier_turns_total", "Completed turns by what the dossier did with them", ["decision"])
EXTRACTIONS = Counter("orrery_dossier_extractions_total", "Extraction runs by outcome", ["outcome"])
for _decision in ("trivial", "low_signal", "kept", "due", "duplicate", "foreign"):
    TURNS.labels(_decision)
for _outcome in ("updated", "unchanged", "failed", "lost"):
    EXTRACTIONS.labels(_outcome)


class DossierNotFound(Exception):
    """No such dossier for this user (absent, or someone else's)."""


class DossierExists(Exception):
    """The project already has a dossier."""


class VersionConflict(Exception):
    """A write based on a version that is no longer the current one."""

    def __init__(self, current_version: int) -> None:
        super().__init__(f"the dossier is at version {current_version}")
        self.current_version = current_version


# --- turns --------------------------------------------------------------------------------------------


class TurnIntake:
    """Scores each completed turn and keeps the ones worth extracting, per project, in order."""

    def __init__(
        self,
        store: Store,
        policy: SchedulePolicy,
        limits: TextLimits,
        consumer: str,
        on_due: Callable[[], None] = lambda: None,
        clock: Clock = utcnow,
    ) -> None:
        self.store = store
        self.policy = policy
        self.limits = limits
        self.consumer = consumer
        self.on_due = on_due
        self.clock = clock

    async def handle(self, event: ChatTurnCompleted) -> None:
        """The consumer's handler."""
        await self.take(event)

    async def take(self, event: ChatTurnCompleted) -> str:
        """Take in one turn; returns what was decided (also counted in orrery_dossier_turns_total)."""
        decision = await self._decide(event)
        TURNS.labels(decision).inc()
        if decision == "due":
            self.on_due()
        return decision

    async def _decide(self, event: ChatTurnCompleted) -> str:
        if event.replaced_turn_ids:
            await self._drop_replaced(event)
        limit = self.limits.turn_text_max_chars
        user_text = event.user_message.content[:limit] if event.user_message is not None else ""
        assistant_text = event.assistant_message.content[:limit]
        # Names already known only lower a score, so a turn too weak even when every name in it is new can be
        # dropped without the database: chit-chat and small talk cost no I/O (nor an inbox row: no effect).
        if not self.policy.keeps(assess_turn(user_text, assistant_text, ())):
            return "trivial" if is_trivial(user_text) else "low_signal"
        async with self.store.intake() as tx:
            now = self.clock()
            # The row lock taken here orders one project's turns even when its conversations are consumed
            # concurrently (the topic is keyed by conversation, not project).
            target = await tx.claim_and_lock(event.event_id, self.consumer, event.project_id, event.user_id, now)
            if target is None:
                return "duplicate"
            if target.owner != event.user_id and target.owner != await tx.resolve_user(event.user_id):
                log.warning("turn for another user's project ignored", extra={"project_id": str(event.project_id)})
                return "foreign"
            signal = assess_turn(user_text, assistant_text, [*target.known_terms, *target.pending_terms])
            if not self.policy.keeps(signal):
                return "low_signal"
            pending = target.pending.plus(signal.score, len(user_text), now)
            due = self.policy.due_at(pending, now, target.retry_at)
            kept = PendingTurn(
                event.turn_id,
                event.conversation_id,
                user_text,
                assistant_text,
                signal.score,
                sorted(signal.new_terms),
                now,
            )
            terms = add_pending_terms(target.pending_terms, signal.new_terms)
            if not await tx.store_turn(target, kept, pending, terms, due):
                return "duplicate"
        return "due" if due is not None and due <= now else "kept"

    async def _drop_replaced(self, event: ChatTurnCompleted) -> None:
        """A regenerate or an edit left a branch: its turns still waiting are not part of the story any more.
        (What an extraction already took from them stays in the dossier, where the user can edit it.)"""
        async with self.store.transaction() as tx:
            project = await tx.lock_project(event.project_id)
            if project is None or not await tx.drop_pending_turns(event.project_id, event.replaced_turn_ids):
                return
            pending, terms = await tx.pending_summary(event.project_id)
            await tx.set_pending(event.project_id, pending, terms, self.policy.due_at(pending, self.clock()))


# --- extraction ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How long a worker owns a project, and how failed extractions back off."""

    lease_seconds: float = 180.0
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 300.0


class ExtractionRunner:
    """Extracts one due project per call: lease it, ask the model outside any transaction, merge, version."""

    def __init__(
        self,
        store: Store,
        extractor: Extractor,
        policy: SchedulePolicy,
        limits: TextLimits,
        retry: RetryPolicy,
        clock: Clock = utcnow,
    ) -> None:
        self.store = store
        self.extractor = extractor
        self.policy = policy
        self.limits = limits
        self.retry = retry
        self.clock = clock

    async def run_once(self) -> bool:
        """Extract the most overdue project, if any is due; returns whether there was one."""
        now = self.clock()
        token = uuid4()
        async with self.store.transaction() as tx:
            state = await tx.claim_due(now, now + timedelta(seconds=self.retry.lease_seconds), token)
            if state is None:
                return False
            turns = await tx.pending_turns(state.project_id, self.limits.batch_max_turns)
        batch = select_batch(turns, self.limits.batch_max_turns, self.limits.batch_max_chars)
        if not batch:
            await self._apply(state.project_id, token, [], None)
            return True
        try:
            # Bounded by the lease, so a slow model cannot make two workers extract the same turns.
            async with asyncio.timeout(self.retry.lease_seconds * 0.8):
                extraction = await self.extractor.extract(state.title, state.snapshot, batch)
        except (ExtractionUnavailable, TimeoutError) as error:
            await self._failed(state, token, error)
            return True
        except asyncio.CancelledError:
            async with self.store.transaction() as tx:
                await asyncio.shield(tx.release_lease(state.project_id, token))
            raise
        await self._apply(state.project_id, token, [t.seq for t in batch], extraction)
        return True

    async def _failed(self, state: ProjectState, token: UUID, error: BaseException) -> None:
        attempts = state.attempts + 1
        delay = retry_delay(attempts, self.retry.retry_base_seconds, self.retry.retry_max_seconds)
        retry_at = self.clock() + timedelta(seconds=delay)
        message = str(error) or type(error).__name__
        async with self.store.transaction() as tx:
            await tx.fail_extraction(state.project_id, token, attempts=attempts, retry_at=retry_at, error=message)
        EXTRACTIONS.labels("failed").inc()
        log.warning(
            "extraction failed; the turns stay and are retried",
            extra={"project_id": str(state.project_id), "attempts": attempts, "retry_in_s": delay, "error": message},
        )

    async def _apply(self, project_id: UUID, token: UUID, seqs: list[int], extraction: Extraction | None) -> None:
        async with self.store.transaction() as tx:
            state = await tx.lock_project(project_id)
            if state is None or state.lease_token != token:
                # Deleted meanwhile, or the lease expired and another worker took over: its result counts.
                EXTRACTIONS.labels("lost").inc()
                return
            now = self.clock()
            consumed = await tx.consume_pending(project_id, seqs) if seqs else []
            # Merged into the dossier as it is now, which includes any edit the user made meanwhile.
            updated = bool(extraction and consumed) and await self._write_extraction(
                tx, state, extraction or Extraction(), consumed, now
            )
            outcome = "updated" if updated else "unchanged"
            pending, terms = await tx.pending_summary(project_id)
            await tx.finish_extraction(
                project_id, pending=pending, pending_terms=terms, due_at=self.policy.due_at(pending, now)
            )
        EXTRACTIONS.labels(outcome).inc()

    async def _write_extraction(
        self, tx: StoreTx, state: ProjectState, extraction: Extraction, turn_ids: list[UUID], now: datetime
    ) -> bool:
        merged = merge_extraction(state.snapshot, extraction, state.overrides)
        title = suggested_title(state.title, extraction)
        changed = changed_sections(state.snapshot, merged)
        if not changed and not (state.exists and title != state.title):
            return False
        version = state.version + 1
        await tx.save_dossier(
            state.project_id,
            version=version,
            title=title,
            snapshot=merged,
            overrides=state.overrides,
            known_terms=known_terms(merged, state.overrides),
            now=now,
            first=not state.exists,
        )
        await tx.add_version(
            state.project_id, VersionRecord(version, title, merged, "extraction", turn_ids, None, changed, now)
        )
        await tx.publish(
            DossierUpdated(
                project_id=state.project_id,
                user_id=state.owner,
                version=version,
                snapshot=merged,
                changed_sections=changed,
                source="extraction",
                correlation_id=str(turn_ids[-1]),
            )
        )
        return True


# --- users' commands ----------------------------------------------------------------------------------


class DossierCommands:
    """What a signed-in user can do with their dossiers; every query is scoped to them."""

    def __init__(self, store: Store, clock: Clock = utcnow) -> None:
        self.store = store
        self.clock = clock

    async def summaries(self, user_id: UUID, limit: int, offset: int) -> list[DossierSummary]:
        """The user's dossiers, most recently updated first."""
        async with self.store.transaction() as tx:
            return await tx.list_dossiers(user_id, limit, offset)

    async def get(self, user_id: UUID, project_id: UUID) -> ProjectState:
        """The user's dossier of a project."""
        async with self.store.transaction() as tx:
            state = await tx.get_dossier(user_id, project_id)
        if state is None:
            raise DossierNotFound()
        return state

    async def create(
        self, user_id: UUID, project_id: UUID, snapshot: DossierSnapshot, title: str | None
    ) -> ProjectState:
        """Start a project's dossier by hand (version 1); the project may already have turns waiting."""
        async with self.store.transaction() as tx:
            await tx.create_project(project_id, user_id, self.clock())
            state = await tx.lock_project(project_id)
            if state is None or state.owner != user_id:
                raise DossierNotFound()
            if state.exists:
                raise DossierExists()
            return await self._write_edit(tx, user_id, state, snapshot, title if title is not None else "")

    async def replace(
        self, user_id: UUID, project_id: UUID, snapshot: DossierSnapshot, version: int, title: str | None
    ) -> ProjectState:
        """Replace the snapshot if `version` is still the current one; otherwise VersionConflict."""
        async with self.store.transaction() as tx:
            state = await self._owned(tx, user_id, project_id)
            if state.version != version:
                raise VersionConflict(state.version)
            new_title = state.title if title is None else title
            if snapshot == state.snapshot and new_title == state.title:
                return state
            return await self._write_edit(tx, user_id, state, snapshot, new_title)

    async def delete(self, user_id: UUID, project_id: UUID) -> None:
        """Forget the dossier, its history and the turns waiting for extraction."""
        async with self.store.transaction() as tx:
            await self._owned(tx, user_id, project_id)
            await tx.delete_project(project_id)

    async def versions(self, user_id: UUID, project_id: UUID, limit: int, offset: int) -> list[VersionRecord]:
        """The dossier's versions, newest first."""
        async with self.store.transaction() as tx:
            if await tx.get_dossier(user_id, project_id) is None:
                raise DossierNotFound()
            return await tx.list_versions(project_id, limit, offset)

    async def version(self, user_id: UUID, project_id: UUID, version: int) -> VersionRecord:
        """One version of the dossier."""
        async with self.store.transaction() as tx:
            if await tx.get_dossier(user_id, project_id) is None:
                raise DossierNotFound()
            record = await tx.get_version(project_id, version)
        if record is None:
            raise DossierNotFound()
        return record

    async def _owned(self, tx: StoreTx, user_id: UUID, project_id: UUID) -> ProjectState:
        state = await tx.lock_project(project_id)
        if state is None or state.owner != user_id or not state.exists:
            raise DossierNotFound()
        return state

    async def _write_edit(
        self, tx: StoreTx, user_id: UUID, state: ProjectState, snapshot: DossierSnapshot, title: str
    ) -> ProjectState:
        now = self.clock()
        before = state.snapshot if state.exists else None
        overrides = apply_user_edit(before, snapshot, state.overrides if state.exists else None)
        changed = changed_sections(before, snapshot)
        version = state.version + 1
        await tx.save_dossier(
            state.project_id,
            version=version,
            title=title,
            snapshot=snapshot,
            overrides=overrides,
            known_terms=known_terms(snapshot, overrides),
            now=now,
            first=not state.exists,
        )
        record = VersionRecord(version, title, snapshot, "user", [], user_id, changed, now)
        await tx.add_version(state.project_id, record)
        await tx.publish(
            DossierUpdated(
                project_id=state.project_id,
                user_id=state.owner,
                version=version,
                snapshot=snapshot,
                changed_sections=changed,
                source="user",
            )
        )
        return ProjectState(
            project_id=state.project_id,
            owner=state.owner,
            title=title,
            version=version,
            snapshot=snapshot,
            overrides=overrides,
            attempts=state.attempts,
            retry_at=state.retry_at,
            lease_token=state.lease_token,
            created_at=state.created_at if state.exists else now,
            updated_at=now,
        )


# --- accounts -----------------------------------------------------------------------------------------


class UserMerges:
    """A guest became an account: its dossiers (and its turns still in flight) now belong to the account."""

    def __init__(self, store: Store, consumer: str) -> None:
        self.store = store
        self.consumer = consumer

    async def handle(self, event: UserMerged) -> None:
        """Re-own the guest's dossiers, once per event."""
        async with self.store.transaction() as tx:
            if not await tx.claim_event(event.event_id, self.consumer):
                return
            await tx.record_merge(event.from_user_id, event.to_user_id)
            moved = await tx.reown(event.from_user_id, event.to_user_id)
        log.info("guest dossiers re-owned", extra={"moved": moved})


# --- forgetting ---------------------------------------------------------------------------------------


class ConversationDeletions:
    """A conversation was deleted: its waiting turns go (and its late ones are refused), and so does its
    project's dossier when no other conversation feeds it. What an extraction already took from it into a
    dossier that other conversations share stays: the user edits or deletes that dossier."""

    def __init__(self, store: Store, policy: SchedulePolicy, consumer: str, clock: Callable[[], datetime] = utcnow):
        self.store = store
        self.policy = policy
        self.consumer = consumer
        self.clock = clock

    async def handle(self, event: ConversationDeleted) -> None:
        """Forget the conversation, once per event."""
        async with self.store.transaction() as tx:
            if not await tx.claim_event(event.event_id, self.consumer):
                return
            fed = set(await tx.forget_conversation(event.conversation_id))
            if event.project_orphaned:
                project = await tx.lock_project(event.project_id)
                if project is not None and project.owner == event.user_id:
                    await tx.delete_project(event.project_id)
                    fed.discard(event.project_id)
                    log.info("dossier of a deleted conversation deleted", extra={"project_id": str(event.project_id)})
            for project_id in sorted(fed):
                project = await tx.lock_project(project_id)
                if project is None:
                    continue
                pending, terms = await tx.pending_summary(project_id)
                due = self.policy.due_at(pending, self.clock(), project.retry_at)
                await tx.set_pending(project_id, pending, terms, due)


class UserErasures:
    """A user erased their account: every dossier they own, with its versions and waiting turns, goes."""

    def __init__(self, store: Store, consumer: str) -> None:
        self.store = store
        self.consumer = consumer

    async def handle(self, event: UserErased) -> None:
        """Erase the user's dossiers, once per event."""
        async with self.store.transaction() as tx:
            if not await tx.claim_event(event.event_id, self.consumer):
                return
            erased = await tx.erase_users([event.user_id, *event.merged_user_ids])
        log.info("user's dossiers erased", extra={"projects": erased})
