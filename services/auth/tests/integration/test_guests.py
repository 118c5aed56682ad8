"""Guests: anonymous users with sessions, folded into an account when they complete a magic link."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx
import jwt
import pytest

from orrery_shared.events import UserMerged, UserRegistered
from tests.support.infra import Infra
from tests.support.smtp import SmtpServer

from .conftest import KafkaTail, link_token, sign_in, unique_email

pytestmark = pytest.mark.integration


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def start_guest(client: httpx.AsyncClient, **body: str) -> dict[str, Any]:
    response = await client.post("/auth/guest", json=body or None)
    assert response.status_code == 201, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


async def test_a_guest_gets_a_session_and_is_announced_as_a_guest(infra: Infra, client: httpx.AsyncClient) -> None:
    async with KafkaTail(infra.kafka_bootstrap, UserRegistered) as tail:
        guest = await start_guest(client, username="Wanderer")
        event = await tail.first(lambda e: str(e.user_id) == guest["user"]["id"])
    assert event.is_guest is True
    assert event.email is None
    assert event.username == "Wanderer"
    assert jwt.decode(guest["access_token"], options={"verify_signature": False})["guest"] is True
    me = await client.get("/me", headers=bearer(guest))
    assert me.json()["is_guest"] is True
    assert me.json()["email"] is None


async def test_a_guest_without_a_name_gets_one(client: httpx.AsyncClient) -> None:
    guest = await start_guest(client)
    assert guest["user"]["username"].startswith("Stargazer-")


async def test_a_guest_completing_a_magic_link_becomes_a_new_account_announced_by_user_merged(
    infra: Infra, client: httpx.AsyncClient, smtp_mailbox: SmtpServer
) -> None:
    guest = await start_guest(client)
    email = unique_email("convert")
    async with (
        KafkaTail(infra.kafka_bootstrap, UserMerged) as merged_tail,
        KafkaTail(infra.kafka_bootstrap, UserRegistered) as registered_tail,
    ):
        account = await sign_in(client, smtp_mailbox, email, "Converted", headers=bearer(guest))
        merged = await merged_tail.first(lambda e: str(e.from_user_id) == guest["user"]["id"])
        registered = await registered_tail.first(lambda e: e.email == email)

    assert merged.from_user_id == UUID(guest["user"]["id"])
    assert merged.to_user_id == UUID(account["user"]["id"])
    assert merged.to_user_id != merged.from_user_id
    assert registered.user_id == merged.to_user_id
    assert registered.is_guest is False
    assert account["user"]["is_guest"] is False


async def test_a_guest_signing_into_an_existing_account_is_merged_into_that_account(
    infra: Infra, client: httpx.AsyncClient, smtp_mailbox: SmtpServer
) -> None:
    email = unique_email("existing")
    existing = await sign_in(client, smtp_mailbox, email, "Existing")
    guest = await start_guest(client)
    async with KafkaTail(infra.kafka_bootstrap, UserMerged) as tail:
        again = await sign_in(client, smtp_mailbox, email, "Ignored", headers=bearer(guest))
        merged = await tail.first(lambda e: str(e.from_user_id) == guest["user"]["id"])
    assert again["user"]["id"] == existing["user"]["id"]
    assert merged.to_user_id == UUID(existing["user"]["id"])


async def test_a_merged_guest_can_no_longer_use_its_session(
    client: httpx.AsyncClient, smtp_mailbox: SmtpServer
) -> None:
    guest = await start_guest(client)
    await sign_in(client, smtp_mailbox, unique_email("merged"), headers=bearer(guest))
    refreshed = await client.post("/auth/refresh", json={"refresh_token": guest["refresh_token"]})
    assert refreshed.status_code == 401
    assert refreshed.json()["error"]["code"] == "refresh_token_revoked"
    me = await client.get("/me", headers=bearer(guest))
    assert me.status_code == 401
    assert me.json()["error"]["code"] == "user_not_found"


async def test_a_guest_is_merged_only_once_even_when_presented_twice(
    infra: Infra, client: httpx.AsyncClient, smtp_mailbox: SmtpServer
) -> None:
    guest = await start_guest(client)
    first, second = unique_email("once-a"), unique_email("once-b")
    async with KafkaTail(infra.kafka_bootstrap, UserMerged) as tail:
        await sign_in(client, smtp_mailbox, first, headers=bearer(guest))
        await sign_in(client, smtp_mailbox, second, headers=bearer(guest))
        merged = await tail.first(lambda e: str(e.from_user_id) == guest["user"]["id"])
        with pytest.raises(AssertionError):
            await tail.first(lambda e: str(e.from_user_id) == guest["user"]["id"], timeout=3)
    assert merged.to_user_id is not None


async def test_a_guest_presenting_a_refused_token_at_verify_is_refused_without_spending_the_link(
    client: httpx.AsyncClient, smtp_mailbox: SmtpServer
) -> None:
    guest = await start_guest(client)
    email = unique_email("refused-guest")
    await client.post("/auth/magic-link", json={"email": email, "username": "Late Guest"}, headers=bearer(guest))
    token = link_token((await smtp_mailbox.mail_to(email)).links[0])
    header, payload, _ = guest["access_token"].split(".")
    forged = f"{header}.{payload}.{'A' * 86}"

    refused = await client.post("/auth/verify", json={"token": token}, headers={"Authorization": f"Bearer {forged}"})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "bad_signature"

    # Signing in silently without the guest would strand its data; instead the link is still good for a retry.
    renewed = (await client.post("/auth/refresh", json={"refresh_token": guest["refresh_token"]})).json()
    retried = await client.post("/auth/verify", json={"token": token}, headers=bearer(renewed))
    assert retried.status_code == 200


async def test_a_link_someone_else_asked_for_signs_in_without_taking_the_guest_along(
    infra: Infra, client: httpx.AsyncClient, smtp_mailbox: SmtpServer
) -> None:
    """Login CSRF: an attacker mails a link for the attacker's own address to a guest, who opens it."""
    attacker = await start_guest(client)
    victim = await start_guest(client)
    email = unique_email("attacker")
    asked = await client.post(
        "/auth/magic-link", json={"email": email, "username": "Mallory"}, headers=bearer(attacker)
    )
    assert asked.status_code == 202
    token = link_token((await smtp_mailbox.mail_to(email)).links[0])

    async with KafkaTail(infra.kafka_bootstrap, UserMerged) as tail:
        opened = await client.post("/auth/verify", json={"token": token}, headers=bearer(victim))
        assert opened.status_code == 200, opened.text
        with pytest.raises(AssertionError):
            await tail.first(lambda e: str(e.from_user_id) == victim["user"]["id"], timeout=3)

    assert opened.json()["user"]["email"] == email
    # The victim's guest session and everything it owns stay the victim's.
    assert (await client.get("/me", headers=bearer(victim))).status_code == 200
    refreshed = await client.post("/auth/refresh", json={"refresh_token": victim["refresh_token"]})
    assert refreshed.status_code == 200


async def test_a_link_asked_for_anonymously_merges_no_guest(
    infra: Infra, client: httpx.AsyncClient, smtp_mailbox: SmtpServer
) -> None:
    guest = await start_guest(client)
    email = unique_email("anonymous-ask")
    await client.post("/auth/magic-link", json={"email": email, "username": "Nobody"})
    token = link_token((await smtp_mailbox.mail_to(email)).links[0])
    async with KafkaTail(infra.kafka_bootstrap, UserMerged) as tail:
        opened = await client.post("/auth/verify", json={"token": token}, headers=bearer(guest))
        assert opened.status_code == 200, opened.text
        with pytest.raises(AssertionError):
            await tail.first(lambda e: str(e.from_user_id) == guest["user"]["id"], timeout=3)
    assert (await client.get("/me", headers=bearer(guest))).status_code == 200


async def test_a_guests_link_opened_without_its_token_signs_in_and_leaves_the_guest_alone(
    client: httpx.AsyncClient, smtp_mailbox: SmtpServer
) -> None:
    guest = await start_guest(client)
    email = unique_email("other-device")
    await client.post("/auth/magic-link", json={"email": email, "username": "Phone"}, headers=bearer(guest))
    token = link_token((await smtp_mailbox.mail_to(email)).links[0])
    opened = await client.post("/auth/verify", json={"token": token})
    assert opened.status_code == 200, opened.text
    assert (await client.get("/me", headers=bearer(guest))).status_code == 200
