"""The development mail sink: receives the auth service's mails over SMTP, lists them, prints their links."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage

import httpx
import pytest
from pydantic import SecretStr

from orrery_auth.dev_mailbox import Mailbox, mailbox_app, start_smtp
from orrery_auth.mail import SmtpMailer, magic_link_message
from orrery_auth.settings import AuthSettings

LINK = "http://127.0.0.1:8000/auth/verify?token=abc_DEF-123"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def sink() -> AsyncIterator[tuple[Mailbox, int]]:
    mailbox = Mailbox(capacity=3)
    port = free_port()
    server = await start_smtp(mailbox, "127.0.0.1", port)
    try:
        yield mailbox, port
    finally:
        server.close()
        await server.wait_closed()


def mail(to: str = "ada@example.com", username: str = "Ada <script>") -> EmailMessage:
    return magic_link_message(
        sender="Orrery <no-reply@orrery.localhost>", to=to, username=username, link=LINK, valid_minutes=15
    )


async def test_a_mail_sent_by_the_auth_mailer_is_listed_with_its_link_and_printed(
    sink: tuple[Mailbox, int], capsys: pytest.CaptureFixture[str]
) -> None:
    mailbox, port = sink
    settings = AuthSettings(smtp_port=port, smtp_username="anyone", smtp_password=SecretStr("anything"))
    await SmtpMailer(settings).send(mail())

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=mailbox_app(mailbox)), base_url="http://m") as http:
        listed = (await http.get("/api/messages")).json()["messages"]
        page = (await http.get("/")).text
    assert [(m["to"], m["subject"], m["links"]) for m in listed] == [
        (["ada@example.com"], "Your Orrery sign-in link", [LINK])
    ]
    assert f'href="{LINK}"' in page
    assert "<script>" not in page
    assert f"  sign-in link: {LINK}" in capsys.readouterr().out


async def test_the_mailbox_keeps_the_newest_mails_up_to_its_capacity(sink: tuple[Mailbox, int]) -> None:
    mailbox, port = sink
    mailer = SmtpMailer(AuthSettings(smtp_port=port))
    for i in range(5):
        await mailer.send(mail(to=f"u{i}@example.com"))
    assert [m.to for m in mailbox.all()] == [["u4@example.com"], ["u3@example.com"], ["u2@example.com"]]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=mailbox_app(mailbox)), base_url="http://m") as http:
        assert (await http.delete("/api/messages")).status_code == 204
        assert (await http.get("/api/messages")).json() == {"messages": []}


def test_python_m_dev_mailbox_serves_its_page_and_refuses_production() -> None:
    smtp_port, http_port = free_port(), free_port()
    env = {
        **os.environ,
        "ORRERY_DEV_MAILBOX_SMTP_PORT": str(smtp_port),
        "ORRERY_DEV_MAILBOX_HTTP_PORT": str(http_port),
        "ORRERY_ENV": "dev",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "orrery_auth.dev_mailbox"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/api/messages", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the dev mailbox did not start"
            time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", smtp_port), timeout=5) as smtp:
            assert smtp.recv(100).startswith(b"220 ")
    finally:
        proc.terminate()
        proc.wait(timeout=15)

    prod = subprocess.run(
        [sys.executable, "-m", "orrery_auth.dev_mailbox"],
        env={**env, "ORRERY_ENV": "prod"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert prod.returncode == 2
    assert "development only" in prod.stderr
