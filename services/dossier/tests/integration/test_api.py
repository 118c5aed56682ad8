"""The dossier HTTP API: scoped by the verified caller, validated, and never losing an update."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID, uuid4

import pytest

from .conftest import Service, StartService, eventually, merged, turn

pytestmark = pytest.mark.integration

SNAPSHOT = {
    "characters": [{"name": "Mara", "description": "A smuggler.", "relationships": ["Sister of Lena"]}],
    "themes": ["Trust"],
    "locations": ["Titan"],
    "plot_points": ["Mara steals the map."],
}


async def create(service: Service, user: UUID, project: UUID, **body: Any) -> dict[str, Any]:
    response = await service.http.post(
        f"/dossiers/{project}", json={"snapshot_json": SNAPSHOT, **body}, headers=service.auth(user)
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_a_dossier_is_created_listed_read_replaced_and_deleted(start_service: StartService) -> None:
    user, project = uuid4(), uuid4()
    async with start_service() as service:
        created = await create(service, user, project, title="The Titan Run")
        assert (created["version"], created["title"], created["snapshot_json"]["themes"]) == (
            1,
            "The Titan Run",
            ["Trust"],
        )

        again = await service.http.post(
            f"/dossiers/{project}", json={"snapshot_json": SNAPSHOT}, headers=service.auth(user)
        )
        assert again.status_code == 409 and again.json()["error"]["code"] == "exists"

        listing = (await service.http.get("/dossiers", headers=service.auth(user))).json()
        assert [(d["project_id"], d["title"], d["character_count"], d["theme_count"]) for d in listing] == [
            (str(project), "The Titan Run", 1, 1)
        ]

        replaced = await service.http.put(
            f"/dossiers/{project}",
            json={"snapshot_json": {**SNAPSHOT, "themes": ["Trust", "Hope"]}, "version": 1},
            headers=service.auth(user),
        )
        assert replaced.status_code == 200 and replaced.json()["version"] == 2
        assert (await service.dossier(user, project) or {})["snapshot_json"]["themes"] == ["Trust", "Hope"]

        versions = (await service.http.get(f"/dossiers/{project}/versions", headers=service.auth(user))).json()
        assert [(v["version"], v["source"], v["turn_ids"]) for v in versions] == [(2, "user", []), (1, "user", [])]
        assert versions[0]["changed_sections"] == ["themes"]
        first = (await service.http.get(f"/dossiers/{project}/versions/1", headers=service.auth(user))).json()
        assert first["snapshot_json"]["themes"] == ["Trust"]

        updates = await eventually(lambda: _at_least(service, project, 2))
        assert [(u.version, u.source, u.changed_sections) for u in updates] == [
            (1, "user", ["characters", "themes", "locations", "plot_points"]),
            (2, "user", ["themes"]),
        ]

        deleted = await service.http.delete(f"/dossiers/{project}", headers=service.auth(user))
        assert deleted.status_code == 204
        assert await service.dossier(user, project) is None
        assert (await service.http.get("/dossiers", headers=service.auth(user))).json() == []


async def _at_least(service: Service, project: UUID, count: int) -> list[Any] | None:
    found = await service.updates.for_project(project)
    return found if len(found) >= count else None


async def test_two_concurrent_puts_with_the_same_version_one_succeeds_and_one_conflicts(
    start_service: StartService,
) -> None:
    user, project = uuid4(), uuid4()
    async with start_service() as service:
        await create(service, user, project)
        for round_ in range(5):
            version = round_ + 1

            async def put(theme: str, version: int = version) -> Any:
                body = {"snapshot_json": {**SNAPSHOT, "themes": [theme]}, "version": version}
                return await service.http.put(f"/dossiers/{project}", json=body, headers=service.auth(user))

            left, right = await asyncio.gather(put(f"left {round_}"), put(f"right {round_}"))
            assert sorted([left.status_code, right.status_code]) == [200, 409]
            winner, loser = (left, right) if left.status_code == 200 else (right, left)
            assert winner.json()["version"] == version + 1
            error = loser.json()["error"]
            assert error["code"] == "version_conflict"
            assert error["current_version"] == version + 1
            current = await service.dossier(user, project)
            assert (
                current is not None and current["snapshot_json"]["themes"] == winner.json()["snapshot_json"]["themes"]
            )


async def test_another_users_dossier_is_not_found_and_never_shown(start_service: StartService) -> None:
    owner, stranger, project = uuid4(), uuid4(), uuid4()
    async with start_service() as service:
        await create(service, owner, project)
        headers = service.auth(stranger)
        answers = [
            await service.http.get(f"/dossiers/{project}", headers=headers),
            await service.http.put(f"/dossiers/{project}", json={"snapshot_json": {}, "version": 1}, headers=headers),
            await service.http.delete(f"/dossiers/{project}", headers=headers),
            await service.http.get(f"/dossiers/{project}/versions", headers=headers),
            await service.http.get(f"/dossiers/{project}/versions/1", headers=headers),
            await service.http.post(f"/dossiers/{project}", json={"snapshot_json": {}}, headers=headers),
        ]
        for answer in answers:
            assert answer.status_code == 404, answer.text
            assert answer.json() == {"error": {"code": "not_found", "message": answer.json()["error"]["message"]}}
            assert "Mara" not in answer.text
        assert (await service.http.get("/dossiers", headers=headers)).json() == []
        assert (await service.dossier(owner, project) or {})["version"] == 1

        anonymous = await service.http.get(f"/dossiers/{project}")
        assert anonymous.status_code == 401
        forged = await service.http.get(f"/dossiers/{project}", headers={"Authorization": "Bearer not.a.token"})
        assert forged.status_code == 401


INVALID_BODIES: list[tuple[dict[str, Any], list[str]]] = [
    ({"version": 1}, ["body", "snapshot_json"]),
    ({"snapshot_json": SNAPSHOT}, ["body", "version"]),
    ({"snapshot_json": SNAPSHOT, "version": 0}, ["body", "version"]),
    ({"snapshot_json": {"characters": [{"description": "no name"}]}, "version": 1}, ["characters", "0", "name"]),
    ({"snapshot_json": {"characters": [{"name": "   "}]}, "version": 1}, ["characters", "0", "name"]),
    ({"snapshot_json": {"characters": [{"name": "x" * 201}]}, "version": 1}, ["characters", "0", "name"]),
    ({"snapshot_json": {"themes": "Trust"}, "version": 1}, ["snapshot_json", "themes"]),
    ({"snapshot_json": {"themes": ["t" * 1001]}, "version": 1}, ["snapshot_json", "themes", "0"]),
    ({"snapshot_json": {"plot_points": ["p"] * 1001}, "version": 1}, ["snapshot_json", "plot_points"]),
    ({"snapshot_json": {"mood": "dark"}, "version": 1}, ["snapshot_json", "mood"]),
    (
        {"snapshot_json": {"characters": [{"name": "Mara"}, {"name": " mara "}]}, "version": 1},
        ["snapshot_json", "characters"],
    ),
]


async def test_invalid_snapshot_bodies_are_422_with_field_errors(start_service: StartService) -> None:
    user, project = uuid4(), uuid4()
    async with start_service() as service:
        await create(service, user, project)
        for body, where in INVALID_BODIES:
            response = await service.http.put(f"/dossiers/{project}", json=body, headers=service.auth(user))
            assert response.status_code == 422, (where, response.text)
            error = response.json()["error"]
            assert error["code"] == "invalid"
            locations = [field["loc"] for field in error["fields"]]
            assert any(_contains(loc, where) for loc in locations), (where, locations)
        assert (await service.dossier(user, project) or {})["version"] == 1


def _contains(loc: list[str], part: list[str]) -> bool:
    return any(loc[i : i + len(part)] == part for i in range(len(loc) - len(part) + 1))


async def test_bad_ids_and_oversized_bodies_are_refused_before_any_work(start_service: StartService) -> None:
    user = uuid4()
    async with start_service(max_body_bytes=10_000) as service:
        bad_id = await service.http.get("/dossiers/not-a-uuid", headers=service.auth(user))
        assert bad_id.status_code == 422 and bad_id.json()["error"]["fields"][0]["loc"] == ["path", "project_id"]
        huge = {"snapshot_json": {"themes": ["x" * 900] * 20}}
        too_large = await service.http.post(f"/dossiers/{uuid4()}", json=huge, headers=service.auth(user))
        assert too_large.status_code == 413 and too_large.json()["error"]["code"] == "too_large"
        beyond_int = await service.http.get(f"/dossiers/{uuid4()}/versions/2147483648", headers=service.auth(user))
        assert beyond_int.status_code == 422 and beyond_int.json()["error"]["code"] == "invalid"


async def test_text_postgres_cannot_store_is_a_422_naming_the_field(start_service: StartService) -> None:
    user, project = uuid4(), uuid4()
    async with start_service() as service:
        await create(service, user, project)
        body = {"snapshot_json": {**SNAPSHOT, "themes": ["Trust", "Ho\x00pe"]}, "version": 1}
        response = await service.http.put(f"/dossiers/{project}", json=body, headers=service.auth(user))
        assert response.status_code == 422, response.text
        assert response.json()["error"]["message"].startswith("snapshot_json.themes[1]")
        assert (await service.dossier(user, project) or {})["version"] == 1


async def test_a_guest_merge_reowns_the_guests_dossiers_once_and_for_turns_still_in_flight(
    start_service: StartService, llm_stub: Any
) -> None:
    guest, account, project, late_project = uuid4(), uuid4(), uuid4(), uuid4()
    llm_stub.script(
        {"content": '{"title": null, "characters": [], "themes": ["Exile"], "locations": [], "plot_points": []}'}
    )
    async with start_service(max_wait_seconds=1) as service:
        await create(service, guest, project)
        event = merged(guest, account)
        await service.publish(event)
        await service.publish(event)  # redelivered
        await service.publish(merged(guest, account))  # the same merge told twice

        async def moved() -> bool:
            return await service.dossier(account, project) is not None

        await eventually(moved)
        assert await service.dossier(guest, project) is None
        listing = (await service.http.get("/dossiers", headers=service.auth(account))).json()
        assert [d["project_id"] for d in listing] == [str(project)]

        # A turn the guest finished before the merge reached chat still lands in the account's dossier.
        await service.publish(turn(guest, late_project, "My hero was exiled from the Moon Court."))
        body = await service.wait_for_version(account, late_project, 1, seconds=15)
        assert body["user_id"] == str(account)
        assert body["snapshot_json"]["themes"] == ["Exile"]
