"""Refresh tokens: opaque, stored hashed, rotated on every use; a replayed one ends its whole family."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from tests.support.infra import Infra
from tests.support.smtp import SmtpServer

from .conftest import Schema, sign_in, sql, unique_email

pytestmark = pytest.mark.integration


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/auth/refresh", json={"refresh_token": token})


@pytest.fixture
async def session(client: httpx.AsyncClient, smtp_mailbox: SmtpServer) -> dict[str, Any]:
    return await sign_in(client, smtp_mailbox, unique_email("refresh"), "Refresher")


async def test_a_refresh_rotates_the_token_and_issues_a_new_access_token(
    client: httpx.AsyncClient, session: dict[str, Any]
) -> None:
    response = await refresh(client, session["refresh_token"])
    assert response.status_code == 200
    renewed = response.json()
    assert renewed["refresh_token"] != session["refresh_token"]
    assert renewed["access_token"] != session["access_token"]
    assert renewed["user"]["id"] == session["user"]["id"]
    me = await client.get("/me", headers={"Authorization": f"Bearer {renewed['access_token']}"})
    assert me.status_code == 200


async def test_refresh_tokens_are_stored_only_as_hashes(
    infra: Infra, auth_schema: Schema, session: dict[str, Any]
) -> None:
    token = session["refresh_token"]
    stored = sql(
        infra,
        auth_schema,
        "SELECT count(*) FROM refresh_tokens WHERE token_hash = %s",
        hashlib.sha256(token.encode()).digest(),
    )
    assert stored == [(1,)]
    assert token not in str(sql(infra, auth_schema, "SELECT * FROM refresh_tokens"))


async def test_a_reused_rotated_refresh_token_is_refused_and_revokes_the_whole_family(
    client: httpx.AsyncClient, session: dict[str, Any]
) -> None:
    first = session["refresh_token"]
    second = (await refresh(client, first)).json()["refresh_token"]
    third = (await refresh(client, second)).json()["refresh_token"]

    reuse = await refresh(client, first)
    assert reuse.status_code == 401
    assert reuse.json()["error"]["code"] == "refresh_token_reused"

    newest = await refresh(client, third)
    assert newest.status_code == 401
    assert newest.json()["error"]["code"] == "refresh_token_revoked"


async def test_other_sessions_of_the_same_user_survive_a_revoked_family(
    client: httpx.AsyncClient, smtp_mailbox: SmtpServer
) -> None:
    email = unique_email("two-devices")
    laptop = await sign_in(client, smtp_mailbox, email)
    phone = await sign_in(client, smtp_mailbox, email)
    await refresh(client, laptop["refresh_token"])
    await refresh(client, laptop["refresh_token"])  # replay: the laptop's family ends
    assert (await refresh(client, phone["refresh_token"])).status_code == 200


async def test_logout_revokes_the_family_of_the_refresh_token(
    client: httpx.AsyncClient, session: dict[str, Any]
) -> None:
    rotated = (await refresh(client, session["refresh_token"])).json()["refresh_token"]
    response = await client.post("/auth/logout", json={"refresh_token": rotated})
    assert response.status_code == 204
    after = await refresh(client, rotated)
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "refresh_token_revoked"


async def test_logout_with_an_unknown_token_is_a_quiet_204(client: httpx.AsyncClient) -> None:
    assert (await client.post("/auth/logout", json={"refresh_token": "nope"})).status_code == 204


async def test_an_unknown_refresh_token_is_refused_with_401_refresh_token_invalid(client: httpx.AsyncClient) -> None:
    response = await refresh(client, "made-up")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "refresh_token_invalid"


async def test_an_expired_refresh_token_is_refused_with_401_refresh_token_expired(
    infra: Infra, auth_schema: Schema, client: httpx.AsyncClient, session: dict[str, Any]
) -> None:
    digest = hashlib.sha256(session["refresh_token"].encode()).digest()
    sql(
        infra,
        auth_schema,
        "UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = %s",
        digest,
    )
    response = await refresh(client, session["refresh_token"])
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "refresh_token_expired"
