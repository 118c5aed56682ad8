"""HTTP edge of the auth service: request/response shapes, and domain errors translated to JSON errors."""

from collections.abc import Awaitable, Sequence
from datetime import datetime
from ipaddress import IPv4Network, IPv6Network
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from orrery_auth.client_ip import client_ip
from orrery_auth.domain import (
    USERNAME_MAX,
    AuthError,
    RateLimited,
    Session,
    User,
    normalize_email,
    normalize_username,
)
from orrery_auth.handlers import AuthHandlers
from orrery_auth.keys import KeyRing
from orrery_shared.auth import JwtVerifier, Principal, optional_principal_dependency, principal_dependency
from orrery_shared.http import ApiError
from orrery_shared.text import NOT_BLANK

T = TypeVar("T")

STATUS = {
    "magic_link_invalid": 401,
    "magic_link_used": 401,
    "magic_link_expired": 401,
    "refresh_token_invalid": 401,
    "refresh_token_expired": 401,
    "refresh_token_revoked": 401,
    "refresh_token_reused": 401,
    "user_not_found": 401,
    "rate_limited": 429,
    "mail_unavailable": 503,
    "unavailable": 503,
}
SECRET_MAX = 256


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class MagicLinkRequest(_Body):
    email: str = Field(max_length=320, examples=["ada@example.com"])
    username: str = Field(max_length=USERNAME_MAX, examples=["Ada"])

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalize_email(value)

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        return normalize_username(value)


class GuestRequest(_Body):
    username: str | None = Field(
        None, max_length=USERNAME_MAX, description="a name for the guest; one is made up if absent"
    )

    @field_validator("username")
    @classmethod
    def _username(cls, value: str | None) -> str | None:
        return None if value is None else normalize_username(value)


class VerifyRequest(_Body):
    token: str = Field(max_length=SECRET_MAX, pattern=NOT_BLANK, description="the token from the sign-in link")


class RefreshRequest(_Body):
    refresh_token: str = Field(max_length=SECRET_MAX, pattern=NOT_BLANK)


class UserView(BaseModel):
    id: UUID
    username: str
    email: str | None
    is_guest: bool
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> "UserView":
        return cls(
            id=user.id, username=user.username, email=user.email, is_guest=user.is_guest, created_at=user.created_at
        )


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(description="seconds until the access token expires")
    user: UserView

    @classmethod
    def of(cls, session: Session) -> "TokenResponse":
        return cls(
            access_token=session.access_token,
            refresh_token=session.refresh_token,
            expires_in=session.expires_in,
            user=UserView.of(session.user),
        )


class MagicLinkAccepted(BaseModel):
    status: Literal["sent"] = "sent"
    message: str = "If the address can receive mail, a sign-in link is on its way."
    expires_in: int = Field(description="seconds the link stays valid")


def _api_error(error: AuthError) -> ApiError:
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, RateLimited) else None
    if STATUS.get(error.code, 400) == 401:
        headers = {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{error.code}"'}
    return ApiError(STATUS.get(error.code, 400), error.code, error.detail, headers=headers)


async def _call(action: Awaitable[T]) -> T:
    try:
        return await action
    except AuthError as error:
        raise _api_error(error) from None


def auth_router(
    handlers: AuthHandlers,
    keys: KeyRing,
    verifier: JwtVerifier,
    trusted_proxies: Sequence[IPv4Network | IPv6Network],
    jwks_max_age: int = 300,
) -> APIRouter:
    """The auth service's routes, bound to its handlers."""
    router = APIRouter()
    principal = principal_dependency(verifier)
    maybe_principal = optional_principal_dependency(verifier)
    jwks = keys.jwks()
    magic_link_ttl = int(handlers.policy.magic_link_ttl.total_seconds())

    def ip_of(request: Request) -> str:
        return client_ip(request, trusted_proxies)

    ClientIp = Annotated[str, Depends(ip_of)]
    errors: dict[int | str, dict[str, Any]] = {
        401: {"description": "refused, with a stable `error.code`"},
        429: {"description": "rate limited; see Retry-After"},
    }

    @router.post("/auth/magic-link", status_code=202, response_model=MagicLinkAccepted, responses=errors)
    async def request_magic_link(
        body: MagicLinkRequest, ip: ClientIp, requester: Annotated[Principal | None, Depends(maybe_principal)]
    ) -> MagicLinkAccepted:
        """Mail a sign-in link; the answer is the same whether or not the address has an account.

        A guest's bearer token binds the link to that guest: completing it folds that guest into the account."""
        await _call(handlers.request_magic_link(body.email, body.username, ip, requester))
        return MagicLinkAccepted(expires_in=magic_link_ttl)

    @router.post("/auth/verify", response_model=TokenResponse, responses=errors)
    async def verify(
        body: VerifyRequest, ip: ClientIp, guest: Annotated[Principal | None, Depends(maybe_principal)]
    ) -> TokenResponse:
        """Exchange a sign-in link's token for a session; the guest that asked for the link, presenting its
        bearer token, is folded in."""
        return TokenResponse.of(await _call(handlers.verify_magic_link(body.token, guest, ip)))

    @router.post("/auth/guest", status_code=201, response_model=TokenResponse, responses=errors)
    async def guest(ip: ClientIp, body: GuestRequest | None = None) -> TokenResponse:
        """Start as an anonymous guest."""
        username = body.username if body else None
        return TokenResponse.of(await _call(handlers.start_guest(username, ip)))

    @router.post("/auth/refresh", response_model=TokenResponse, responses=errors)
    async def refresh(body: RefreshRequest) -> TokenResponse:
        """Rotate a refresh token into a new session pair."""
        return TokenResponse.of(await _call(handlers.refresh(body.refresh_token)))

    @router.post("/auth/logout", status_code=204, response_class=Response)
    async def logout(body: RefreshRequest) -> Response:
        """End the session the refresh token belongs to."""
        await _call(handlers.logout(body.refresh_token))
        return Response(status_code=204)

    @router.get("/me", response_model=UserView, responses=errors)
    async def me(who: Annotated[Principal, Depends(principal)]) -> UserView:
        """The signed-in user."""
        return UserView.of(await _call(handlers.me(who.user_id)))

    @router.delete("/me", status_code=204, response_class=Response, responses=errors)
    async def erase_me(who: Annotated[Principal, Depends(principal)]) -> Response:
        """Erase the signed-in user everywhere: the account and its sessions at once, its tokens refused from
        now on, and every service's rows of it through `auth.user-erased.v1`."""
        await _call(handlers.erase(who.user_id))
        return Response(status_code=204)

    @router.get("/.well-known/jwks.json")
    async def jwks_document(response: Response) -> dict[str, Any]:
        """The public keys access tokens are signed with (current and previous)."""
        response.headers["Cache-Control"] = f"public, max-age={jwks_max_age}"
        return jwks

    return router
