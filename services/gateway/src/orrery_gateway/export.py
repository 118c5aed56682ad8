"""Everything the platform holds of a user, gathered from every service into one zip archive.

`GET /api/me/export` answers with it. The gateway asks each service as the user (their token, so each service
scopes what it returns as it does for any other request) and writes the archive to a temporary file that stays
in memory while small and moves to disk beyond that, so a user with years of chats costs bounded memory. The
archive is complete before the first byte is sent: a service failing halfway is a clear error, never a
truncated archive that looks whole.

Layout, chosen so the parts re-import where Orrery and other apps import them:

    README.txt               what is where
    account.json             the user (GET /api/me)
    characters.json          the user's characters as the API shows them
    characters/<name>-<id>.png   each as a Character Card V2 PNG (POST /api/characters/import)
    conversations.json       the user's conversations (titles, projects, summaries)
    chats/<name>-<id>.jsonl  each conversation as a SillyTavern chat file (POST /api/conversations/import)
    dossiers/<project>.json  each dossier with its version history
    usage.json               tokens the user's replies cost, by model
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO, Any

from orrery_gateway.upstream import Upstream, Upstreams

IN_MEMORY_BYTES = 8 * 1024 * 1024  # larger archives spill to a temporary file
CHUNK_BYTES = 64 * 1024
MAX_PAGES = 10_000  # a bound on every listing, far beyond what any user holds

README = """Your data on Orrery, as of the time of this export.

account.json             your account
characters.json          your characters, as the API shows them
characters/*.png         each character as a Character Card V2 PNG: import it into Orrery
                         (POST /api/characters/import) or any app that reads character cards
conversations.json       your conversations: titles, story projects, end summaries
chats/*.jsonl            each conversation as a SillyTavern chat file (one JSON object per line): import it into
                         Orrery (POST /api/conversations/import?character_id=...) or SillyTavern
dossiers/*.json          each story dossier, with the history of its versions
usage.json               the tokens your replies cost, by model
"""


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def _file_name(name: object, ident: object) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in str(name or "")).strip("-")[:60]
    return f"{safe or 'untitled'}-{ident}"


async def _paged(
    fetch: Callable[[int], Awaitable[Any]], items: Callable[[Any], list[dict[str, Any]]], size: int
) -> list[dict[str, Any]]:
    """Every item of a listing, page by page, until a short page."""
    found: list[dict[str, Any]] = []
    for page in range(MAX_PAGES):
        batch = items(await fetch(page * size))
        found.extend(batch)
        if len(batch) < size:
            break
    return found


async def _listing(
    upstream: Upstream, path: str, authorization: str, key: str | None, size: int, **params: Any
) -> list[dict[str, Any]]:
    async def fetch(offset: int) -> Any:
        return await upstream.get_json(path, authorization, {**params, "limit": size, "offset": offset})

    def items(body: Any) -> list[dict[str, Any]]:
        if body is None:
            return []
        return list(body[key] if key is not None else body)

    return await _paged(fetch, items, size)


async def write_export(upstreams: Upstreams, authorization: str, out: IO[bytes]) -> None:
    """Write the user's archive to `out` (ApiError when a service cannot answer)."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.txt", README)
        archive.writestr("account.json", _json(await upstreams.auth.get_json("/me", authorization)))

        characters = await _listing(upstreams.characters, "/characters", authorization, "items", 100, presets="false")
        archive.writestr("characters.json", _json(characters))
        for character in characters:
            card = await upstreams.characters.get_bytes(f"/characters/{character['id']}/card.png", authorization)
            if card is not None:
                archive.writestr(f"characters/{_file_name(character['name'], character['id'])}.png", card)

        conversations = await _listing(upstreams.chat, "/conversations", authorization, "conversations", 200)
        archive.writestr("conversations.json", _json(conversations))
        for conversation in conversations:
            ident = conversation["conversation_id"]
            chat = await upstreams.chat.get_bytes(f"/conversations/{ident}/export", authorization)
            if chat is not None:
                name = (conversation.get("character") or {}).get("name")
                archive.writestr(f"chats/{_file_name(name, ident)}.jsonl", chat)

        for listed in await _listing(upstreams.dossier, "/dossiers", authorization, None, 200):
            project = listed["project_id"]
            dossier = await upstreams.dossier.get_json(f"/dossiers/{project}", authorization)
            if dossier is None:
                continue  # deleted while the export ran
            versions = await _listing(upstreams.dossier, f"/dossiers/{project}/versions", authorization, None, 200)
            archive.writestr(f"dossiers/{project}.json", _json({**dossier, "versions": versions}))

        archive.writestr("usage.json", _json(await upstreams.chat.get_json("/conversations/usage", authorization)))


async def export_archive(upstreams: Upstreams, authorization: str) -> tuple[IO[bytes], int]:
    """The user's archive, complete, rewound; and its size. The caller closes it."""
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY_BYTES)  # noqa: SIM115 - closed by the caller
    try:
        await write_export(upstreams, authorization, spool)
        size = spool.tell()
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool, size


async def chunks_of(archive: IO[bytes]) -> AsyncIterator[bytes]:
    """The archive's bytes in chunks, closing it at the end (or when the client goes away)."""
    try:
        while chunk := archive.read(CHUNK_BYTES):
            yield chunk
    finally:
        archive.close()
