"""A development mail sink: catches the sign-in mails the auth service sends and shows them locally.

`python -m orrery_auth.dev_mailbox` listens for SMTP on 127.0.0.1:2525 (where the auth service sends by default
in development) and serves http://127.0.0.1:8025/ (a page listing the mails) and /api/messages (JSON). Every
link in a received mail is printed, so signing in needs nothing but this process's output. Development only:
it refuses to start with ORRERY_ENV=prod, and it accepts any SMTP credentials.
"""

from __future__ import annotations

import asyncio
import html
import re
import sys
from collections import deque
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from itertools import count
from typing import Any

import uvicorn
from aiosmtpd.smtp import SMTP, AuthResult, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from fastapi import FastAPI, Response
from fastapi.responses import HTMLResponse
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from orrery_shared.settings import Environment, load_settings

_URL = re.compile(r"https?://[^\s<>\"']+")


class MailboxSettings(BaseSettings):
    """Where the sink listens (prefix ORRERY_DEV_MAILBOX_)."""

    model_config = SettingsConfigDict(env_prefix="ORRERY_DEV_MAILBOX_", extra="ignore")

    environment: Environment = Field(Environment.DEV, validation_alias="ORRERY_ENV")
    host: str = "127.0.0.1"
    smtp_port: int = Field(2525, ge=1, le=65535)
    http_port: int = Field(8025, ge=1, le=65535)
    max_messages: int = Field(200, ge=1)


@dataclass(frozen=True)
class Mail:
    id: int
    received_at: str
    mail_from: str
    to: list[str]
    subject: str
    text: str
    html: str
    links: list[str]


def _body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    return "" if part is None else str(part.get_content())


class Mailbox:
    """The last `capacity` mails, newest first."""

    def __init__(self, capacity: int = 200, echo: bool = True) -> None:
        self._mails: deque[Mail] = deque(maxlen=capacity)
        self._ids = count(1)
        self.echo = echo

    def add(self, raw: bytes, mail_from: str, rcpt_to: list[str]) -> Mail:
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        text = _body(message, "plain")
        mail = Mail(
            id=next(self._ids),
            received_at=datetime.now(UTC).isoformat(timespec="seconds"),
            mail_from=mail_from,
            to=rcpt_to,
            subject=str(message.get("Subject", "")),
            text=text,
            html=_body(message, "html"),
            links=_URL.findall(text),
        )
        self._mails.appendleft(mail)
        if self.echo:
            print(f"mail to {', '.join(rcpt_to)}: {mail.subject}", flush=True)
            for link in mail.links:
                label = "sign-in link" if "/auth/verify" in link else "link"
                print(f"  {label}: {link}", flush=True)
        return mail

    def all(self) -> list[Mail]:
        return list(self._mails)

    def clear(self) -> None:
        self._mails.clear()


class _Handler:
    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        self.mailbox.add(envelope.original_content or b"", envelope.mail_from or "", list(envelope.rcpt_tos))
        return "250 Message accepted"


def _accept_any_login(server: SMTP, session: SmtpSession, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    # A sink, not a relay on a network: whatever credentials the sender is configured with are fine.
    return AuthResult(success=True, handled=False)


async def start_smtp(mailbox: Mailbox, host: str, port: int) -> asyncio.Server:
    """Listen for SMTP on host:port, storing every message in `mailbox`."""
    loop = asyncio.get_running_loop()
    handler = _Handler(mailbox)
    return await loop.create_server(
        lambda: SMTP(handler, hostname="orrery-dev-mailbox", authenticator=_accept_any_login, auth_require_tls=False),
        host,
        port,
    )


def mailbox_app(mailbox: Mailbox) -> FastAPI:
    """The mailbox page (/), the JSON API (/api/messages) and a way to empty it (DELETE /api/messages)."""
    app = FastAPI(title="Orrery dev mailbox", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/api/messages")
    async def messages() -> dict[str, Any]:
        return {"messages": [asdict(m) for m in mailbox.all()]}

    @app.delete("/api/messages", status_code=204)
    async def clear() -> Response:
        mailbox.clear()
        return Response(status_code=204)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return _page(mailbox.all())

    return app


def _page(mails: list[Mail]) -> str:
    items = []
    for mail in mails:
        links = "".join(
            f'<li><a href="{html.escape(link, quote=True)}">{html.escape(link)}</a></li>' for link in mail.links
        )
        items.append(
            "<article>"
            f"<h2>{html.escape(mail.subject)}</h2>"
            f"<p class=meta>to {html.escape(', '.join(mail.to))} · {html.escape(mail.received_at)}</p>"
            f"<ul>{links}</ul><pre>{html.escape(mail.text)}</pre>"
            "</article>"
        )
    body = "".join(items) or "<p>No mail yet. Ask for a sign-in link and it shows up here.</p>"
    return (
        "<!doctype html><html><head><meta charset=utf-8><meta http-equiv=refresh content=5>"
        "<title>Orrery dev mailbox</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem;color:#222}"
        "article{border:1px solid #ddd;border-radius:8px;padding:0 1rem;margin:1rem 0}"
        ".meta{color:#666;font-size:.9rem}pre{white-space:pre-wrap;background:#f7f7f7;padding:.5rem}"
        "</style></head><body><h1>Orrery dev mailbox</h1>"
        "<p class=meta>Development only: mails the auth service sent to this machine, newest first.</p>"
        f"{body}</body></html>"
    )


async def serve(settings: MailboxSettings) -> None:
    """Run the SMTP sink and the mailbox page until interrupted."""
    mailbox = Mailbox(settings.max_messages)
    smtp = await start_smtp(mailbox, settings.host, settings.smtp_port)
    print(
        f"dev mailbox: SMTP on {settings.host}:{settings.smtp_port}, "
        f"mails at http://{settings.host}:{settings.http_port}/",
        flush=True,
    )
    config = uvicorn.Config(
        mailbox_app(mailbox), host=settings.host, port=settings.http_port, log_level="warning", access_log=False
    )
    try:
        await uvicorn.Server(config).serve()
    finally:
        smtp.close()
        await smtp.wait_closed()


def main() -> int:
    settings = load_settings(MailboxSettings)
    if settings.environment is Environment.PROD:
        print("the dev mailbox is for development only (ORRERY_ENV=prod)", file=sys.stderr)
        return 2
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
