"""Abuse limits kept in Redis: per address and per client for magic links, per client for verify and guests."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.infra import Infra
from tests.support.smtp import SmtpServer

from .conftest import Schema, make_settings, random_ip, running, unique_email

pytestmark = pytest.mark.integration


def assert_rate_limited(response: httpx.Response, window: int) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(response.headers["retry-after"]) <= window


async def test_the_sixth_magic_link_for_one_address_within_the_window_gets_429_with_retry_after(
    client: httpx.AsyncClient, smtp_mailbox: SmtpServer
) -> None:
    email = unique_email("eager")
    variants = [email, email.upper(), f"  {email}  ", email.title(), email]
    for address in variants:
        # A different client address each time: the limit follows the mailbox, not the sender.
        answer = await client.post(
            "/auth/magic-link", json={"email": address, "username": "Eager"}, headers={"X-Forwarded-For": random_ip()}
        )
        assert answer.status_code == 202
    sixth = await client.post(
        "/auth/magic-link", json={"email": email, "username": "Eager"}, headers={"X-Forwarded-For": random_ip()}
    )
    assert_rate_limited(sixth, 900)
    assert len(smtp_mailbox.to(email)) == 5
    other = await client.post("/auth/magic-link", json={"email": unique_email("patient"), "username": "Patient"})
    assert other.status_code == 202


async def test_one_client_asking_for_links_to_many_addresses_is_limited(client: httpx.AsyncClient) -> None:
    for _ in range(20):
        answer = await client.post("/auth/magic-link", json={"email": unique_email("spray"), "username": "Spray"})
        assert answer.status_code == 202
    assert_rate_limited(await client.post("/auth/magic-link", json={"email": unique_email(), "username": "S"}), 900)


async def test_one_client_starting_too_many_guests_is_limited(client: httpx.AsyncClient) -> None:
    for _ in range(10):
        assert (await client.post("/auth/guest")).status_code == 201
    assert_rate_limited(await client.post("/auth/guest"), 60)
    fresh = await client.post("/auth/guest", headers={"X-Forwarded-For": random_ip()})
    assert fresh.status_code == 201


async def test_one_client_guessing_link_tokens_is_limited(client: httpx.AsyncClient) -> None:
    for i in range(30):
        answer = await client.post("/auth/verify", json={"token": f"guess-{i}"})
        assert answer.status_code == 401
    assert_rate_limited(await client.post("/auth/verify", json={"token": "guess-final"}), 60)


async def test_x_forwarded_for_from_an_untrusted_peer_does_not_escape_the_limit(
    infra: Infra, auth_schema: Schema, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    settings = make_settings(infra, auth_schema, smtp_server, tmp_path, trusted_proxies="", guests_per_ip=2)
    async with running(settings) as service, httpx.AsyncClient(base_url=service.base_url) as http:
        answers = [await http.post("/auth/guest", headers={"X-Forwarded-For": random_ip()}) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 429]
