"""Who a verified access token speaks for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID


@dataclass(frozen=True, slots=True)
class Principal:
    """The user behind a verified access token; `claims` holds every verified claim."""

    user_id: UUID
    name: str
    is_guest: bool
    claims: Mapping[str, Any]

    @property
    def token_id(self) -> str:
        """The token's `jti`."""
        return str(self.claims["jti"])

    @property
    def expires_at(self) -> datetime:
        """When the token stops being accepted (before leeway)."""
        return datetime.fromtimestamp(int(self.claims["exp"]), UTC)
