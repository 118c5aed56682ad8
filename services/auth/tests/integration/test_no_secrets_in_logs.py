"""No secret ever reaches the logs: link tokens, refresh and access tokens, the signing key, the SMTP password."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orrery_shared.logging import JsonFormatter
from tests.support.infra import Infra
from tests.support.smtp import SmtpServer

from .conftest import Schema, link_token, make_settings, running, unique_email

pytestmark = pytest.mark.integration


@pytest.fixture
def all_logs() -> Iterator[io.StringIO]:
    """Every record of every logger at DEBUG, formatted as the service formats them (extras included)."""
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(JsonFormatter("auth"))
    # The test SMTP server's own protocol log stands for a remote mail server's, not the service's.
    handler.addFilter(lambda record: not record.name.startswith("mail.log"))
    root = logging.getLogger()
    root.addHandler(handler)
    # SQLAlchemy quiets its own loggers unless asked; ask, so statements and their parameters are included.
    loggers = [root, logging.getLogger("sqlalchemy"), logging.getLogger("aiokafka")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    try:
        yield sink
    finally:
        root.removeHandler(handler)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


async def test_a_full_flow_logs_none_of_its_secrets(
    all_logs: io.StringIO, infra: Infra, auth_schema: Schema, smtp_mailbox: SmtpServer, tmp_path: Path
) -> None:
    # A service of its own, started after DEBUG logging is on, so every library logs as verbosely as it can.
    settings = make_settings(infra, auth_schema, smtp_mailbox, tmp_path)
    async with running(settings) as service, httpx.AsyncClient(base_url=service.base_url) as client:
        secrets = await full_flow(client, smtp_mailbox)
    private_pem = (tmp_path / "current.pem").read_text()
    key_body = "".join(line for line in private_pem.splitlines() if "-----" not in line)
    password = smtp_mailbox.password
    secrets += [
        private_pem,
        key_body,
        password,
        base64.b64encode(password.encode()).decode(),  # AUTH LOGIN
        base64.b64encode(f"\0{smtp_mailbox.username}\0{password}".encode()).decode(),  # AUTH PLAIN
    ]

    logs = all_logs.getvalue()
    # The flow did log, down to SQL statements.
    assert "magic link sent" in logs and "refresh token reused" in logs and "UPDATE refresh_tokens" in logs
    leaked = [s[:12] + "…" for s in secrets if s in logs]
    assert leaked == []


async def full_flow(client: httpx.AsyncClient, smtp_mailbox: SmtpServer) -> list[str]:
    """Guest, magic link with merge, replay, /me, refresh, reuse, logout, a bad token; returns the secrets seen."""
    secrets: list[str] = []
    email = unique_email("quiet")

    guest = (await client.post("/auth/guest", json={"username": "Quiet Guest"})).json()
    secrets += [guest["access_token"], guest["refresh_token"]]
    await client.post("/auth/magic-link", json={"email": email, "username": "Quiet"})
    token = link_token((await smtp_mailbox.mail_to(email)).links[0])
    secrets.append(token)
    session = (
        await client.post(
            "/auth/verify", json={"token": token}, headers={"Authorization": f"Bearer {guest['access_token']}"}
        )
    ).json()
    secrets += [session["access_token"], session["refresh_token"]]
    assert (await client.post("/auth/verify", json={"token": token})).status_code == 401
    assert (await client.get("/me", headers={"Authorization": f"Bearer {session['access_token']}"})).status_code == 200
    renewed = (await client.post("/auth/refresh", json={"refresh_token": session["refresh_token"]})).json()
    secrets += [renewed["access_token"], renewed["refresh_token"]]
    reused = await client.post("/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert reused.status_code == 401
    await client.post("/auth/logout", json={"refresh_token": renewed["refresh_token"]})
    await client.get("/me", headers={"Authorization": f"Bearer {session['access_token']}x"})

    return secrets
