"""Deleted conversations and erased users: what came from them leaves the dossier service."""

from __future__ import annotations

from uuid import UUID, uuid4

import psycopg
import pytest

from orrery_shared.events import ConversationDeleted, UserErased

from .conftest import Service, StartService, eventually, merged, turn
from .test_api import create

pytestmark = pytest.mark.integration

# Turns wait: nothing is extracted while these tests look at what is pending.
WAITING = {"extract_score": 1_000.0, "max_pending_turns": 1_000}
STORY = "Mara the smuggler flees Titan with the stolen star map of Oberon."


def count(url: str, schema: str, sql: str, *params: object) -> int:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute(f"SET search_path TO {schema}")
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])


def waiting(scratch: tuple[str, str], conversation: UUID) -> int:
    return count(*scratch, "SELECT count(*) FROM pending_turns WHERE conversation_id = %s", conversation)


def deleted(user: UUID, conversation: UUID, project: UUID, orphaned: bool) -> ConversationDeleted:
    return ConversationDeleted(
        conversation_id=conversation, user_id=user, project_id=project, project_orphaned=orphaned
    )


async def keep_turn(service: Service, scratch: tuple[str, str], user: UUID, project: UUID, conversation: UUID) -> None:
    before = waiting(scratch, conversation)
    await service.publish(turn(user, project, STORY, conversation_id=conversation))

    async def kept() -> bool:
        return waiting(scratch, conversation) > before

    await eventually(kept)


async def test_deleting_the_only_conversation_of_a_project_deletes_its_dossier(
    start_service: StartService, scratch_schema: tuple[str, str]
) -> None:
    user, project, conversation = uuid4(), uuid4(), uuid4()
    async with start_service(**WAITING) as service:
        await create(service, user, project)
        await keep_turn(service, scratch_schema, user, project, conversation)
        event = deleted(user, conversation, project, orphaned=True)
        await service.publish(event)
        await service.publish(event)  # redelivered

        async def gone() -> bool:
            return await service.dossier(user, project) is None

        await eventually(gone)
        assert waiting(scratch_schema, conversation) == 0
        assert count(*scratch_schema, "SELECT count(*) FROM dossier_versions WHERE project_id = %s", project) == 0


async def test_deleting_one_of_a_projects_conversations_drops_its_turns_and_refuses_its_late_ones(
    start_service: StartService, scratch_schema: tuple[str, str]
) -> None:
    user, project, kept, dropped = uuid4(), uuid4(), uuid4(), uuid4()
    async with start_service(**WAITING) as service:
        await create(service, user, project)
        await keep_turn(service, scratch_schema, user, project, kept)
        await keep_turn(service, scratch_schema, user, project, dropped)
        await service.publish(deleted(user, dropped, project, orphaned=False))

        async def dropped_turns() -> bool:
            return waiting(scratch_schema, dropped) == 0

        await eventually(dropped_turns)
        assert waiting(scratch_schema, kept) == 1
        assert await service.dossier(user, project) is not None
        pending = count(*scratch_schema, "SELECT pending_count FROM dossiers WHERE project_id = %s", project)
        assert pending == 1  # the schedule counts only what still waits

        # A turn of the deleted conversation that reaches the service late is not kept; others still are.
        await service.publish(turn(user, project, STORY + " Again.", conversation_id=dropped))
        await keep_turn(service, scratch_schema, user, project, kept)
        assert waiting(scratch_schema, dropped) == 0


async def test_a_conversation_named_as_orphan_does_not_delete_another_users_project(
    start_service: StartService, scratch_schema: tuple[str, str]
) -> None:
    owner, other, project = uuid4(), uuid4(), uuid4()
    async with start_service(**WAITING) as service:
        await create(service, owner, project)
        conversation = uuid4()
        await service.publish(deleted(other, conversation, project, orphaned=True))
        tombstones = "SELECT count(*) FROM forgotten_conversations WHERE conversation_id = %s"

        async def handled() -> bool:
            return count(*scratch_schema, tombstones, conversation) == 1

        await eventually(handled)
        assert await service.dossier(owner, project) is not None


async def test_erasing_a_user_deletes_their_dossiers_versions_turns_and_merges_only(
    start_service: StartService, scratch_schema: tuple[str, str]
) -> None:
    user, guest, bystander = uuid4(), uuid4(), uuid4()
    project, guest_project, their_project = uuid4(), uuid4(), uuid4()
    async with start_service(**WAITING) as service:
        await create(service, user, project)
        await create(service, guest, guest_project)
        await create(service, bystander, their_project)
        await keep_turn(service, scratch_schema, user, project, uuid4())
        await service.publish(merged(guest, user))

        async def merged_in() -> bool:
            return await service.dossier(user, guest_project) is not None

        await eventually(merged_in)
        event = UserErased(user_id=user, merged_user_ids=[guest])
        await service.publish(event)
        await service.publish(event)  # redelivered

        async def erased() -> bool:
            owned = "SELECT count(*) FROM dossiers WHERE user_id = ANY(%s)"
            return count(*scratch_schema, owned, [user, guest]) == 0

        await eventually(erased)
        for table, column in (("dossier_versions", "project_id"), ("pending_turns", "project_id")):
            rows = count(
                *scratch_schema, f"SELECT count(*) FROM {table} WHERE {column} = ANY(%s)", [project, guest_project]
            )
            assert rows == 0, table
        merges = "SELECT count(*) FROM merged_users WHERE from_user_id = ANY(%s) OR to_user_id = ANY(%s)"
        assert count(*scratch_schema, merges, [user, guest], [user, guest]) == 0
        assert await service.dossier(bystander, their_project) is not None


async def test_a_regenerated_reply_replaces_the_turn_it_leaves_among_those_waiting(
    start_service: StartService, scratch_schema: tuple[str, str]
) -> None:
    user, project, conversation = uuid4(), uuid4(), uuid4()
    async with start_service(**WAITING) as service:
        await create(service, user, project)
        first = turn(user, project, STORY, conversation_id=conversation)
        await service.publish(first)

        async def kept() -> bool:
            return count(*scratch_schema, "SELECT count(*) FROM pending_turns WHERE turn_id = %s", first.turn_id) == 1

        await eventually(kept)
        retold = turn(user, project, STORY, "Mara hides the star map in the ice of Oberon.", conversation)
        regenerated = retold.model_copy(update={"mode": "regenerate", "replaced_turn_ids": [first.turn_id]})
        await service.publish(regenerated)

        async def replaced() -> bool:
            ids = count(*scratch_schema, "SELECT count(*) FROM pending_turns WHERE turn_id = %s", first.turn_id)
            return ids == 0 and waiting(scratch_schema, conversation) == 1

        await eventually(replaced)
