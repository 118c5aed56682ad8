"""The sign-in mail and its delivery, including STARTTLS with credentials against a real server."""

from __future__ import annotations

import socket
from email.message import EmailMessage

import pytest
from pydantic import SecretStr

from orrery_auth.domain import MailNotSent
from orrery_auth.mail import SmtpMailer, magic_link_message
from orrery_auth.settings import AuthSettings
from tests.support.smtp import SmtpServer

LINK = "http://127.0.0.1:8000/auth/verify?token=abc&x=<y>"


def message(to: str = "ada@example.com") -> EmailMessage:
    return magic_link_message(
        sender="Orrery <no-reply@orrery.localhost>", to=to, username="Ada & Co", link=LINK, valid_minutes=15
    )


def test_the_mail_carries_the_link_in_text_and_escaped_in_html() -> None:
    mail = message()
    text = mail.get_body(preferencelist=("plain",))
    html = mail.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert LINK in text.get_content()
    assert 'href="http://127.0.0.1:8000/auth/verify?token=abc&amp;x=&lt;y&gt;"' in html.get_content()
    assert "Ada &amp; Co" in html.get_content()
    assert "15 minutes" in text.get_content()


async def test_mail_is_delivered_over_starttls_with_credentials(smtp_tls_server: SmtpServer) -> None:
    smtp_tls_server.clear()
    settings = AuthSettings(
        smtp_host=smtp_tls_server.host,
        smtp_port=smtp_tls_server.port,
        smtp_starttls=True,
        smtp_username=smtp_tls_server.username,
        smtp_password=SecretStr(smtp_tls_server.password),
        smtp_ca_file=smtp_tls_server.ca_file,
    )
    await SmtpMailer(settings).send(message())
    received = await smtp_tls_server.mail_to("ada@example.com")
    assert received.authenticated_as == smtp_tls_server.username
    assert LINK in received.text


async def test_a_server_whose_certificate_is_not_trusted_gets_no_mail(smtp_tls_server: SmtpServer) -> None:
    settings = AuthSettings(smtp_host=smtp_tls_server.host, smtp_port=smtp_tls_server.port, smtp_starttls=True)
    with pytest.raises(MailNotSent):
        await SmtpMailer(settings).send(message("mallory@example.com"))


async def test_wrong_credentials_and_an_unreachable_server_are_mail_not_sent(smtp_server: SmtpServer) -> None:
    wrong = AuthSettings(
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_username=smtp_server.username,
        smtp_password=SecretStr("wrong"),
    )
    with pytest.raises(MailNotSent):
        await SmtpMailer(wrong).send(message())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    with pytest.raises(MailNotSent):
        await SmtpMailer(AuthSettings(smtp_port=closed_port, smtp_timeout_seconds=2)).send(message())
