"""The services' read APIs, reached over pooled HTTP with the caller's token forwarded."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx

from orrery_shared import telemetry
from orrery_shared.http import ApiError

# Headers that describe one hop, not the message: never forwarded either way.
HOP_HEADERS = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "content-encoding",
}


class Upstream:
    """One service behind the gateway."""

    def __init__(self, name: str, base_url: str, timeout: float) -> None:
        self.name = name
        self.client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            # The services' HTTP spans then join the trace of the request the gateway is serving.
            event_hooks={"request": [_propagate]} if telemetry.enabled() else None,
        )

    async def _call(
        self, method: str, path: str, authorization: str, params: dict[str, Any] | None = None, body: Any = None
    ) -> httpx.Response | None:
        """A request as the caller; None when the service says 404, ApiError when it cannot answer or refuses."""
        headers = {"Authorization": authorization}
        try:
            response = await self.client.request(method, path, headers=headers, params=params, json=body)
        except httpx.HTTPError:
            raise ApiError(503, "unavailable", f"the {self.name} service is unreachable") from None
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise _mapped(self.name, response)
        return response

    async def get_json(self, path: str, authorization: str, params: dict[str, Any] | None = None) -> Any:
        """GET a JSON document as the caller; None when the service says 404."""
        response = await self._call("GET", path, authorization, params=params)
        return None if response is None else response.json()

    async def put_json(self, path: str, authorization: str, body: Any) -> Any:
        """PUT a JSON document as the caller; the service's JSON answer, or None when it says 404."""
        response = await self._call("PUT", path, authorization, body=body)
        return None if response is None else response.json()

    async def get_bytes(self, path: str, authorization: str) -> bytes | None:
        """GET a document's bytes as the caller; None when the service says 404."""
        response = await self._call("GET", path, authorization)
        return None if response is None else response.content

    async def aclose(self) -> None:
        await self.client.aclose()


async def _propagate(request: httpx.Request) -> None:
    telemetry.inject(request.headers)


def _mapped(name: str, response: httpx.Response) -> ApiError:
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "upstream_error", f"the {name} service answered {response.status_code}"
    status = response.status_code if response.status_code < 500 else 502
    return ApiError(status, code, message)


class Upstreams:
    def __init__(self, auth: str, characters: str, chat: str, dossier: str, timeout: float) -> None:
        self.auth = Upstream("auth", auth, timeout)
        self.characters = Upstream("character", characters, timeout)
        self.chat = Upstream("chat", chat, timeout)
        self.dossier = Upstream("dossier", dossier, timeout)
        self.by_prefix = {
            "characters": self.characters,
            "conversations": self.chat,
            "dossiers": self.dossier,
        }

    async def character(self, authorization: str, character_id: UUID) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self.characters.get_json(f"/characters/{character_id}", authorization)
        return found

    async def conversation(self, authorization: str, conversation_id: UUID) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self.chat.get_json(f"/conversations/{conversation_id}", authorization)
        return found

    async def turn(self, authorization: str, turn_id: UUID) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self.chat.get_json(f"/conversations/turns/{turn_id}", authorization)
        return found

    async def message(self, authorization: str, message_id: UUID) -> dict[str, Any] | None:
        """Where one of the caller's messages is: `{message_id, conversation_id, role}`."""
        found: dict[str, Any] | None = await self.chat.get_json(f"/conversations/messages/{message_id}", authorization)
        return found

    async def select_branch(self, authorization: str, conversation_id: UUID, message_id: UUID) -> dict[str, Any] | None:
        """Make the path through a message active: `{conversation_id, active_leaf_id}`; None when chat knows no
        such message in the caller's conversation."""
        selected: dict[str, Any] | None = await self.chat.put_json(
            f"/conversations/{conversation_id}/active", authorization, {"message_id": str(message_id)}
        )
        return selected

    async def aclose(self) -> None:
        for upstream in (self.auth, self.characters, self.chat, self.dossier):
            await upstream.aclose()
