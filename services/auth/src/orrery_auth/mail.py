"""Sign-in mails: composing the magic-link message, and sending it over SMTP."""

from __future__ import annotations

import html
import logging
import ssl
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Protocol

import aiosmtplib

from orrery_auth.domain import MailNotSent
from orrery_auth.settings import AuthSettings

log = logging.getLogger(__name__)


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Deliver `message` to its recipients; raises MailNotSent."""
        ...


def magic_link_message(*, sender: str, to: str, username: str, link: str, valid_minutes: int) -> EmailMessage:
    """The sign-in mail: plain text with an HTML alternative, the link in both."""
    message = EmailMessage()
    message["Subject"] = "Your Orrery sign-in link"
    message["From"] = sender
    message["To"] = to
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip(">") or None)
    message.set_content(
        f"Hello {username},\n\n"
        f"Open this link to sign in to Orrery:\n\n{link}\n\n"
        f"It works once and expires in {valid_minutes} minutes. "
        "If you did not ask for it, ignore this mail.\n"
    )
    safe_link, safe_name = html.escape(link, quote=True), html.escape(username)
    message.add_alternative(
        f"<p>Hello {safe_name},</p>"
        f'<p><a href="{safe_link}">Sign in to Orrery</a></p>'
        f"<p>The link works once and expires in {valid_minutes} minutes. "
        "If you did not ask for it, ignore this mail.</p>",
        subtype="html",
    )
    return message


class SmtpMailer:
    """Sends through the configured SMTP server (STARTTLS, implicit TLS and credentials as configured)."""

    def __init__(self, settings: AuthSettings) -> None:
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.use_tls = settings.smtp_tls
        self.start_tls = bool(settings.smtp_starttls) and not settings.smtp_tls
        self.username = settings.smtp_username
        self._password = settings.smtp_password
        self.timeout = settings.smtp_timeout_seconds
        self._tls_context = (
            ssl.create_default_context(cafile=str(settings.smtp_ca_file)) if settings.smtp_ca_file else None
        )

    async def send(self, message: EmailMessage) -> None:
        """Deliver `message`; raises MailNotSent without the server's reply text (it may echo credentials)."""
        try:
            await aiosmtplib.send(
                message,
                hostname=self.host,
                port=self.port,
                use_tls=self.use_tls,
                start_tls=self.start_tls,
                username=self.username,
                password=self._password.get_secret_value() if self._password else None,
                tls_context=self._tls_context,
                timeout=self.timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as error:
            # The error's text may quote the server's reply, which can echo what was sent; log its type only.
            log.warning(
                "SMTP delivery failed", extra={"smtp": f"{self.host}:{self.port}", "error": type(error).__name__}
            )
            raise MailNotSent() from None
