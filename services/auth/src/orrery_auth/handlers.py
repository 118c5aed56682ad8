"""The auth use cases: magic links, guests, sessions. HTTP-free; the routes translate to these calls."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode
from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import AsyncSession

from orrery_auth import repository as repo
from orrery_auth.domain import (
    AuthError,
    MagicLink,
    MagicLinkExpired,
    MagicLinkInvalid,
    MagicLinkUsed,
    RefreshTokenExpired,
    RefreshTokenInvalid,
    RefreshTokenReused,
    RefreshTokenRevoked,
    Session,
    User,
    UserGone,
    email_domain,
    guest_name,
    new_secret,
    secret_hash,
)
from orrery_auth.keys import AccessTokens
from orrery_auth.mail import Mailer, magic_link_message
from orrery_auth.ratelimit import RateLimiter
from orrery_shared.auth import Principal
from orrery_shared.db import Database, Transaction
from orrery_shared.events import UserErased, UserMerged, UserRegistered

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Policy:
    """Lifetimes, limits and where links point."""

    link_base_url: str
    mail_from: str
    magic_link_ttl: timedelta = timedelta(minutes=15)
    refresh_ttl: timedelta = timedelta(days=30)
    magic_link_window_seconds: int = 900
    magic_links_per_email: int = 5
    magic_links_per_ip: int = 20
    ip_window_seconds: int = 60
    verifications_per_ip: int = 30
    guests_per_ip: int = 10


# Refuses the access tokens of these users from now on (they are verified elsewhere, without asking auth);
# raises Unavailable when that cannot be recorded.
RevokeTokens = Callable[[Sequence[UUID]], Awaitable[None]]


class AuthHandlers:
    def __init__(
        self,
        db: Database,
        access_tokens: AccessTokens,
        mailer: Mailer,
        limiter: RateLimiter,
        policy: Policy,
        revoke_tokens: RevokeTokens,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.access_tokens = access_tokens
        self.mailer = mailer
        self.limiter = limiter
        self.policy = policy
        self.revoke_tokens = revoke_tokens
        self.clock = clock

    # --- magic links ----------------------------------------------------------------------------------

    async def request_magic_link(
        self, email: str, username: str, client_ip: str, requester: Principal | None = None
    ) -> None:
        """Mail a single-use sign-in link to `email` (already normalised), known address or not.

        A guest asking binds the link to itself: only that guest is folded into the account when the link is
        used, so a link someone else asked for can never carry away a guest's conversations.
        """
        p = self.policy
        await self.limiter.hit("magic-link-ip", client_ip, p.magic_links_per_ip, p.magic_link_window_seconds)
        await self.limiter.hit("magic-link-email", email, p.magic_links_per_email, p.magic_link_window_seconds)
        token = new_secret()
        now = self.clock()
        async with self.db.transaction() as tx:
            await repo.purge_magic_links(tx.session, email, before=now)
            guest_id = requester.user_id if requester is not None and requester.is_guest else None
            link = MagicLink(email=email, username=username, guest_id=guest_id)
            await repo.insert_magic_link(tx.session, secret_hash(token), link, now, now + p.magic_link_ttl)
        url = f"{p.link_base_url}/auth/verify?{urlencode({'token': token})}"
        minutes = int(p.magic_link_ttl.total_seconds() // 60)
        message = magic_link_message(sender=p.mail_from, to=email, username=username, link=url, valid_minutes=minutes)
        await self.mailer.send(message)
        log.info("magic link sent", extra={"email_domain": email_domain(email)})

    async def verify_magic_link(self, token: str, guest: Principal | None, client_ip: str) -> Session:
        """Consume the link (exactly once), sign its owner in, and fold the guest into the account when the
        guest presenting the link is the one that asked for it (any other is left as it is)."""
        p = self.policy
        await self.limiter.hit("verify-ip", client_ip, p.verifications_per_ip, p.ip_window_seconds)
        now = self.clock()
        token_hash = secret_hash(token)
        async with self.db.transaction() as tx:
            link = await repo.consume_magic_link(tx.session, token_hash, now)
            if link is None:
                raise await self._why_link_refused(tx.session, token_hash)
            account = await self._account_for(tx, link, now)
            if guest is not None and guest.is_guest and guest.user_id == link.guest_id:
                await self._merge_guest(tx, guest.user_id, account, now)
            await repo.mark_signed_in(tx.session, account.id, now)
            session = await self._open_session(tx.session, account, now)
        log.info("signed in", extra={"user_id": str(account.id)})
        return session

    async def _why_link_refused(self, session: AsyncSession, token_hash: bytes) -> AuthError:
        state = await repo.magic_link_state(session, token_hash)
        if state is None:
            return MagicLinkInvalid()
        if state.consumed:
            log.warning("a used magic link was presented again")
            return MagicLinkUsed()
        return MagicLinkExpired()

    async def _account_for(self, tx: Transaction, link: MagicLink, now: datetime) -> User:
        account = await repo.find_user_by_email(tx.session, link.email)
        if account is not None:
            return account
        account = User(id=uuid4(), username=link.username, email=link.email, is_guest=False, created_at=now)
        if not await repo.insert_user(tx.session, account):
            # Another link for the same new address won the race to create the account; use it.
            existing = await repo.find_user_by_email(tx.session, link.email)
            assert existing is not None
            return existing
        await tx.publish(
            UserRegistered(user_id=account.id, username=account.username, email=account.email, is_guest=False)
        )
        log.info("account created", extra={"user_id": str(account.id)})
        return account

    async def _merge_guest(self, tx: Transaction, guest_id: UUID, account: User, now: datetime) -> None:
        # Locked so one guest cannot be folded into two accounts by concurrent sign-ins.
        guest = await repo.get_user(tx.session, guest_id, lock=True)
        if guest is None or not guest.is_guest or guest.merged_into is not None or guest.id == account.id:
            return
        await repo.mark_merged(tx.session, guest.id, account.id)
        await repo.revoke_user_families(tx.session, guest.id, now, "merged")
        await tx.publish(UserMerged(from_user_id=guest.id, to_user_id=account.id))
        log.info("guest merged into account", extra={"from_user_id": str(guest.id), "to_user_id": str(account.id)})

    # --- guests ---------------------------------------------------------------------------------------

    async def start_guest(self, username: str | None, client_ip: str) -> Session:
        """A new anonymous user with a session."""
        p = self.policy
        await self.limiter.hit("guest-ip", client_ip, p.guests_per_ip, p.ip_window_seconds)
        now = self.clock()
        guest = User(id=uuid4(), username=username or guest_name(), email=None, is_guest=True, created_at=now)
        async with self.db.transaction() as tx:
            await repo.insert_user(tx.session, guest)
            await tx.publish(UserRegistered(user_id=guest.id, username=guest.username, email=None, is_guest=True))
            session = await self._open_session(tx.session, guest, now)
        log.info("guest started", extra={"user_id": str(guest.id)})
        return session

    # --- sessions -------------------------------------------------------------------------------------

    async def _open_session(self, session: AsyncSession, user: User, now: datetime) -> Session:
        family_id = uuid4()
        await repo.create_family(session, family_id, user.id, now)
        return await self._next_in_family(session, family_id, user, now)

    async def _next_in_family(self, session: AsyncSession, family_id: UUID, user: User, now: datetime) -> Session:
        refresh = new_secret()
        await repo.insert_refresh_token(session, secret_hash(refresh), family_id, now, now + self.policy.refresh_ttl)
        return Session(
            user=user,
            access_token=self.access_tokens.issue(user),
            expires_in=self.access_tokens.ttl_seconds,
            refresh_token=refresh,
        )

    async def refresh(self, refresh_token: str) -> Session:
        """Rotate: the presented token is spent and a new one of the same family issued.

        Presenting a spent token means two parties hold the family (a stolen copy, or a replay), and there is
        no telling which is legitimate: the whole family is revoked, newest token included.
        """
        now = self.clock()
        token_hash = secret_hash(refresh_token)
        refused: AuthError
        async with self.db.transaction() as tx:
            rotation = await repo.use_refresh_token(tx.session, token_hash, now)
            if rotation is not None:
                user = await repo.get_user(tx.session, rotation.user_id)
                if user is not None and user.merged_into is None:
                    return await self._next_in_family(tx.session, rotation.family_id, user, now)
                await repo.revoke_family(tx.session, rotation.family_id, now, "user gone")
                refused = UserGone()
            else:
                state = await repo.refresh_token_state(tx.session, token_hash)
                if state is None:
                    refused = RefreshTokenInvalid()
                elif state.family_revoked:
                    refused = RefreshTokenRevoked()
                elif state.used:
                    # Committed before refusing: the revocation must stick.
                    await repo.revoke_family(tx.session, state.family_id, now, "reuse")
                    log.warning(
                        "refresh token reused; session family revoked",
                        extra={"user_id": str(state.user_id), "family_id": str(state.family_id)},
                    )
                    refused = RefreshTokenReused()
                else:
                    refused = RefreshTokenExpired()
        raise refused

    async def logout(self, refresh_token: str) -> None:
        """End the session family the token belongs to; unknown tokens are ignored."""
        now = self.clock()
        async with self.db.transaction() as tx:
            state = await repo.refresh_token_state(tx.session, secret_hash(refresh_token))
            if state is not None:
                await repo.revoke_family(tx.session, state.family_id, now, "logout")
        if state is not None:
            log.info("signed out", extra={"user_id": str(state.user_id)})

    async def erase(self, user_id: UUID) -> list[UUID]:
        """Erase a user (and the guests folded into them): their account and sessions here, their tokens refused
        from now on, and an event by which every service erases what it holds of them. Returns the erased ids;
        UserGone if there is no such user."""
        async with self.db.transaction() as tx:
            user = await repo.get_user(tx.session, user_id, lock=True)
            if user is None or user.merged_into is not None:
                raise UserGone()
            merged = await repo.merged_into(tx.session, user.id)
            erased = [user.id, *merged]
            # Before the commit: if the tokens cannot be refused, nothing is erased and the user can try again.
            await self.revoke_tokens(erased)
            await repo.erase_users(tx.session, erased, user.email)
            await tx.publish(UserErased(user_id=user.id, merged_user_ids=merged))
        log.info("user erased", extra={"user_id": str(user.id), "guests": len(merged)})
        return erased

    async def me(self, user_id: UUID) -> User:
        """The current user; UserGone if it was merged into an account or does not exist."""
        async with self.db.sessions() as session:
            user = await repo.get_user(session, user_id)
        if user is None or user.merged_into is not None:
            raise UserGone()
        return user
