"""Character Card V2 over HTTP: export as JSON and PNG, import them back, refuse what is not a card."""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image

from orrery_character_gen.domain import preset_id
from orrery_shared.events import CharacterCreated
from tests.support.llm_stub import StubControl

from .conftest import Service

pytestmark = pytest.mark.integration

SAME = (
    "name",
    "planet",
    "sex",
    "species",
    "archetype",
    "personality",
    "backstory",
    "speaking_style",
    "greeting",
    "tags",
)


async def _import(service: Service, user: uuid.UUID, body: bytes, content_type: str) -> httpx.Response:
    headers = {**service.as_user(user), "Content-Type": content_type}
    response: httpx.Response = await service.http.post("/characters/import", content=body, headers=headers)
    return response


async def test_a_card_exported_as_json_and_as_png_imports_back_to_the_same_character(
    service: Service, stub: StubControl
) -> None:
    owner, importer = uuid.uuid4(), uuid.uuid4()
    event = await service.spin_created(owner)
    original = (await service.http.get(f"/characters/{event.character_id}", headers=service.as_user(owner))).json()

    card_response = await service.http.get(f"/characters/{event.character_id}/card", headers=service.as_user(owner))
    assert card_response.status_code == 200 and card_response.headers["content-type"] == "application/json"
    card = card_response.json()
    assert card["spec"] == "chara_card_v2" and card["spec_version"] == "2.0"
    assert card["data"]["name"] == original["name"] and card["data"]["first_mes"] == original["greeting"]
    assert card["data"]["extensions"]["orrery"]["planet"] == original["planet"]

    png_response = await service.http.get(f"/characters/{event.character_id}/card.png", headers=service.as_user(owner))
    assert png_response.status_code == 200 and png_response.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(png_response.content)) as image:
        image.load()
        assert image.format == "PNG"
        assert json.loads(base64.b64decode(image.text["chara"])) == card  # type: ignore[attr-defined]

    for body, content_type in ((card_response.content, "application/json"), (png_response.content, "image/png")):
        imported = await _import(service, importer, body, content_type)
        assert imported.status_code == 201, imported.text
        copy = imported.json()
        assert {k: copy[k] for k in SAME} == {k: original[k] for k in SAME}
        assert copy["id"] != original["id"] and copy["owner_user_id"] == str(importer) and copy["source"] == "imported"
        exported = (await service.http.get(f"/characters/{copy['id']}/card", headers=service.as_user(importer))).json()
        assert {k: v for k, v in exported["data"].items() if k != "extensions"} == {
            k: v for k, v in card["data"].items() if k != "extensions"
        }

    png_copy = (await _import(service, importer, png_response.content, "image/png")).json()
    portrait = await service.http.get(f"/characters/{png_copy['id']}/portrait", headers=service.as_user(importer))
    assert portrait.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(portrait.content)) as image:
        assert "chara" not in image.info  # the stored portrait is the picture, not the old card


async def test_a_procedural_portraits_card_png_is_a_real_picture_carrying_the_card(service: Service) -> None:
    kix = preset_id("KX-7 Kix")
    card = (await service.http.get(f"/characters/{kix}/card")).json()
    response = await service.http.get(f"/characters/{kix}/card.png")
    assert response.status_code == 200
    with Image.open(io.BytesIO(response.content)) as image:
        image.load()
        assert image.size == (512, 512)
        assert len(image.convert("RGB").getcolors(maxcolors=1_000_000) or []) > 50
        assert json.loads(base64.b64decode(image.text["chara"])) == card  # type: ignore[attr-defined]
    assert card["data"]["mes_example"].startswith("<START>")  # a preset's own card fields travel along


async def test_an_imported_card_is_published_as_character_created_for_the_caller(service: Service) -> None:
    user = uuid.uuid4()
    card = {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {"name": "Quillon Drift", "description": "A nomad poet of the comet lanes.", "first_mes": "Hail!"},
    }
    response = await _import(service, user, json.dumps(card).encode(), "application/json")
    assert response.status_code == 201, response.text
    character_id = uuid.UUID(response.json()["id"])
    event: CharacterCreated = (
        await service.events.wait_for(lambda: [e for e in service.events.created if e.character_id == character_id])
    )[0]
    assert event.owner_user_id == user and event.request_id is None
    assert event.name == "Quillon Drift" and event.greeting == "Hail!" and event.portrait_provider == "procedural"
    assert event.portrait_url == f"/api/characters/{character_id}/portrait"


def _png(with_text: dict[str, str] | None = None) -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in (with_text or {}).items():
        info.add_text(key, value)
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


WRONG_SPEC = json.dumps({"spec": "chara_card_v3", "spec_version": "3.0", "data": {"name": "x"}}).encode()


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"this is not json", "application/json", 400, "invalid_json"),
        (b"", "application/json", 400, "empty_body"),
        (WRONG_SPEC, "application/json", 422, "unsupported_card_spec"),
        (b'{"hello": "world"}', "application/json", 422, "not_a_card"),
        (_png(), "image/png", 422, "no_card_in_png"),
        (_png({"chara": "!!not base64!!"}), "image/png", 422, "invalid_card"),
        (_png()[:30], "image/png", 400, "invalid_png"),
        (b"--x\r\n\r\n--x--", "multipart/form-data; boundary=x", 415, "unsupported_media_type"),
        (b" " * (4 * 1024 * 1024 + 1), "application/json", 413, "too_large"),
    ],
    ids=[
        "not-json",
        "empty",
        "wrong-spec",
        "not-a-card",
        "png-without-chara",
        "bad-chunk",
        "broken-png",
        "multipart",
        "too-large",
    ],
)
async def test_a_bad_import_is_refused_with_a_clear_4xx(
    service: Service, body: bytes, content_type: str, status: int, code: str
) -> None:
    user = uuid.uuid4()
    response = await _import(service, user, body, content_type)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    listing = (await service.http.get("/characters?presets=false", headers=service.as_user(user))).json()
    assert listing["total"] == 0


async def test_an_oversized_upload_without_a_length_header_is_cut_off(service: Service) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(80):
            yield b"x" * 65_536

    headers = {**service.as_user(uuid.uuid4()), "Content-Type": "application/json"}
    response = await service.http.post("/characters/import", content=chunks(), headers=headers)
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"


async def test_an_import_without_a_token_is_401(service: Service) -> None:
    response = await service.http.post(
        "/characters/import", content=b"{}", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 401
