"""The characters schema through SQLAlchemy Core: characters, portraits, spin outcomes, guest merges."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, insert

from orrery_character_gen.domain import Character, Portrait, Source, Traits
from orrery_character_gen.handlers import EventFactory, PresetChange, RecentCharacter, StoredPortrait
from orrery_shared.db import Database, Transaction
from orrery_shared.events import CharacterFailed, UserErased, UserMerged

metadata = sa.MetaData()

characters = sa.Table(
    "characters",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("owner_user_id", sa.Uuid),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("request_id", sa.Uuid),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("planet", sa.Text, nullable=False),
    sa.Column("sex", sa.Text, nullable=False),
    sa.Column("species", sa.Text, nullable=False),
    sa.Column("archetype", sa.Text, nullable=False),
    sa.Column("personality", sa.Text, nullable=False),
    sa.Column("backstory", sa.Text, nullable=False),
    sa.Column("speaking_style", sa.Text, nullable=False),
    sa.Column("greeting", sa.Text, nullable=False),
    sa.Column("image_prompt", sa.Text, nullable=False),
    sa.Column("tags", JSONB, nullable=False),
    sa.Column("portrait_provider", sa.Text, nullable=False),
    sa.Column("card_extras", JSONB, nullable=False),
    sa.Column("preset_hash", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.clock_timestamp()),
)

portraits = sa.Table(
    "portraits",
    metadata,
    sa.Column("character_id", sa.Uuid, primary_key=True),
    sa.Column("content_type", sa.Text, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("sha256", sa.Text, nullable=False),
    sa.Column("png", sa.LargeBinary),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("model", sa.Text),
)

spin_requests = sa.Table(
    "spin_requests",
    metadata,
    sa.Column("request_id", sa.Uuid, primary_key=True),
    sa.Column("user_id", sa.Uuid, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("character_id", sa.Uuid),
    sa.Column("reason", sa.Text),
    sa.Column("retryable", sa.Boolean),
)

user_merges = sa.Table(
    "user_merges",
    metadata,
    sa.Column("from_user_id", sa.Uuid, primary_key=True),
    sa.Column("to_user_id", sa.Uuid, nullable=False),
)

_PERSONA_COLUMNS = [c for c in characters.c if c.name != "preset_hash"]


def _row_values(character: Character) -> dict[str, Any]:
    t = character.traits
    return {
        "id": character.id,
        "owner_user_id": character.owner_user_id,
        "source": character.source.value,
        "request_id": character.request_id,
        "name": character.name,
        "planet": character.planet,
        "sex": t.sex,
        "species": t.species,
        "archetype": t.archetype,
        "personality": character.personality,
        "backstory": character.backstory,
        "speaking_style": character.speaking_style,
        "greeting": character.greeting,
        "image_prompt": character.image_prompt,
        "tags": list(character.tags),
        "portrait_provider": character.portrait_provider,
        "card_extras": character.card_extras,
    }


def _portrait_values(character_id: UUID, portrait: Portrait) -> dict[str, Any]:
    return {
        "character_id": character_id,
        "content_type": portrait.content_type,
        "data": portrait.data,
        "sha256": portrait.sha256,
        "png": portrait.png if portrait.content_type != "image/png" else None,
        "provider": portrait.provider,
        "model": portrait.model,
    }


def _character(row: Any) -> Character:
    return Character(
        id=row.id,
        owner_user_id=row.owner_user_id,
        source=Source(row.source),
        name=row.name,
        planet=row.planet,
        traits=Traits(row.sex, row.species, row.archetype),
        personality=row.personality,
        backstory=row.backstory,
        speaking_style=row.speaking_style,
        greeting=row.greeting,
        image_prompt=row.image_prompt,
        tags=tuple(row.tags),
        portrait_provider=row.portrait_provider,
        request_id=row.request_id,
        card_extras=dict(row.card_extras),
        created_at=row.created_at,
    )


async def _lock_user(tx: Transaction, user_id: UUID) -> None:
    # Serialises a save for a user with a merge of that user, so no character lands on a merged-away guest.
    await tx.session.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(f"owner:{user_id}"))))


async def _resolve_owner(tx: Transaction, user_id: UUID) -> UUID:
    owner = user_id
    for _ in range(8):  # a guest merged into an account that was itself merged, and so on
        to = await tx.session.scalar(sa.select(user_merges.c.to_user_id).where(user_merges.c.from_user_id == owner))
        if to is None or to == owner:
            return owner
        owner = to
    return owner


class PostgresCharacterStore:
    """CharacterStore over the service's own schema; writes commit with their outbox events."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def spin_handled(self, request_id: UUID) -> bool:
        """Whether a spin already has an outcome."""
        async with self.db.engine.connect() as conn:
            found = await conn.scalar(sa.select(sa.literal(1)).where(spin_requests.c.request_id == request_id))
        return found is not None

    async def recent(self, user_id: UUID, limit: int) -> list[RecentCharacter]:
        """The user's newest characters."""
        query = (
            sa.select(characters.c.sex, characters.c.species, characters.c.archetype, characters.c.name)
            .where(characters.c.owner_user_id == user_id)
            .order_by(characters.c.created_at.desc(), characters.c.id.desc())
            .limit(limit)
        )
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [RecentCharacter(Traits(r.sex, r.species, r.archetype), r.name) for r in rows]

    async def traits_of(self, character_ids: Sequence[UUID], user_id: UUID) -> list[Traits]:
        """Traits of the given characters the user may see."""
        query = sa.select(characters.c.sex, characters.c.species, characters.c.archetype).where(
            characters.c.id.in_(list(character_ids)),
            sa.or_(characters.c.owner_user_id == user_id, characters.c.owner_user_id.is_(None)),
        )
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [Traits(r.sex, r.species, r.archetype) for r in rows]

    async def save_generated(self, character: Character, portrait: Portrait, created: EventFactory) -> Character | None:
        """Store a spin's outcome, character, portrait and event together; None if the spin was already handled."""
        assert character.owner_user_id is not None and character.request_id is not None
        async with self.db.transaction() as tx:
            await _lock_user(tx, character.owner_user_id)
            claimed = await tx.session.scalar(
                insert(spin_requests)
                .values(
                    request_id=character.request_id,
                    user_id=character.owner_user_id,
                    status="created",
                    character_id=character.id,
                )
                .on_conflict_do_nothing()
                .returning(spin_requests.c.request_id)
            )
            if claimed is None:
                return None
            owner = await _resolve_owner(tx, character.owner_user_id)
            final = character if owner == character.owner_user_id else _with_owner(character, owner)
            await self._insert(tx, final, portrait)
            await tx.publish(created(final))
        return final

    async def save_failure(self, event: CharacterFailed) -> bool:
        """Record a failed spin with its event; False if the spin already had an outcome."""
        async with self.db.transaction() as tx:
            claimed = await tx.session.scalar(
                insert(spin_requests)
                .values(
                    request_id=event.request_id,
                    user_id=event.user_id,
                    status="failed",
                    reason=event.reason,
                    retryable=event.retryable,
                )
                .on_conflict_do_nothing()
                .returning(spin_requests.c.request_id)
            )
            if claimed is None:
                return False
            await tx.publish(event)
        return True

    async def save_imported(self, character: Character, portrait: Portrait, created: EventFactory) -> Character:
        """Store an imported character and its event."""
        assert character.owner_user_id is not None
        async with self.db.transaction() as tx:
            await _lock_user(tx, character.owner_user_id)
            owner = await _resolve_owner(tx, character.owner_user_id)
            final = character if owner == character.owner_user_id else _with_owner(character, owner)
            await self._insert(tx, final, portrait)
            await tx.publish(created(final))
        return final

    async def save_preset(
        self, character: Character, portrait: Portrait, content_hash: str, created: EventFactory
    ) -> PresetChange:
        """Insert a preset, or refresh it when its card file changed; publish only then."""
        async with self.db.transaction() as tx:
            await tx.session.execute(
                sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(f"preset:{character.id}")))
            )
            current = await tx.session.scalar(
                sa.select(characters.c.preset_hash).where(characters.c.id == character.id).with_for_update()
            )
            if current == content_hash:
                return PresetChange.UNCHANGED
            if current is None:
                await self._insert(tx, character, portrait, preset_hash=content_hash)
                change = PresetChange.INSERTED
            else:
                values = _row_values(character)
                del values["id"]
                await tx.session.execute(
                    characters.update()
                    .where(characters.c.id == character.id)
                    .values(**values, preset_hash=content_hash)
                )
                await tx.session.execute(
                    portraits.update()
                    .where(portraits.c.character_id == character.id)
                    .values(**_portrait_values(character.id, portrait))
                )
                change = PresetChange.UPDATED
            await tx.publish(created(character))
        return change

    async def reown(self, event: UserMerged, consumer: str) -> int | None:
        """Move the guest's characters to the account, once per event (inbox-deduplicated)."""
        async with self.db.transaction() as tx:
            if not await tx.claim(event.event_id, consumer):
                return None
            await _lock_user(tx, event.from_user_id)
            await tx.session.execute(
                insert(user_merges)
                .values(from_user_id=event.from_user_id, to_user_id=event.to_user_id)
                .on_conflict_do_update(
                    index_elements=[user_merges.c.from_user_id], set_={"to_user_id": event.to_user_id}
                )
            )
            result = await tx.session.execute(
                characters.update()
                .where(characters.c.owner_user_id == event.from_user_id)
                .values(owner_user_id=event.to_user_id)
            )
            await tx.session.execute(
                spin_requests.update()
                .where(spin_requests.c.user_id == event.from_user_id)
                .values(user_id=event.to_user_id)
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def erase(self, event: UserErased, consumer: str) -> int | None:
        """Delete the users' characters, portraits, spins and merge records, once per event (inbox-deduplicated)."""
        users = [event.user_id, *event.merged_user_ids]
        async with self.db.transaction() as tx:
            if not await tx.claim(event.event_id, consumer):
                return None
            for user in sorted(users):
                await _lock_user(tx, user)
            owned = sa.select(characters.c.id).where(characters.c.owner_user_id.in_(users))
            await tx.session.execute(portraits.delete().where(portraits.c.character_id.in_(owned)))
            result = await tx.session.execute(characters.delete().where(characters.c.owner_user_id.in_(users)))
            await tx.session.execute(spin_requests.delete().where(spin_requests.c.user_id.in_(users)))
            await tx.session.execute(
                user_merges.delete().where(
                    sa.or_(user_merges.c.from_user_id.in_(users), user_merges.c.to_user_id.in_(users))
                )
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def get(self, character_id: UUID) -> Character | None:
        """A character by id."""
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(sa.select(*_PERSONA_COLUMNS).where(characters.c.id == character_id))).first()
        return _character(row) if row is not None else None

    async def owned(self, user_id: UUID, limit: int, offset: int) -> tuple[list[Character], int]:
        """A page of the user's characters, newest first, and their total."""
        page = (
            sa.select(*_PERSONA_COLUMNS)
            .where(characters.c.owner_user_id == user_id)
            .order_by(characters.c.created_at.desc(), characters.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        count = sa.select(sa.func.count()).select_from(characters).where(characters.c.owner_user_id == user_id)
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(page)).all()
            total = await conn.scalar(count)
        return [_character(r) for r in rows], int(total or 0)

    async def presets(self) -> list[Character]:
        """Every preset, by name."""
        query = sa.select(*_PERSONA_COLUMNS).where(characters.c.owner_user_id.is_(None)).order_by(characters.c.name)
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_character(r) for r in rows]

    async def portrait(self, character_id: UUID) -> StoredPortrait | None:
        """A portrait with its character's owner."""
        query = (
            sa.select(
                characters.c.owner_user_id,
                portraits.c.content_type,
                portraits.c.data,
                portraits.c.sha256,
                portraits.c.png,
            )
            .join(characters, characters.c.id == portraits.c.character_id)
            .where(portraits.c.character_id == character_id)
        )
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return StoredPortrait(row.owner_user_id, row.content_type, bytes(row.data), row.sha256, _bytes(row.png))

    async def _insert(
        self, tx: Transaction, character: Character, portrait: Portrait, preset_hash: str | None = None
    ) -> None:
        await tx.session.execute(characters.insert().values(**_row_values(character), preset_hash=preset_hash))
        await tx.session.execute(portraits.insert().values(**_portrait_values(character.id, portrait)))


def _with_owner(character: Character, owner: UUID) -> Character:
    return replace(character, owner_user_id=owner)


def _bytes(value: Any) -> bytes | None:
    return bytes(value) if value is not None else None
