"""The read API (and card import) over HTTP: translation between requests and the use cases only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from orrery_character_gen.cards import CardError
from orrery_character_gen.deps import Caller, Importer, MaybeCaller, Queries, Settings
from orrery_character_gen.domain import ARCHETYPES, CARD_PATH, SEXES, SPECIES, Character
from orrery_character_gen.handlers import NotFoundError
from orrery_shared.http import ApiError

router = APIRouter(prefix="/characters", tags=["characters"])


class CharacterOut(BaseModel):
    """A character as the API shows it."""

    id: UUID
    owner_user_id: UUID | None = Field(description="null for presets, which everyone sees")
    source: str = Field(description="generated, preset or imported")
    request_id: UUID | None = Field(description="the spin that produced it")
    name: str
    planet: str
    sex: str
    species: str
    archetype: str
    personality: str
    backstory: str
    speaking_style: str
    greeting: str
    image_prompt: str
    tags: list[str]
    portrait_url: str = Field(description="the gateway path of the portrait")
    portrait_provider: str
    card_url: str = Field(description="the gateway path of the Character Card V2 (append .png for the PNG card)")
    created_at: datetime | None

    @classmethod
    def of(cls, c: Character) -> CharacterOut:
        return cls(
            id=c.id,
            owner_user_id=c.owner_user_id,
            source=c.source.value,
            request_id=c.request_id,
            name=c.name,
            planet=c.planet,
            sex=c.traits.sex,
            species=c.traits.species,
            archetype=c.traits.archetype,
            personality=c.personality,
            backstory=c.backstory,
            speaking_style=c.speaking_style,
            greeting=c.greeting,
            image_prompt=c.image_prompt,
            tags=list(c.tags),
            portrait_url=c.portrait_url,
            portrait_provider=c.portrait_provider,
            card_url=CARD_PATH.format(character_id=c.id),
            created_at=c.created_at,
        )


class CharacterPage(BaseModel):
    """A page of the caller's characters, newest first, and the presets."""

    items: list[CharacterOut]
    total: int = Field(description="how many characters the caller owns")
    limit: int
    offset: int
    presets: list[CharacterOut] | None = Field(description="every preset (null when presets=false)")


class TraitCatalogue(BaseModel):
    """The values a spin may pin."""

    sexes: list[str]
    species: list[str]
    archetypes: list[str]
    recent_window: int = Field(description="'spin again' never repeats a combination among this many")


def _uuid(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise ApiError(404, "not_found", "no such character") from None


def _not_found() -> ApiError:
    return ApiError(404, "not_found", "no such character")


def _matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match uses weak comparison (RFC 9110 13.1.2): W/"x" matches "x"."""
    for part in (if_none_match or "").split(","):
        tag = part.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def _user(caller: object) -> UUID | None:
    return getattr(caller, "user_id", None)


BINARY = {"schema": {"type": "string", "format": "binary"}}
IMAGES = {kind: BINARY for kind in ("image/png", "image/jpeg", "image/webp", "image/svg+xml")}


@router.get("", response_model=CharacterPage)
async def list_characters(
    caller: Caller,
    queries: Queries,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    presets: Annotated[bool, Query(description="include every preset in `presets`")] = True,
) -> CharacterPage:
    """The caller's characters, newest first (paged), plus the presets."""
    owned, total, preset_list = await queries.page(caller.user_id, limit, offset, presets)
    return CharacterPage(
        items=[CharacterOut.of(c) for c in owned],
        total=total,
        limit=limit,
        offset=offset,
        presets=[CharacterOut.of(c) for c in preset_list] if preset_list is not None else None,
    )


@router.get("/traits", response_model=TraitCatalogue)
async def traits(settings: Settings) -> TraitCatalogue:
    """The trait catalogue (what a spin's overrides may name)."""
    return TraitCatalogue(
        sexes=list(SEXES), species=list(SPECIES), archetypes=list(ARCHETYPES), recent_window=settings.recent_window
    )


@router.post(
    "/import",
    response_model=CharacterOut,
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "a character card: V1 or V2 JSON, or a PNG carrying it in a `chara` chunk",
            "content": {"application/json": {"schema": {"type": "object"}}, "image/png": BINARY},
        }
    },
    responses={400: {"description": "no card in the body"}, 413: {"description": "larger than the import limit"}},
)
async def import_card(request: Request, caller: Caller, importer: Importer, settings: Settings) -> CharacterOut:
    """A Character Card V2 (JSON, or PNG with a `chara` chunk) in the raw body becomes the caller's character."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type.startswith("multipart/"):
        raise ApiError(415, "unsupported_media_type", "send the card as the raw body (application/json or image/png)")
    body = await _read_limited(request, settings.max_import_bytes)
    correlation = request.headers.get("x-correlation-id") or request.headers.get("x-request-id")
    try:
        character = await importer(caller.user_id, body, correlation[:100] if correlation else None)
    except CardError as error:
        raise ApiError(error.status, error.code, error.message) from None
    return CharacterOut.of(character)


@router.get("/{character_id}", response_model=CharacterOut)
async def get_character(character_id: str, caller: MaybeCaller, queries: Queries) -> CharacterOut:
    """One character: the caller's own, or a preset (presets need no token)."""
    try:
        return CharacterOut.of(await queries.character(_user(caller), _uuid(character_id)))
    except NotFoundError:
        raise _not_found() from None


@router.get(
    "/{character_id}/portrait",
    response_class=Response,
    responses={200: {"content": IMAGES, "description": "the portrait"}, 304: {"description": "not modified"}},
)
async def portrait(
    character_id: str, request: Request, caller: MaybeCaller, queries: Queries, settings: Settings
) -> Response:
    """The portrait's bytes with a strong ETag; 304 when If-None-Match already names it."""
    try:
        found = await queries.portrait(_user(caller), _uuid(character_id))
    except NotFoundError:
        raise _not_found() from None
    etag = f'"{found.sha256}"'
    scope = "public" if found.owner_user_id is None else "private"
    headers = {
        "ETag": etag,
        "Cache-Control": f"{scope}, max-age={settings.portrait_max_age_s}",
        "X-Content-Type-Options": "nosniff",
    }
    if found.content_type == "image/svg+xml":
        # An SVG opened directly must never run anything.
        headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(found.data, media_type=found.content_type, headers=headers)


@router.get(
    "/{character_id}/card",
    response_class=Response,
    responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}, "description": "the card"}},
)
async def card(character_id: str, caller: MaybeCaller, queries: Queries) -> Response:
    """The Character Card V2 as JSON."""
    try:
        body = await queries.card(_user(caller), _uuid(character_id))
    except NotFoundError:
        raise _not_found() from None
    return Response(body, media_type="application/json", headers={"Cache-Control": "private, no-cache"})


@router.get(
    "/{character_id}/card.png",
    response_class=Response,
    responses={200: {"content": {"image/png": BINARY}, "description": "the card inside its portrait"}},
)
async def card_png(character_id: str, caller: MaybeCaller, queries: Queries) -> Response:
    """The portrait as a PNG whose `chara` tEXt chunk carries the card (base64 JSON)."""
    try:
        body = await queries.card_png(_user(caller), _uuid(character_id))
    except NotFoundError:
        raise _not_found() from None
    return Response(
        body,
        media_type="image/png",
        headers={"Cache-Control": "private, no-cache", "Content-Disposition": 'inline; filename="character.png"'},
    )


async def _read_limited(request: Request, limit: int) -> bytes:
    too_large = ApiError(413, "too_large", f"the card is larger than {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)
