"""The dossier schema through SQLAlchemy Core: projects and their dossiers, versions, waiting turns, merges."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, cast
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from orrery_dossier.domain import Pending, Section, TurnText, UserOverrides, snapshot_counts
from orrery_dossier.ports import DossierSummary, PendingTurn, ProjectState, Source, TurnTarget, VersionRecord
from orrery_shared.db import Database, Transaction
from orrery_shared.events import DossierSnapshot, Event

metadata = sa.MetaData()

dossiers = sa.Table(
    "dossiers",
    metadata,
    sa.Column("project_id", sa.Uuid, primary_key=True),
    sa.Column("user_id", sa.Uuid, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("snapshot", JSONB, nullable=False),
    sa.Column("overrides", JSONB, nullable=False),
    sa.Column("known_terms", ARRAY(sa.Text), nullable=False),
    sa.Column("pending_count", sa.Integer, nullable=False),
    sa.Column("pending_score", sa.Float, nullable=False),
    sa.Column("pending_chars", sa.Integer, nullable=False),
    sa.Column("pending_terms", ARRAY(sa.Text), nullable=False),
    sa.Column("oldest_pending_at", sa.DateTime(timezone=True)),
    sa.Column("due_at", sa.DateTime(timezone=True)),
    sa.Column("retry_at", sa.DateTime(timezone=True)),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("lease_token", sa.Uuid),
    sa.Column("lease_until", sa.DateTime(timezone=True)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

versions = sa.Table(
    "dossier_versions",
    metadata,
    sa.Column("project_id", sa.Uuid, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("snapshot", JSONB, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("turn_ids", ARRAY(sa.Uuid), nullable=False),
    sa.Column("edited_by", sa.Uuid),
    sa.Column("changed_sections", ARRAY(sa.Text), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

pending_turns = sa.Table(
    "pending_turns",
    metadata,
    sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("project_id", sa.Uuid, nullable=False),
    sa.Column("turn_id", sa.Uuid, nullable=False),
    sa.Column("conversation_id", sa.Uuid, nullable=False),
    sa.Column("user_text", sa.Text, nullable=False),
    sa.Column("assistant_text", sa.Text, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("terms", ARRAY(sa.Text), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)

merged_users = sa.Table(
    "merged_users",
    metadata,
    sa.Column("from_user_id", sa.Uuid, primary_key=True),
    sa.Column("to_user_id", sa.Uuid, nullable=False),
    sa.Column("merged_at", sa.DateTime(timezone=True), nullable=False),
)

forgotten_conversations = sa.Table(
    "forgotten_conversations",
    metadata,
    sa.Column("conversation_id", sa.Uuid, primary_key=True),
    sa.Column("forgotten_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

_STATE_COLUMNS = (
    dossiers.c.project_id,
    dossiers.c.user_id,
    dossiers.c.title,
    dossiers.c.version,
    dossiers.c.snapshot,
    dossiers.c.overrides,
    dossiers.c.attempts,
    dossiers.c.retry_at,
    dossiers.c.lease_token,
    dossiers.c.created_at,
    dossiers.c.updated_at,
)


def _schedule(pending: Pending, pending_terms: Sequence[str], due_at: datetime | None) -> dict[str, Any]:
    """A project's row values saying what waits for its next extraction, and when that is due."""
    return {
        "pending_count": pending.count,
        "pending_score": pending.score,
        "pending_chars": pending.chars,
        "pending_terms": list(pending_terms),
        "oldest_pending_at": pending.oldest,
        "due_at": due_at,
    }


def _state(row: Any) -> ProjectState:
    return ProjectState(
        project_id=row.project_id,
        owner=row.user_id,
        title=row.title,
        version=row.version,
        snapshot=DossierSnapshot.model_validate(row.snapshot),
        overrides=UserOverrides.model_validate(row.overrides),
        attempts=row.attempts,
        retry_at=row.retry_at,
        lease_token=row.lease_token,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _version(row: Any) -> VersionRecord:
    return VersionRecord(
        version=row.version,
        title=row.title,
        snapshot=DossierSnapshot.model_validate(row.snapshot),
        source=cast(Source, row.source),
        turn_ids=list(row.turn_ids),
        edited_by=row.edited_by,
        changed_sections=[cast(Section, s) for s in row.changed_sections],
        created_at=row.created_at,
    )


class SqlStoreTx:
    """Every storage operation of the service, on one transaction."""

    def __init__(self, tx: Transaction) -> None:
        self._tx = tx
        self._session = tx.session

    async def _execute(self, statement: sa.Executable) -> sa.CursorResult[Any]:
        return cast(sa.CursorResult[Any], await self._session.execute(statement))

    async def claim_event(self, event_id: UUID, consumer: str) -> bool:
        return await self._tx.claim(event_id, consumer)

    async def publish(self, event: Event) -> None:
        await self._tx.publish(event)

    async def claim_due(self, now: datetime, lease_until: datetime, token: UUID) -> ProjectState | None:
        due = (
            sa.select(dossiers.c.project_id)
            .where(
                dossiers.c.due_at <= now,
                sa.or_(dossiers.c.lease_until.is_(None), dossiers.c.lease_until < now),
            )
            .order_by(dossiers.c.due_at)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        row = (
            await self._execute(
                sa.update(dossiers)
                .where(dossiers.c.project_id == due)
                .values(lease_token=token, lease_until=lease_until)
                .returning(*_STATE_COLUMNS)
            )
        ).first()
        return _state(row) if row is not None else None

    async def pending_turns(self, project_id: UUID, limit: int) -> list[TurnText]:
        rows = await self._execute(
            sa.select(
                pending_turns.c.seq, pending_turns.c.turn_id, pending_turns.c.user_text, pending_turns.c.assistant_text
            )
            .where(pending_turns.c.project_id == project_id)
            .order_by(pending_turns.c.seq)
            .limit(limit)
        )
        return [TurnText(r.seq, r.turn_id, r.user_text, r.assistant_text) for r in rows]

    async def lock_project(self, project_id: UUID) -> ProjectState | None:
        row = (
            await self._execute(sa.select(*_STATE_COLUMNS).where(dossiers.c.project_id == project_id).with_for_update())
        ).first()
        return _state(row) if row is not None else None

    async def consume_pending(self, project_id: UUID, seqs: Sequence[int]) -> list[UUID]:
        rows = await self._execute(
            sa.delete(pending_turns)
            .where(pending_turns.c.project_id == project_id, pending_turns.c.seq.in_(list(seqs)))
            .returning(pending_turns.c.seq, pending_turns.c.turn_id)
        )
        return [r.turn_id for r in sorted(rows, key=lambda r: r.seq)]

    async def drop_pending_turns(self, project_id: UUID, turn_ids: Sequence[UUID]) -> int:
        result = await self._execute(
            sa.delete(pending_turns).where(
                pending_turns.c.project_id == project_id, pending_turns.c.turn_id.in_(list(turn_ids))
            )
        )
        return int(result.rowcount)

    async def pending_summary(self, project_id: UUID) -> tuple[Pending, list[str]]:
        row = (
            await self._execute(
                sa.select(
                    sa.func.count().label("turns"),
                    sa.func.coalesce(sa.func.sum(pending_turns.c.score), 0.0).label("score"),
                    sa.func.coalesce(sa.func.sum(sa.func.length(pending_turns.c.user_text)), 0).label("chars"),
                    sa.func.min(pending_turns.c.received_at).label("oldest"),
                ).where(pending_turns.c.project_id == project_id)
            )
        ).one()
        terms = await self._execute(
            sa.select(sa.func.unnest(pending_turns.c.terms).label("term"))
            .where(pending_turns.c.project_id == project_id)
            .distinct()
        )
        return Pending(int(row.turns), float(row.score), int(row.chars), row.oldest), [t.term for t in terms]

    async def create_project(self, project_id: UUID, owner: UUID, now: datetime) -> bool:
        statement = (
            insert(dossiers)
            .values(
                project_id=project_id,
                user_id=owner,
                title="",
                version=0,
                snapshot={},
                overrides={},
                known_terms=[],
                pending_count=0,
                pending_score=0.0,
                pending_chars=0,
                pending_terms=[],
                attempts=0,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=[dossiers.c.project_id])
            .returning(dossiers.c.project_id)
        )
        return (await self._execute(statement)).first() is not None

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
        values: dict[str, Any] = {
            "version": version,
            "title": title,
            "snapshot": snapshot.model_dump(mode="json"),
            "overrides": overrides.model_dump(mode="json"),
            "known_terms": list(known_terms),
            "updated_at": now,
        }
        if first:
            values["created_at"] = now
        await self._execute(sa.update(dossiers).where(dossiers.c.project_id == project_id).values(**values))

    async def add_version(self, project_id: UUID, record: VersionRecord) -> None:
        await self._execute(
            versions.insert().values(
                project_id=project_id,
                version=record.version,
                title=record.title,
                snapshot=record.snapshot.model_dump(mode="json"),
                source=record.source,
                turn_ids=list(record.turn_ids),
                edited_by=record.edited_by,
                changed_sections=list(record.changed_sections),
                created_at=record.created_at,
            )
        )

    async def finish_extraction(
        self,
        project_id: UUID,
        *,
        pending: Pending,
        pending_terms: Sequence[str],
        due_at: datetime | None,
    ) -> None:
        await self._execute(
            sa.update(dossiers)
            .where(dossiers.c.project_id == project_id)
            .values(
                **_schedule(pending, pending_terms, due_at),
                retry_at=None,
                attempts=0,
                last_error=None,
                lease_token=None,
                lease_until=None,
            )
        )

    async def fail_extraction(
        self, project_id: UUID, token: UUID, *, attempts: int, retry_at: datetime, error: str
    ) -> bool:
        result = await self._execute(
            sa.update(dossiers)
            .where(dossiers.c.project_id == project_id, dossiers.c.lease_token == token)
            .values(
                attempts=attempts,
                retry_at=retry_at,
                due_at=sa.func.greatest(dossiers.c.due_at, retry_at),
                last_error=error[:2_000],
                lease_token=None,
                lease_until=None,
            )
        )
        return result.rowcount > 0

    async def release_lease(self, project_id: UUID, token: UUID) -> None:
        await self._execute(
            sa.update(dossiers)
            .where(dossiers.c.project_id == project_id, dossiers.c.lease_token == token)
            .values(lease_token=None, lease_until=None)
        )

    async def list_dossiers(self, user_id: UUID, limit: int, offset: int) -> list[DossierSummary]:
        rows = await self._execute(
            sa.select(
                dossiers.c.project_id,
                dossiers.c.title,
                dossiers.c.version,
                dossiers.c.snapshot,
                dossiers.c.created_at,
                dossiers.c.updated_at,
            )
            .where(dossiers.c.user_id == user_id, dossiers.c.version > 0)
            .order_by(dossiers.c.updated_at.desc(), dossiers.c.project_id)
            .limit(limit)
            .offset(offset)
        )
        out = []
        for row in rows:
            characters, themes = snapshot_counts(DossierSnapshot.model_validate(row.snapshot))
            out.append(
                DossierSummary(
                    project_id=row.project_id,
                    title=row.title,
                    version=row.version,
                    character_count=characters,
                    theme_count=themes,
                    created_at=row.created_at,
                    updated_at=row.updated_at,
                )
            )
        return out

    async def get_dossier(self, user_id: UUID, project_id: UUID) -> ProjectState | None:
        row = (
            await self._execute(
                sa.select(*_STATE_COLUMNS).where(
                    dossiers.c.project_id == project_id, dossiers.c.user_id == user_id, dossiers.c.version > 0
                )
            )
        ).first()
        return _state(row) if row is not None else None

    async def delete_project(self, project_id: UUID) -> None:
        await self._execute(sa.delete(dossiers).where(dossiers.c.project_id == project_id))

    async def list_versions(self, project_id: UUID, limit: int, offset: int) -> list[VersionRecord]:
        rows = await self._execute(
            sa.select(versions)
            .where(versions.c.project_id == project_id)
            .order_by(versions.c.version.desc())
            .limit(limit)
            .offset(offset)
        )
        return [_version(r) for r in rows]

    async def get_version(self, project_id: UUID, version: int) -> VersionRecord | None:
        row = (
            await self._execute(
                sa.select(versions).where(versions.c.project_id == project_id, versions.c.version == version)
            )
        ).first()
        return _version(row) if row is not None else None

    async def record_merge(self, from_user: UUID, to_user: UUID) -> None:
        # Chains collapse: whoever was merged into the guest now resolves to the account directly.
        await self._execute(
            sa.update(merged_users).where(merged_users.c.to_user_id == from_user).values(to_user_id=to_user)
        )
        await self._execute(
            insert(merged_users)
            .values(from_user_id=from_user, to_user_id=to_user, merged_at=sa.func.now())
            .on_conflict_do_update(index_elements=[merged_users.c.from_user_id], set_={"to_user_id": to_user})
        )

    async def reown(self, from_user: UUID, to_user: UUID) -> int:
        result = await self._execute(sa.update(dossiers).where(dossiers.c.user_id == from_user).values(user_id=to_user))
        return result.rowcount

    async def forget_conversation(self, conversation_id: UUID) -> list[UUID]:
        await self._execute(
            insert(forgotten_conversations).values(conversation_id=conversation_id).on_conflict_do_nothing()
        )
        rows = await self._execute(
            sa.delete(pending_turns)
            .where(pending_turns.c.conversation_id == conversation_id)
            .returning(pending_turns.c.project_id)
        )
        return sorted({r.project_id for r in rows})

    async def set_pending(
        self, project_id: UUID, pending: Pending, pending_terms: Sequence[str], due_at: datetime | None
    ) -> None:
        await self._execute(
            sa.update(dossiers)
            .where(dossiers.c.project_id == project_id)
            .values(**_schedule(pending, pending_terms, due_at))
        )

    async def erase_users(self, user_ids: Sequence[UUID]) -> int:
        users = list(user_ids)
        await self._execute(
            sa.delete(merged_users).where(
                sa.or_(merged_users.c.from_user_id.in_(users), merged_users.c.to_user_id.in_(users))
            )
        )
        # Versions and waiting turns go with their project (ON DELETE CASCADE).
        result = await self._execute(sa.delete(dossiers).where(dossiers.c.user_id.in_(users)))
        return result.rowcount


# One statement: the inbox mark and the project's row lock (creating the row, owned by whoever the user was
# merged into, when the project is new). No row comes back when the event was consumed before.
_CLAIM_AND_LOCK = sa.text(
    """
    WITH claimed AS (
        INSERT INTO inbox (consumer, event_id) VALUES (:consumer, :event_id)
        ON CONFLICT DO NOTHING RETURNING event_id
    )
    INSERT INTO dossiers (project_id, user_id, created_at, updated_at)
    SELECT :project_id,
           COALESCE((SELECT to_user_id FROM merged_users WHERE from_user_id = :user_id), :user_id),
           :now, :now
    FROM claimed
    ON CONFLICT (project_id) DO UPDATE SET project_id = EXCLUDED.project_id
    RETURNING user_id, known_terms, pending_count, pending_score, pending_chars, pending_terms,
              oldest_pending_at, retry_at
    """
)

# One statement: keep the turn and, only if it was new (and its conversation was not deleted meanwhile), record
# the project's new schedule.
_STORE_TURN = sa.text(
    """
    WITH added AS (
        INSERT INTO pending_turns
            (project_id, turn_id, conversation_id, user_text, assistant_text, score, terms, received_at)
        SELECT :project_id, :turn_id, :conversation_id, :user_text, :assistant_text, :score, :terms, :received_at
        WHERE NOT EXISTS (SELECT 1 FROM forgotten_conversations WHERE conversation_id = :conversation_id)
        ON CONFLICT (turn_id) DO NOTHING RETURNING seq
    )
    UPDATE dossiers
    SET pending_count = :pending_count, pending_score = :pending_score, pending_chars = :pending_chars,
        pending_terms = :pending_terms, oldest_pending_at = :oldest_pending_at, due_at = :due_at
    WHERE project_id = :project_id AND EXISTS (SELECT 1 FROM added)
    RETURNING project_id
    """
).bindparams(sa.bindparam("terms", type_=ARRAY(sa.Text)), sa.bindparam("pending_terms", type_=ARRAY(sa.Text)))


class SqlIntakeTx:
    """The turn intake's statements on a plain connection: two round trips per kept turn."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def claim_and_lock(
        self, event_id: UUID, consumer: str, project_id: UUID, user_id: UUID, now: datetime
    ) -> TurnTarget | None:
        params = {"consumer": consumer, "event_id": event_id, "project_id": project_id, "user_id": user_id, "now": now}
        row = (await self._conn.execute(_CLAIM_AND_LOCK, params)).first()
        if row is None:
            return None
        return TurnTarget(
            project_id=project_id,
            owner=row.user_id,
            known_terms=list(row.known_terms),
            pending=Pending(row.pending_count, row.pending_score, row.pending_chars, row.oldest_pending_at),
            pending_terms=list(row.pending_terms),
            retry_at=row.retry_at,
        )

    async def resolve_user(self, user_id: UUID) -> UUID:
        found = await self._conn.scalar(
            sa.select(merged_users.c.to_user_id).where(merged_users.c.from_user_id == user_id)
        )
        return found if found is not None else user_id

    async def store_turn(
        self,
        target: TurnTarget,
        turn: PendingTurn,
        pending: Pending,
        pending_terms: Sequence[str],
        due_at: datetime | None,
    ) -> bool:
        params = {
            "project_id": target.project_id,
            "turn_id": turn.turn_id,
            "conversation_id": turn.conversation_id,
            "user_text": turn.user_text,
            "assistant_text": turn.assistant_text,
            "score": turn.score,
            "terms": list(turn.terms),
            "received_at": turn.received_at,
            "pending_count": pending.count,
            "pending_score": pending.score,
            "pending_chars": pending.chars,
            "pending_terms": list(pending_terms),
            "oldest_pending_at": pending.oldest,
            "due_at": due_at,
        }
        return (await self._conn.execute(_STORE_TURN, params)).first() is not None


class SqlStore:
    """Transactions of the service's database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlStoreTx]:
        """A unit of work: commits on normal exit, rolls back on an exception."""
        async with self.db.transaction() as tx:
            yield SqlStoreTx(tx)

    @asynccontextmanager
    async def intake(self) -> AsyncIterator[SqlIntakeTx]:
        """A plain connection transaction: the hot path skips the ORM session and publishes nothing."""
        async with self.db.engine.begin() as conn:
            yield SqlIntakeTx(conn)
