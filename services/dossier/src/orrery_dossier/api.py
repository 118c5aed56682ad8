"""HTTP routes of the dossier service: translate requests to use cases and results to JSON, nothing more."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from orrery_dossier.deps import Caller, Commands
from orrery_dossier.domain import (
    ITEM_MAX,
    NAME_MAX,
    RELATIONSHIP_MAX,
    RELATIONSHIPS_MAX_ITEMS,
    SECTION_MAX_ITEMS,
    TEXT_MAX,
    TITLE_MAX,
    Section,
    norm,
)
from orrery_dossier.handlers import DossierExists, DossierNotFound, VersionConflict
from orrery_dossier.ports import DossierSummary, ProjectState, Source, VersionRecord
from orrery_shared.events import DossierCharacter, DossierSnapshot
from orrery_shared.http import PG_INT_MAX, ApiError, error_body

# --- bodies -------------------------------------------------------------------------------------------

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX)]
Text = Annotated[str, StringConstraints(max_length=TEXT_MAX)]
Relationship = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=RELATIONSHIP_MAX)]
Item = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=ITEM_MAX)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, max_length=TITLE_MAX)]


class CharacterIn(BaseModel):
    """A character as a user writes it."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Text = ""
    relationships: list[Relationship] = Field(default_factory=list, max_length=RELATIONSHIPS_MAX_ITEMS)
    character_arc: Text = ""


class SnapshotIn(BaseModel):
    """A whole dossier snapshot as a user writes it."""

    model_config = ConfigDict(extra="forbid")

    characters: list[CharacterIn] = Field(default_factory=list, max_length=SECTION_MAX_ITEMS["characters"])
    themes: list[Item] = Field(default_factory=list, max_length=SECTION_MAX_ITEMS["themes"])
    locations: list[Item] = Field(default_factory=list, max_length=SECTION_MAX_ITEMS["locations"])
    plot_points: list[Item] = Field(default_factory=list, max_length=SECTION_MAX_ITEMS["plot_points"])

    @field_validator("characters")
    @classmethod
    def _distinct_names(cls, characters: list[CharacterIn]) -> list[CharacterIn]:
        seen: set[str] = set()
        for character in characters:
            key = norm(character.name)
            if key in seen:
                raise ValueError(f"two characters are named {character.name!r} (names ignore case and spacing)")
            seen.add(key)
        return characters

    def snapshot(self) -> DossierSnapshot:
        """The snapshot as the rest of the service knows it."""
        return DossierSnapshot(
            characters=[DossierCharacter(**c.model_dump()) for c in self.characters],
            themes=self.themes,
            locations=self.locations,
            plot_points=self.plot_points,
        )


class CreateDossier(BaseModel):
    """POST body."""

    model_config = ConfigDict(extra="forbid")

    snapshot_json: SnapshotIn = Field(default_factory=SnapshotIn)
    title: Title | None = None


class ReplaceDossier(BaseModel):
    """PUT body: the whole new snapshot and the version it was based on."""

    model_config = ConfigDict(extra="forbid")

    snapshot_json: SnapshotIn
    version: int = Field(ge=1, le=PG_INT_MAX, description="the version this edit started from (optimistic locking)")
    title: Title | None = None


# --- answers ------------------------------------------------------------------------------------------


class DossierOut(BaseModel):
    project_id: UUID
    user_id: UUID
    title: str | None
    version: int
    snapshot_json: DossierSnapshot
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, state: ProjectState) -> DossierOut:
        return cls(
            project_id=state.project_id,
            user_id=state.owner,
            title=state.title or None,
            version=state.version,
            snapshot_json=state.snapshot,
            created_at=state.created_at,
            updated_at=state.updated_at,
        )


class DossierListItem(BaseModel):
    project_id: UUID
    title: str | None
    character_count: int
    theme_count: int
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, summary: DossierSummary) -> DossierListItem:
        return cls(
            project_id=summary.project_id,
            title=summary.title or None,
            character_count=summary.character_count,
            theme_count=summary.theme_count,
            version=summary.version,
            created_at=summary.created_at,
            updated_at=summary.updated_at,
        )


class VersionOut(BaseModel):
    version: int
    created_at: datetime
    source: Source
    turn_ids: list[UUID]
    changed_sections: list[Section]
    title: str | None

    @classmethod
    def of(cls, record: VersionRecord) -> VersionOut:
        return cls(
            version=record.version,
            created_at=record.created_at,
            source=record.source,
            turn_ids=record.turn_ids,
            changed_sections=record.changed_sections,
            title=record.title or None,
        )


class VersionDetail(VersionOut):
    snapshot_json: DossierSnapshot

    @classmethod
    def of(cls, record: VersionRecord) -> VersionDetail:
        return cls(**VersionOut.of(record).model_dump(), snapshot_json=record.snapshot)


# --- routes -------------------------------------------------------------------------------------------

router = APIRouter(prefix="/dossiers", tags=["dossiers"])

ProjectId = Annotated[UUID, Path(description="the story project")]
Limit = Annotated[int, Query(ge=1, le=200)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]

NOT_FOUND = ApiError(404, "not_found", "no such dossier")


@router.get("", response_model=list[DossierListItem])
async def list_dossiers(caller: Caller, commands: Commands, limit: Limit = 50, offset: Offset = 0) -> Any:
    """The caller's dossiers, most recently updated first."""
    return [DossierListItem.of(s) for s in await commands.summaries(caller.user_id, limit, offset)]


@router.get("/{project_id}", response_model=DossierOut)
async def get_dossier(project_id: ProjectId, caller: Caller, commands: Commands) -> Any:
    """The dossier of a project."""
    try:
        return DossierOut.of(await commands.get(caller.user_id, project_id))
    except DossierNotFound:
        raise NOT_FOUND from None


@router.post(
    "/{project_id}",
    response_model=DossierOut,
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "the project has a dossier already (`exists`)"}},
)
async def create_dossier(project_id: ProjectId, body: CreateDossier, caller: Caller, commands: Commands) -> Any:
    """Start a project's dossier by hand; 409 if it has one."""
    try:
        state = await commands.create(caller.user_id, project_id, body.snapshot_json.snapshot(), body.title)
    except DossierNotFound:
        raise NOT_FOUND from None
    except DossierExists:
        raise ApiError(409, "exists", "this project already has a dossier; replace it with PUT") from None
    return DossierOut.of(state)


@router.put(
    "/{project_id}",
    response_model=DossierOut,
    responses={409: {"description": "`version` is not the current one (`version_conflict`, with `current_version`)"}},
)
async def replace_dossier(project_id: ProjectId, body: ReplaceDossier, caller: Caller, commands: Commands) -> Any:
    """Replace the snapshot; 409 with the current version when `version` is stale."""
    try:
        state = await commands.replace(
            caller.user_id, project_id, body.snapshot_json.snapshot(), body.version, body.title
        )
    except DossierNotFound:
        raise NOT_FOUND from None
    except VersionConflict as conflict:
        return JSONResponse(
            error_body(
                "version_conflict",
                f"the dossier changed since version {body.version}; it is at version {conflict.current_version}",
                current_version=conflict.current_version,
            ),
            status_code=409,
        )
    return DossierOut.of(state)


@router.delete("/{project_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_dossier(project_id: ProjectId, caller: Caller, commands: Commands) -> Response:
    """Delete the dossier, its history and the turns waiting for extraction."""
    try:
        await commands.delete(caller.user_id, project_id)
    except DossierNotFound:
        raise NOT_FOUND from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{project_id}/versions", response_model=list[VersionOut])
async def list_versions(
    project_id: ProjectId, caller: Caller, commands: Commands, limit: Limit = 50, offset: Offset = 0
) -> Any:
    """The dossier's versions, newest first: where each came from (an extraction's turns or a user edit)."""
    try:
        return [VersionOut.of(v) for v in await commands.versions(caller.user_id, project_id, limit, offset)]
    except DossierNotFound:
        raise NOT_FOUND from None


@router.get("/{project_id}/versions/{version}", response_model=VersionDetail)
async def get_version(
    project_id: ProjectId, version: Annotated[int, Path(ge=1, le=PG_INT_MAX)], caller: Caller, commands: Commands
) -> Any:
    """One version with its full snapshot."""
    try:
        return VersionDetail.of(await commands.version(caller.user_id, project_id, version))
    except DossierNotFound:
        raise ApiError(404, "not_found", "no such dossier version") from None
