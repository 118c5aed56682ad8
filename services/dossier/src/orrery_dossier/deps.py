"""FastAPI dependencies: the use cases installed by the composition root, and the verified caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Request

from orrery_dossier.handlers import DossierCommands
from orrery_shared.auth import CurrentPrincipal

STATE_KEY = "dossier_commands"


def install_commands(app: FastAPI, commands: DossierCommands) -> None:
    """Make `commands` the use cases the routes of `app` call."""
    setattr(app.state, STATE_KEY, commands)


def _commands(request: Request) -> DossierCommands:
    commands = getattr(request.app.state, STATE_KEY, None)
    if not isinstance(commands, DossierCommands):
        raise RuntimeError("no DossierCommands installed; call install_commands(app, commands)")
    return commands


Commands = Annotated[DossierCommands, Depends(_commands)]
Caller = CurrentPrincipal

__all__ = ["Caller", "Commands", "install_commands"]
