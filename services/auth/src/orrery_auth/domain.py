"""The auth domain: users, sessions, secrets and the named errors the HTTP edge translates."""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar
from uuid import UUID

# --- values ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class User:
    id: UUID
    username: str
    email: str | None
    is_guest: bool
    created_at: datetime
    merged_into: UUID | None = None


@dataclass(frozen=True, slots=True)
class Session:
    """What a successful sign-in, guest start or refresh hands back."""

    user: User
    access_token: str
    expires_in: int
    refresh_token: str


@dataclass(frozen=True, slots=True)
class MagicLink:
    email: str
    username: str
    # The guest whose session asked for the link: the only one it may fold into the account.
    guest_id: UUID | None = None


# --- secrets --------------------------------------------------------------------------------------------

SECRET_BYTES = 32


def new_secret() -> str:
    """An unguessable single-use secret (magic-link or refresh token), URL-safe."""
    return secrets.token_urlsafe(SECRET_BYTES)


def secret_hash(secret: str) -> bytes:
    """What is stored instead of a secret. The secrets carry 256 random bits, so a fast hash is enough."""
    return hashlib.sha256(secret.encode()).digest()


# --- input rules ----------------------------------------------------------------------------------------

EMAIL_MAX = 254
USERNAME_MAX = 40
_LOCAL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalize_email(raw: str) -> str:
    """A lower-cased, syntactically plausible address; raises ValueError otherwise."""
    email = raw.strip()
    if len(email) > EMAIL_MAX or email.count("@") != 1:
        raise ValueError("not an email address")
    local, domain = email.split("@")
    try:
        domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError("the domain of the address is not valid") from None
    labels = domain.split(".")
    if not _LOCAL.match(local) or ".." in local or local.startswith(".") or local.endswith("."):
        raise ValueError("not an email address")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise ValueError("the domain of the address is not valid")
    return f"{local.lower()}@{domain}"


def normalize_username(raw: str) -> str:
    """A display name: trimmed, 1-40 printable characters, inner whitespace collapsed; raises ValueError."""
    name = " ".join(unicodedata.normalize("NFC", raw).split())
    if not name:
        raise ValueError("must not be empty")
    if len(name) > USERNAME_MAX:
        raise ValueError(f"must be at most {USERNAME_MAX} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise ValueError("must not contain control characters")
    return name


def guest_name() -> str:
    """A friendly name for a guest who did not pick one."""
    return f"Stargazer-{secrets.randbelow(9000) + 1000}"


def email_domain(email: str) -> str:
    """The part of an address that is safe to log."""
    return email.rpartition("@")[2]


# --- errors ---------------------------------------------------------------------------------------------


class AuthError(Exception):
    """A refusal with a stable code; the edge maps codes to HTTP statuses."""

    code: ClassVar[str] = "auth_error"
    message: ClassVar[str] = "request refused"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        self.detail = message or self.message


class MagicLinkInvalid(AuthError):
    code = "magic_link_invalid"
    message = "this sign-in link is not valid; request a new one"


class MagicLinkUsed(AuthError):
    code = "magic_link_used"
    message = "this sign-in link was already used; request a new one"


class MagicLinkExpired(AuthError):
    code = "magic_link_expired"
    message = "this sign-in link has expired; request a new one"


class RefreshTokenInvalid(AuthError):
    code = "refresh_token_invalid"
    message = "unknown refresh token; sign in again"


class RefreshTokenExpired(AuthError):
    code = "refresh_token_expired"
    message = "the refresh token has expired; sign in again"


class RefreshTokenRevoked(AuthError):
    code = "refresh_token_revoked"
    message = "the session was ended; sign in again"


class RefreshTokenReused(AuthError):
    code = "refresh_token_reused"
    message = "this refresh token was already used, so the session was ended for safety; sign in again"


class UserGone(AuthError):
    code = "user_not_found"
    message = "this user no longer exists; sign in again"


class RateLimited(AuthError):
    code = "rate_limited"
    message = "too many requests; try again later"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many requests; try again in {retry_after} s")
        self.retry_after = retry_after


class MailNotSent(AuthError):
    code = "mail_unavailable"
    message = "the sign-in mail could not be sent; try again shortly"


class Unavailable(AuthError):
    code = "unavailable"
    message = "a dependency of the auth service is unavailable; try again shortly"
