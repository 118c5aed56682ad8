"""Signing in by mail: a single-use link delivered over SMTP, exchanged exactly once for a session."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from orrery_shared.events import UserRegistered
from tests.support.infra import Infra
from tests.support.smtp import SmtpServer

from .conftest import (
    KafkaTail,
    RunningService,
    Schema,
    free_port,
    link_token,
    make_settings,
    running,
    sign_in,
    sql,
    unique_email,
)

pytestmark = pytest.mark.integration


async def test_a_link_mailed_over_smtp_signs_the_user_in_and_me_answers_with_the_token(
    client: httpx.AsyncClient, smtp_mailbox: SmtpServer
) -> None:
    email = unique_email("ada")
    response = await client.post("/auth/magic-link", json={"email": email.upper(), "username": "  Ada  Lovelace "})
    assert response.status_code == 202
    assert response.json()["expires_in"] == 900

    mail = await smtp_mailbox.mail_to(email)
    assert mail.rcpt_to == (email,)
    assert mail.authenticated_as == smtp_mailbox.username
    assert mail.subject == "Your Orrery sign-in link"
    (link,) = mail.links
    assert link.startswith("http://127.0.0.1:8000/auth/verify?token=")
    assert link in mail.html.replace("&amp;", "&")

    verified = await client.post("/auth/verify", json={"token": link_token(link)})
    assert verified.status_code == 200, verified.text
    tokens = verified.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 900
    assert tokens["refresh_token"]

    me = await client.get("/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200
    assert me.json()["email"] == email
    assert me.json()["username"] == "Ada Lovelace"
    assert me.json()["is_guest"] is False
    assert me.json()["id"] == tokens["user"]["id"]


async def test_the_answer_is_the_same_for_a_known_and_an_unknown_address(
    client: httpx.AsyncClient, smtp_mailbox: SmtpServer
) -> None:
    known = unique_email("known")
    await sign_in(client, smtp_mailbox, known)
    answers = [
        await client.post("/auth/magic-link", json={"email": address, "username": "Someone"})
        for address in (known, unique_email("stranger"))
    ]
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].json() == answers[1].json()


async def test_signing_in_again_with_the_same_address_reaches_the_same_account(
    client: httpx.AsyncClient, smtp_mailbox: SmtpServer
) -> None:
    email = unique_email()
    first = await sign_in(client, smtp_mailbox, email, "First")
    second = await sign_in(client, smtp_mailbox, email.title(), "Second")
    assert first["user"]["id"] == second["user"]["id"]
    assert second["user"]["username"] == "First"


async def test_a_new_account_is_announced_as_user_registered_on_the_broker(
    infra: Infra, client: httpx.AsyncClient, smtp_mailbox: SmtpServer
) -> None:
    email = unique_email("announced")
    async with KafkaTail(infra.kafka_bootstrap, UserRegistered) as tail:
        tokens = await sign_in(client, smtp_mailbox, email, "Announced")
        event = await tail.first(lambda e: e.email == email)
    assert event.user_id == UUID(tokens["user"]["id"])
    assert event.username == "Announced"
    assert event.is_guest is False


async def test_the_link_token_is_stored_only_as_its_hash(
    infra: Infra, auth_schema: Schema, client: httpx.AsyncClient, smtp_mailbox: SmtpServer
) -> None:
    email = unique_email("hashed")
    await client.post("/auth/magic-link", json={"email": email, "username": "Hash"})
    token = link_token((await smtp_mailbox.mail_to(email)).links[0])
    query = "SELECT token_hash, expires_at - created_at FROM magic_links WHERE email = %s"
    rows = sql(infra, auth_schema, query, email)
    assert rows == [(hashlib.sha256(token.encode()).digest(), timedelta(minutes=15))]
    dump = str(sql(infra, auth_schema, "SELECT * FROM magic_links"))
    assert token not in dump


async def test_a_replayed_magic_link_is_refused_with_401_magic_link_used(
    client: httpx.AsyncClient, smtp_mailbox: SmtpServer
) -> None:
    email = unique_email("replay")
    await client.post("/auth/magic-link", json={"email": email, "username": "Replay"})
    token = link_token((await smtp_mailbox.mail_to(email)).links[0])
    assert (await client.post("/auth/verify", json={"token": token})).status_code == 200

    replay = await client.post("/auth/verify", json={"token": token})
    assert replay.status_code == 401
    assert replay.json()["error"]["code"] == "magic_link_used"


async def test_an_expired_magic_link_is_refused_with_401_magic_link_expired(
    infra: Infra, auth_schema: Schema, client: httpx.AsyncClient, smtp_mailbox: SmtpServer
) -> None:
    email = unique_email("late")
    await client.post("/auth/magic-link", json={"email": email, "username": "Late"})
    token = link_token((await smtp_mailbox.mail_to(email)).links[0])
    past = datetime.now(UTC) - timedelta(seconds=1)
    sql(infra, auth_schema, "UPDATE magic_links SET expires_at = %s WHERE email = %s", past, email)

    response = await client.post("/auth/verify", json={"token": token})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "magic_link_expired"


async def test_a_made_up_token_is_refused_with_401_magic_link_invalid(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/verify", json={"token": "x" * 43})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "magic_link_invalid"


async def test_two_concurrent_verifications_of_one_link_let_exactly_one_succeed(
    auth_service: RunningService, smtp_mailbox: SmtpServer
) -> None:
    email = unique_email("race")
    async with httpx.AsyncClient(base_url=auth_service.base_url, timeout=30) as setup:
        await setup.post("/auth/magic-link", json={"email": email, "username": "Race"})
    token = link_token((await smtp_mailbox.mail_to(email)).links[0])

    # Separate connections so the requests really run side by side in the service.
    clients = [httpx.AsyncClient(base_url=auth_service.base_url, timeout=30) for _ in range(8)]
    try:
        answers = await asyncio.gather(*(c.post("/auth/verify", json={"token": token}) for c in clients))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [401] * 7
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 401} == {"magic_link_used"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-address", "username": "A"}, "email"),
        ({"email": "a@b", "username": "A"}, "email"),
        ({"email": "a@example.com\r\nBcc: victim@example.com", "username": "A"}, "email"),
        ({"email": "a@example.com", "username": "   "}, "username"),
        ({"email": "a@example.com", "username": "x" * 41}, "username"),
        ({"email": "a@example.com"}, "username"),
    ],
)
async def test_bad_input_gets_a_422_naming_the_field_in_the_shared_error_format(
    client: httpx.AsyncClient, body: dict[str, str], field: str
) -> None:
    response = await client.post("/auth/magic-link", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert [f["loc"][-1] for f in error["fields"]] == [field]


async def test_an_unreachable_mail_server_answers_503_mail_unavailable(
    infra: Infra, auth_schema: Schema, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    settings = make_settings(infra, auth_schema, smtp_server, tmp_path, smtp_port=free_port(), smtp_timeout_seconds=2)
    async with running(settings) as service, httpx.AsyncClient(base_url=service.base_url) as http:
        response = await http.post("/auth/magic-link", json={"email": unique_email("unsent"), "username": "U"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "mail_unavailable"
