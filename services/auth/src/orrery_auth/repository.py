"""The auth schema's tables and the small queries the handlers are built from (no business rules here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from orrery_auth.domain import MagicLink, User

metadata = sa.MetaData()

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("username", sa.Text, nullable=False),
    sa.Column("email", sa.Text),
    sa.Column("is_guest", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_sign_in_at", sa.DateTime(timezone=True)),
    sa.Column("merged_into", sa.Uuid),
)

magic_links = sa.Table(
    "magic_links",
    metadata,
    sa.Column("token_hash", sa.LargeBinary, primary_key=True),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("username", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("consumed_at", sa.DateTime(timezone=True)),
    sa.Column("guest_id", sa.Uuid),
)

refresh_families = sa.Table(
    "refresh_families",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("user_id", sa.Uuid, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_reason", sa.Text),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("token_hash", sa.LargeBinary, primary_key=True),
    sa.Column("family_id", sa.Uuid, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True)),
)

_USER_COLUMNS = (users.c.id, users.c.username, users.c.email, users.c.is_guest, users.c.created_at, users.c.merged_into)


def _user(row: Any) -> User | None:
    if row is None:
        return None
    return User(
        id=row.id,
        username=row.username,
        email=row.email,
        is_guest=row.is_guest,
        created_at=row.created_at,
        merged_into=row.merged_into,
    )


# --- users ----------------------------------------------------------------------------------------------


async def get_user(session: AsyncSession, user_id: UUID, *, lock: bool = False) -> User | None:
    query = sa.select(*_USER_COLUMNS).where(users.c.id == user_id)
    return _user((await session.execute(query.with_for_update() if lock else query)).first())


async def find_user_by_email(session: AsyncSession, email: str) -> User | None:
    """The account with this (normalised) address, locked for the rest of the transaction."""
    query = sa.select(*_USER_COLUMNS).where(users.c.email == email).with_for_update()
    return _user((await session.execute(query)).first())


async def insert_user(session: AsyncSession, user: User) -> bool:
    """Insert `user`; False if an account with its address appeared meanwhile."""
    result = await session.execute(
        insert(users)
        .values(
            id=user.id,
            username=user.username,
            email=user.email,
            is_guest=user.is_guest,
            created_at=user.created_at,
        )
        .on_conflict_do_nothing(index_elements=[users.c.email])
        .returning(users.c.id)
    )
    return result.first() is not None


async def mark_signed_in(session: AsyncSession, user_id: UUID, at: datetime) -> None:
    await session.execute(sa.update(users).where(users.c.id == user_id).values(last_sign_in_at=at))


async def mark_merged(session: AsyncSession, guest_id: UUID, into: UUID) -> None:
    await session.execute(sa.update(users).where(users.c.id == guest_id).values(merged_into=into))


async def merged_into(session: AsyncSession, account_id: UUID) -> list[UUID]:
    """The guests folded into this account."""
    rows = await session.execute(sa.select(users.c.id).where(users.c.merged_into == account_id).order_by(users.c.id))
    return [r.id for r in rows]


async def erase_users(session: AsyncSession, user_ids: Sequence[UUID], email: str | None) -> None:
    """Delete these users with their sessions and the sign-in links they asked for."""
    ids = list(user_ids)
    families = sa.select(refresh_families.c.id).where(refresh_families.c.user_id.in_(ids))
    await session.execute(refresh_tokens.delete().where(refresh_tokens.c.family_id.in_(families)))
    await session.execute(refresh_families.delete().where(refresh_families.c.user_id.in_(ids)))
    asked = magic_links.c.guest_id.in_(ids)
    await session.execute(magic_links.delete().where(sa.or_(asked, magic_links.c.email == email) if email else asked))
    await session.execute(users.delete().where(users.c.id.in_(ids)))


# --- magic links ----------------------------------------------------------------------------------------


async def insert_magic_link(
    session: AsyncSession, token_hash: bytes, link: MagicLink, created_at: datetime, expires_at: datetime
) -> None:
    await session.execute(
        magic_links.insert().values(
            token_hash=token_hash,
            email=link.email,
            username=link.username,
            created_at=created_at,
            expires_at=expires_at,
            guest_id=link.guest_id,
        )
    )


async def purge_magic_links(session: AsyncSession, email: str, before: datetime) -> None:
    """Forget this address's links that expired before `before` (keeps the table from growing forever)."""
    await session.execute(sa.delete(magic_links).where(magic_links.c.email == email, magic_links.c.expires_at < before))


async def consume_magic_link(session: AsyncSession, token_hash: bytes, now: datetime) -> MagicLink | None:
    """Mark the link used if it is unused and unexpired, atomically: of concurrent callers only one gets it."""
    result = await session.execute(
        sa.update(magic_links)
        .where(
            magic_links.c.token_hash == token_hash,
            magic_links.c.consumed_at.is_(None),
            magic_links.c.expires_at > now,
        )
        .values(consumed_at=now)
        .returning(magic_links.c.email, magic_links.c.username, magic_links.c.guest_id)
    )
    row = result.first()
    return None if row is None else MagicLink(email=row.email, username=row.username, guest_id=row.guest_id)


@dataclass(frozen=True)
class LinkState:
    consumed: bool
    expires_at: datetime


async def magic_link_state(session: AsyncSession, token_hash: bytes) -> LinkState | None:
    row = (
        await session.execute(
            sa.select(magic_links.c.consumed_at, magic_links.c.expires_at).where(magic_links.c.token_hash == token_hash)
        )
    ).first()
    return None if row is None else LinkState(consumed=row.consumed_at is not None, expires_at=row.expires_at)


# --- refresh tokens -------------------------------------------------------------------------------------


async def create_family(session: AsyncSession, family_id: UUID, user_id: UUID, now: datetime) -> None:
    await session.execute(refresh_families.insert().values(id=family_id, user_id=user_id, created_at=now))


async def insert_refresh_token(
    session: AsyncSession, token_hash: bytes, family_id: UUID, now: datetime, expires_at: datetime
) -> None:
    await session.execute(
        refresh_tokens.insert().values(
            token_hash=token_hash, family_id=family_id, created_at=now, expires_at=expires_at
        )
    )


@dataclass(frozen=True)
class Rotation:
    family_id: UUID
    user_id: UUID


async def use_refresh_token(session: AsyncSession, token_hash: bytes, now: datetime) -> Rotation | None:
    """Mark a live token of a live family used, atomically; None if it is unknown, used, expired or revoked."""
    result = await session.execute(
        sa.update(refresh_tokens)
        .where(
            refresh_tokens.c.token_hash == token_hash,
            refresh_tokens.c.used_at.is_(None),
            refresh_tokens.c.expires_at > now,
            refresh_families.c.id == refresh_tokens.c.family_id,
            refresh_families.c.revoked_at.is_(None),
        )
        .values(used_at=now)
        .returning(refresh_tokens.c.family_id, refresh_families.c.user_id)
    )
    row = result.first()
    return None if row is None else Rotation(family_id=row.family_id, user_id=row.user_id)


@dataclass(frozen=True)
class RefreshState:
    family_id: UUID
    user_id: UUID
    used: bool
    expires_at: datetime
    family_revoked: bool


async def refresh_token_state(session: AsyncSession, token_hash: bytes) -> RefreshState | None:
    row = (
        await session.execute(
            sa.select(
                refresh_tokens.c.family_id,
                refresh_families.c.user_id,
                refresh_tokens.c.used_at,
                refresh_tokens.c.expires_at,
                refresh_families.c.revoked_at,
            )
            .join(refresh_families, refresh_families.c.id == refresh_tokens.c.family_id)
            .where(refresh_tokens.c.token_hash == token_hash)
        )
    ).first()
    if row is None:
        return None
    return RefreshState(
        family_id=row.family_id,
        user_id=row.user_id,
        used=row.used_at is not None,
        expires_at=row.expires_at,
        family_revoked=row.revoked_at is not None,
    )


async def revoke_family(session: AsyncSession, family_id: UUID, now: datetime, reason: str) -> None:
    await session.execute(
        sa.update(refresh_families)
        .where(refresh_families.c.id == family_id, refresh_families.c.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )


async def revoke_user_families(session: AsyncSession, user_id: UUID, now: datetime, reason: str) -> None:
    await session.execute(
        sa.update(refresh_families)
        .where(refresh_families.c.user_id == user_id, refresh_families.c.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )
