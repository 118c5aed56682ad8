"""Erasing an account: its rows leave the auth schema, its tokens are refused, every service is told."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx
import pytest
from redis.asyncio import Redis

from orrery_shared.auth.revoked import is_revoked
from orrery_shared.events import UserErased
from tests.support.infra import Infra
from tests.support.smtp import SmtpServer

from .conftest import KafkaTail, RunningService, Schema, sign_in, sql, unique_email
from .test_guests import bearer, start_guest

pytestmark = pytest.mark.integration


def rows_of(infra: Infra, schema: Schema, user_ids: list[UUID], email: str) -> dict[str, int]:
    ids = [str(u) for u in user_ids]
    queries = {
        "users": ("SELECT count(*) FROM users WHERE id = ANY(%s::uuid[]) OR email = %s", (ids, email)),
        "refresh_families": ("SELECT count(*) FROM refresh_families WHERE user_id = ANY(%s::uuid[])", (ids,)),
        "magic_links": (
            "SELECT count(*) FROM magic_links WHERE guest_id = ANY(%s::uuid[]) OR email = %s",
            (ids, email),
        ),
    }
    return {table: sql(infra, schema, query, *params)[0][0] for table, (query, params) in queries.items()}


async def test_erasing_an_account_deletes_it_and_its_merged_guest_refuses_its_tokens_and_tells_every_service(
    infra: Infra, client: httpx.AsyncClient, smtp_mailbox: SmtpServer, auth_service: RunningService, auth_schema: Schema
) -> None:
    guest = await start_guest(client)
    email = unique_email("erased")
    account: dict[str, Any] = await sign_in(client, smtp_mailbox, email, "Leaving", headers=bearer(guest))
    bystander = await start_guest(client)
    user_id, guest_id = UUID(account["user"]["id"]), UUID(guest["user"]["id"])
    assert rows_of(infra, auth_schema, [user_id, guest_id], email)["users"] == 2

    async with KafkaTail(infra.kafka_bootstrap, UserErased) as tail:
        erased = await client.delete("/me", headers=bearer(account))
        assert erased.status_code == 204, erased.text
        event = await tail.first(lambda e: e.user_id == user_id)
    assert event.merged_user_ids == [guest_id]

    assert rows_of(infra, auth_schema, [user_id, guest_id], email) == {
        "users": 0,
        "refresh_families": 0,
        "magic_links": 0,
    }
    redis = Redis.from_url(infra.redis_url)
    try:
        assert await is_revoked(redis, user_id) and await is_revoked(redis, guest_id)
        assert not await is_revoked(redis, UUID(bystander["user"]["id"]))
    finally:
        await redis.aclose()
    refreshed = await client.post("/auth/refresh", json={"refresh_token": account["refresh_token"]})
    assert refreshed.status_code == 401
    assert (await client.get("/me", headers=bearer(account))).status_code == 401
    again = await client.delete("/me", headers=bearer(account))
    assert again.status_code == 401 and again.json()["error"]["code"] == "user_not_found"
    assert (await client.get("/me", headers=bearer(bystander))).status_code == 200


async def test_erasing_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.delete("/me")
    assert response.status_code == 401
