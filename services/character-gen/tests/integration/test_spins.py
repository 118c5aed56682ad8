"""Spins end to end: character.requested.v1 on the real broker → LLM stub → Postgres → character.created/failed."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
import uuid
from typing import Any

import pytest
from PIL import Image

from orrery_shared.events import CharacterCreated, CharacterFailed, CharacterRequested
from tests.support.llm_stub import StubControl

from .conftest import Service, persona_calls, publish, sql

pytestmark = pytest.mark.integration

PERSONA_FIELDS = ("name", "planet", "sex", "species", "archetype", "personality", "backstory", "speaking_style")


async def test_a_spin_publishes_the_whole_character_and_its_portrait_is_served_with_an_etag(
    service: Service, stub: StubControl
) -> None:
    user = uuid.uuid4()
    request = await service.spin(user)
    event = await service.outcome(request.request_id)
    assert isinstance(event, CharacterCreated)

    assert event.owner_user_id == user and event.correlation_id == request.correlation_id
    for name in (*PERSONA_FIELDS, "greeting"):
        assert isinstance(getattr(event, name), str) and getattr(event, name).strip(), name
    assert event.tags and all(t == t.lower() for t in event.tags)
    assert event.portrait_url == f"/api/characters/{event.character_id}/portrait"
    assert event.portrait_provider == "openai"  # the stub answered as OpenAI Images
    [persona_call] = persona_calls(stub, event.sex, event.species, event.archetype)
    assert persona_call["body"]["response_format"]["type"] == "json_schema"

    shown = await service.http.get(f"/characters/{event.character_id}", headers=service.as_user(user))
    assert shown.status_code == 200
    assert {k: shown.json()[k] for k in PERSONA_FIELDS} == {k: getattr(event, k) for k in PERSONA_FIELDS}

    portrait = await service.http.get(f"/characters/{event.character_id}/portrait", headers=service.as_user(user))
    assert portrait.status_code == 200
    assert portrait.headers["content-type"] == "image/png"
    etag = portrait.headers["etag"]
    assert etag == f'"{hashlib.sha256(portrait.content).hexdigest()}"'  # strong: no W/ prefix
    assert "max-age=" in portrait.headers["cache-control"] and "private" in portrait.headers["cache-control"]
    with Image.open(io.BytesIO(portrait.content)) as image:
        assert image.format == "PNG"

    again = await service.http.get(
        f"/characters/{event.character_id}/portrait", headers={**service.as_user(user), "If-None-Match": etag}
    )
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    stale = await service.http.get(
        f"/characters/{event.character_id}/portrait", headers={**service.as_user(user), "If-None-Match": '"other"'}
    )
    assert stale.status_code == 200 and stale.content == portrait.content


async def test_a_second_spin_for_the_same_user_draws_different_traits(service: Service, stub: StubControl) -> None:
    user = uuid.uuid4()
    first = await service.spin_created(user)
    second = await service.spin_created(user)
    assert first.character_id != second.character_id
    assert (first.sex, first.species, first.archetype) != (second.sex, second.species, second.archetype)


async def test_pinned_traits_are_honoured(service: Service, stub: StubControl) -> None:
    event = await service.spin_created(uuid.uuid4(), sex="non-binary", species="hologram", archetype="cosmic bard")
    assert (event.sex, event.species, event.archetype) == ("non-binary", "hologram", "cosmic bard")


async def test_a_failing_image_provider_gives_the_procedural_portrait_and_the_event_says_so(
    service: Service, stub: StubControl
) -> None:
    stub.script(endpoint="images", status=500, error_message="image backend down", times=50)
    user = uuid.uuid4()
    event = await service.spin_created(user)
    assert event.portrait_provider == "procedural"
    assert stub.requests(path="/v1/images/generations"), "the OpenAI Images provider was tried first"
    portrait = await service.http.get(f"/characters/{event.character_id}/portrait", headers=service.as_user(user))
    assert portrait.status_code == 200
    assert portrait.headers["content-type"].startswith("image/svg+xml")
    assert portrait.content.startswith(b"<svg") and event.species.encode() in portrait.content


async def test_a_persona_that_is_invalid_json_twice_fails_retryably_and_nothing_is_stored(
    service: Service, stub: StubControl
) -> None:
    stub.script(malformed_json=True, times=2)
    user = uuid.uuid4()
    request = await service.spin(user, sex="agender", species="void walker", archetype="quantum gambler")
    event = await service.outcome(request.request_id)
    assert isinstance(event, CharacterFailed)
    assert event.retryable is True and event.user_id == user and event.reason
    calls = persona_calls(stub, "agender", "void walker", "quantum gambler")
    assert len(calls) == 2  # the reply, and the one repair that was refused too
    assert "not valid" in calls[1]["messages"][-1]["content"]
    assert sql(service.schema, "SELECT count(*) FROM characters WHERE owner_user_id = %s", user) == [(0,)]
    assert sql(
        service.schema,
        "SELECT count(*) FROM portraits p JOIN characters c ON c.id = p.character_id WHERE c.owner_user_id = %s",
        user,
    ) == [(0,)]
    assert sql(
        service.schema, "SELECT status, retryable FROM spin_requests WHERE request_id = %s", request.request_id
    ) == [("failed", True)]


async def test_an_unknown_pinned_trait_fails_the_spin_without_retry(service: Service, stub: StubControl) -> None:
    request = await service.spin(uuid.uuid4(), archetype="tax auditor")
    event = await service.outcome(request.request_id)
    assert isinstance(event, CharacterFailed) and event.retryable is False
    assert "tax auditor" in event.reason
    assert not [r for r in stub.chat_requests() if "tax auditor" in str(r.get("messages"))]


async def test_a_redelivered_spin_publishes_nothing_new(service: Service, stub: StubControl) -> None:
    user = uuid.uuid4()
    traits = {"sex": "tri-gendered", "species": "coral Polypoid", "archetype": "terraformer"}
    request = await service.spin(user, **traits)
    first = await service.outcome(request.request_id)
    # The same request again (a redelivery, and a re-publish with a new event id), then a sentinel spin of
    # the same user: its key keeps it behind the duplicates, so once it is handled they were too.
    await publish(service.producer, request)
    await publish(service.producer, request.model_copy(update={"event_id": uuid.uuid4()}))
    await service.spin_created(user)
    assert [e for e in service.events.created if e.character_id == first.character_id] == [first]
    assert sql(service.schema, "SELECT count(*) FROM characters WHERE request_id = %s", request.request_id) == [(1,)]
    assert len(persona_calls(stub, **traits)) == 1


async def test_a_slow_persona_for_one_user_does_not_hold_up_other_users(service: Service, stub: StubControl) -> None:
    stub.script(ttft_ms=4_000)  # the next persona request takes four seconds
    traits = {"sex": "hermaphroditic", "species": "star-born Solarian", "archetype": "comet courier"}
    slow = await service.spin(uuid.uuid4(), **traits)
    deadline = time.monotonic() + 20
    while not persona_calls(stub, **traits):
        assert time.monotonic() < deadline, "the slow spin never reached the LLM"
        await asyncio.sleep(0.05)
    started = time.monotonic()
    fast = await service.spin_created(uuid.uuid4())
    assert time.monotonic() - started < 3.5
    assert await service.recorded(slow.request_id) is None, "the slow spin finished first: nothing ran concurrently"
    assert isinstance(await service.outcome(slow.request_id), CharacterCreated)
    assert fast.request_id != slow.request_id


async def test_spins_of_many_users_all_complete(service: Service, stub: StubControl) -> None:
    requests: list[CharacterRequested] = [await service.spin(uuid.uuid4()) for _ in range(10)]
    outcomes: list[Any] = await asyncio.gather(*(service.outcome(r.request_id) for r in requests))
    assert all(isinstance(o, CharacterCreated) for o in outcomes)
    assert len({o.character_id for o in outcomes}) == 10
