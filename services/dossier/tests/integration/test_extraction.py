"""Completed turns on the real broker become a versioned dossier through few, scripted extraction calls."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest
from prometheus_client import REGISTRY

from orrery_shared.events import ChatTurnCompleted
from tests.support.llm_stub import StubControl

from .conftest import StartService, eventually, extraction_reply, turn

pytestmark = pytest.mark.integration


def extraction_requests(stub: StubControl) -> list[dict[str, object]]:
    return [r for r in stub.chat_requests() if "dossier" in str(r["messages"][0]["content"])]


def prompt_of(request: dict[str, object]) -> str:
    messages = request["messages"]
    assert isinstance(messages, list)
    return str(messages[-1]["content"])


def turns_counted(decision: str) -> float:
    return REGISTRY.get_sample_value("orrery_dossier_turns_total", {"decision": decision}) or 0.0


async def test_a_scripted_conversation_yields_a_merged_dossier_with_incrementing_versions_and_events(
    start_service: StartService, llm_stub: StubControl
) -> None:
    user, project = uuid4(), uuid4()
    llm_stub.script(
        extraction_reply(
            title="The Titan Run",
            characters=[
                {
                    "name": "Mara",
                    "description": "A smuggler who grew up on Titan.",
                    "relationships": ["Sister of Lena"],
                    "character_arc": "",
                },
                {"name": "Lena", "description": "Mara's sister.", "relationships": [], "character_arc": ""},
                {"name": "Oberon", "description": "Rules the Glass City.", "relationships": [], "character_arc": ""},
            ],
            themes=["Betrayal"],
            locations=["Titan", "Glass City"],
            plot_points=["Lena betrays Mara during the war."],
        ),
        extraction_reply(
            characters=[
                {
                    "name": "  MARA ",
                    "description": "Plans to overthrow Oberon.",
                    "relationships": ["sister of lena", "Leader of the Europa crew"],
                    "character_arc": "From smuggler to rebel leader.",
                },
                {"name": "lena", "description": "Regrets the betrayal.", "relationships": [], "character_arc": ""},
            ],
            themes=["betrayal", "Redemption"],
            locations=["Europa", "titan"],
            plot_points=["Mara plots to overthrow Oberon.", "The sisters meet again on Europa."],
        ),
    )
    async with start_service() as service:
        first = [
            turn(user, project, "My protagonist is Mara, a smuggler who grew up on Titan."),
            turn(user, project, "Her sister Lena betrayed her during the war."),
            turn(user, project, "ok lol"),
            turn(user, project, "The villain is called Oberon and he rules the Glass City."),
        ]
        for event in first:
            await service.publish(event)
        v1 = await service.wait_for_version(user, project, 1)
        assert len(extraction_requests(llm_stub)) == 1
        prompt = prompt_of(extraction_requests(llm_stub)[0])
        assert "Mara, a smuggler" in prompt and "Glass City" in prompt and "ok lol" not in prompt
        assert v1["title"] == "The Titan Run"

        second = [
            turn(user, project, "Mara is secretly planning to overthrow Oberon with help from her old crew on Europa."),
            turn(user, project, "Lena regrets the betrayal and wants to find Mara again."),
            turn(user, project, "In the final chapter they meet again on Europa."),
        ]
        for event in second:
            await service.publish(event)
        v2 = await service.wait_for_version(user, project, 2)

        snapshot = v2["snapshot_json"]
        assert [c["name"] for c in snapshot["characters"]] == ["Mara", "Lena", "Oberon"]
        mara = snapshot["characters"][0]
        assert mara["description"] == "A smuggler who grew up on Titan. Plans to overthrow Oberon."
        assert mara["relationships"] == ["Sister of Lena", "Leader of the Europa crew"]
        assert mara["character_arc"] == "From smuggler to rebel leader."
        assert snapshot["themes"] == ["Betrayal", "Redemption"]
        assert snapshot["locations"] == ["Titan", "Glass City", "Europa"]
        assert snapshot["plot_points"][-1] == "The sisters meet again on Europa."
        assert len(extraction_requests(llm_stub)) == 2  # seven turns, two calls

        versions = (await service.http.get(f"/dossiers/{project}/versions", headers=service.auth(user))).json()
        assert [(v["version"], v["source"]) for v in versions] == [(2, "extraction"), (1, "extraction")]
        assert versions[0]["turn_ids"] == [str(e.turn_id) for e in second]
        assert versions[1]["turn_ids"] == [str(e.turn_id) for e in (first[0], first[1], first[3])]

        events = await eventually(lambda: _two_updates(service, project))
        assert [(e.version, e.user_id, e.source) for e in events] == [(1, user, "extraction"), (2, user, "extraction")]
        assert events[1].snapshot.model_dump() == snapshot
        assert set(events[1].changed_sections) == {"characters", "themes", "locations", "plot_points"}
        assert events[1].correlation_id == str(second[-1].turn_id)


async def _two_updates(service: object, project: object) -> list[object] | None:
    found = await service.updates.for_project(project)  # type: ignore[attr-defined]
    return found if len(found) >= 2 else None


async def test_a_run_of_trivial_turns_triggers_no_extraction_call(
    start_service: StartService, llm_stub: StubControl
) -> None:
    user, project = uuid4(), uuid4()
    chatter = [
        "ok",
        "lol",
        "hi!",
        "hello :)",
        "👍",
        "😂😂",
        "thanks",
        "haha nice",
        "cool",
        "yes",
        "tell me more",
        "wow",
    ]
    before = turns_counted("trivial")
    # Every waiting turn would be extracted after a second, and a dozen would be extracted at once.
    async with start_service(max_wait_seconds=1, max_pending_turns=5) as service:
        for text in chatter * 2:
            await service.publish(turn(user, project, text, "A long in-character reply about Zorblax of Kepler."))

        async def absorbed() -> bool:
            return turns_counted("trivial") - before >= len(chatter) * 2

        await eventually(absorbed)
        await asyncio.sleep(2.0)  # past the waiting limit and several worker polls
        assert llm_stub.chat_requests() == []
        assert await service.dossier(user, project) is None


async def test_pending_turns_survive_an_llm_outage_and_are_extracted_when_it_returns(
    start_service: StartService, llm_stub: StubControl
) -> None:
    user, project = uuid4(), uuid4()
    llm_stub.script(
        {"status": 500, "times": 3, "error_message": "provider down"},
        extraction_reply(
            characters=[{"name": "Vex", "description": "A pilot.", "relationships": [], "character_arc": ""}]
        ),
    )
    async with start_service(llm_overrides={"max_attempts": 1}) as service:
        events = [
            turn(user, project, "My hero is Vex, a pilot who was born on Mars."),
            turn(user, project, "Vex's brother Kade stole the ship during the war."),
            turn(user, project, "The story ends with a trial on Ganymede."),
        ]
        for event in events:
            await service.publish(event)
        body = await service.wait_for_version(user, project, 1)
        assert [c["name"] for c in body["snapshot_json"]["characters"]] == ["Vex"]
        assert len(llm_stub.chat_requests()) == 4  # three failures, then the answer
        versions = (await service.http.get(f"/dossiers/{project}/versions", headers=service.auth(user))).json()
        assert versions[0]["turn_ids"] == [str(e.turn_id) for e in events]
        assert (
            REGISTRY.get_sample_value(
                "orrery_events_dead_lettered_total", {"topic": ChatTurnCompleted.TOPIC, "reason": "handler_failed"}
            )
            or 0.0
        ) == 0.0


async def test_turns_that_waited_too_long_are_extracted_even_below_the_signal_threshold(
    start_service: StartService, llm_stub: StubControl
) -> None:
    user, project = uuid4(), uuid4()
    other_conversation = uuid4()
    llm_stub.script(extraction_reply(locations=["The Rusty Anchor"]))
    async with start_service(max_wait_seconds=1.5) as service:
        first = turn(user, project, "We could meet at the Rusty Anchor tavern.")
        second = turn(
            user, project, "The harbour smells of salt, tar and old rope.", conversation_id=other_conversation
        )
        await service.publish(first)
        await service.publish(first)  # a redelivery changes nothing
        await service.publish(second)
        body = await service.wait_for_version(user, project, 1, seconds=15)
        assert body["snapshot_json"]["locations"] == ["The Rusty Anchor"]
        versions = (await service.http.get(f"/dossiers/{project}/versions", headers=service.auth(user))).json()
        assert sorted(versions[0]["turn_ids"]) == sorted([str(first.turn_id), str(second.turn_id)])
        assert len(llm_stub.chat_requests()) == 1


async def test_a_users_edit_survives_the_next_extraction(start_service: StartService, llm_stub: StubControl) -> None:
    user, project = uuid4(), uuid4()
    llm_stub.script(
        extraction_reply(
            characters=[
                {"name": "Mara", "description": "A smuggler.", "relationships": [], "character_arc": ""},
                {"name": "Bob", "description": "A cook.", "relationships": [], "character_arc": ""},
            ],
            themes=["Greed", "Trust"],
        ),
        extraction_reply(
            characters=[
                {"name": "Bob", "description": "A cook with a secret.", "relationships": [], "character_arc": ""},
                {
                    "name": "mara",
                    "description": "A ruthless smuggler.",
                    "relationships": ["Friend of Tom"],
                    "character_arc": "",
                },
            ],
            themes=["greed", "Hope"],
            locations=["Port Vell"],
        ),
    )
    async with start_service() as service:
        for text in (
            "My protagonist is Mara, a smuggler.",
            "Her cook Bob has a secret about the war.",
            "The story is about greed and trust.",
        ):
            await service.publish(turn(user, project, text))
        v1 = await service.wait_for_version(user, project, 1)

        edited = {
            "characters": [{"name": "Mara", "description": "A retired pilot who hates smuggling."}],
            "themes": ["Trust"],
        }
        response = await service.http.put(
            f"/dossiers/{project}", json={"snapshot_json": edited, "version": v1["version"]}, headers=service.auth(user)
        )
        assert response.status_code == 200, response.text
        assert response.json()["version"] == 2

        for text in (
            "Bob returns to Port Vell with a stolen map.",
            "Mara meets her old friend Tom at the harbour.",
            "The story ends with hope for the crew.",
        ):
            await service.publish(turn(user, project, text))
        v3 = await service.wait_for_version(user, project, 3)

        snapshot = v3["snapshot_json"]
        assert [c["name"] for c in snapshot["characters"]] == ["Mara"]
        assert snapshot["characters"][0]["description"] == "A retired pilot who hates smuggling."
        assert snapshot["characters"][0]["relationships"] == ["Friend of Tom"]
        assert snapshot["themes"] == ["Trust", "Hope"]
        assert snapshot["locations"] == ["Port Vell"]
        # The model saw the edited dossier, not the one it produced itself.
        assert "A retired pilot" in prompt_of(extraction_requests(llm_stub)[-1])
        versions = (await service.http.get(f"/dossiers/{project}/versions", headers=service.auth(user))).json()
        assert [v["source"] for v in versions] == ["extraction", "user", "extraction"]
