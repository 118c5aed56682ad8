"""FastAPI dependencies: the caller (a verified JWT) and the use cases the composition root put on the app."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from orrery_character_gen.handlers import CardImporter, CharacterQueries
from orrery_character_gen.settings import CharacterGenSettings
from orrery_shared.auth import Principal, current_principal, optional_principal


def queries(request: Request) -> CharacterQueries:
    """The read side."""
    found: CharacterQueries = request.app.state.queries
    return found


def importer(request: Request) -> CardImporter:
    """The card importer."""
    found: CardImporter = request.app.state.importer
    return found


def settings(request: Request) -> CharacterGenSettings:
    """The service's settings."""
    found: CharacterGenSettings = request.app.state.settings
    return found


Caller = Annotated[Principal, Depends(current_principal)]
MaybeCaller = Annotated[Principal | None, Depends(optional_principal)]
Queries = Annotated[CharacterQueries, Depends(queries)]
Importer = Annotated[CardImporter, Depends(importer)]
Settings = Annotated[CharacterGenSettings, Depends(settings)]
