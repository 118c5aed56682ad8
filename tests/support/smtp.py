"""A real SMTP server for tests: aiosmtpd on a free loopback port, keeping every message it receives.

Fixtures:

* ``smtp_server`` (session): an :class:`SmtpServer` on plain SMTP that accepts mail with or without
  ``AUTH PLAIN/LOGIN`` (credentials ``smtp_server.username`` / ``smtp_server.password``).
* ``smtp_mailbox`` (function): the same server, emptied before the test; await ``mail_to(address)`` for a message.
* ``smtp_tls_server`` (session): one that requires STARTTLS, with a throwaway CA; ``ca_file`` is the
  bundle a client must trust (its certificate names 127.0.0.1).

Each runs in its own thread with its own event loop, so it serves whatever loop the test uses.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import re
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword
from aiosmtpd.smtp import Session as SmtpSession
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOST = "127.0.0.1"
USERNAME = "mailer"
PASSWORD = "smtp-test-password-7f3a9c"
_URL = re.compile(r"https?://[^\s<>\"]+")


@dataclass(frozen=True)
class ReceivedMail:
    """One message as the server received it."""

    mail_from: str
    rcpt_to: tuple[str, ...]
    message: EmailMessage
    authenticated_as: str | None
    raw: bytes

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        """The text/plain body."""
        part = self.message.get_body(preferencelist=("plain",))
        return "" if part is None else str(part.get_content())

    @property
    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        return "" if part is None else str(part.get_content())

    @property
    def links(self) -> list[str]:
        """Every http(s) URL in the text body, in order."""
        return _URL.findall(self.text)


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        self.server._received(
            ReceivedMail(
                mail_from=envelope.mail_from or "",
                rcpt_to=tuple(envelope.rcpt_tos),
                message=message,
                authenticated_as=login,
                raw=raw,
            )
        )
        return "250 OK"


class SmtpServer:
    """A running SMTP server and the messages it has received."""

    def __init__(self, *, tls_context: ssl.SSLContext | None = None, ca_file: Path | None = None) -> None:
        self.host = HOST
        self.port = _free_port()
        self.username = USERNAME
        self.password = PASSWORD
        self.ca_file = ca_file
        self._lock = threading.Lock()
        self._messages: list[ReceivedMail] = []
        self.failed_logins = 0
        kwargs: dict[str, Any] = {
            "authenticator": self._authenticate,
            "auth_required": False,
            "auth_require_tls": tls_context is not None,
        }
        if tls_context is not None:
            kwargs.update(tls_context=tls_context, require_starttls=True)
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port, **kwargs)

    def _authenticate(self, server: SMTP, session: SmtpSession, envelope: Envelope, mechanism: str, data: Any) -> Any:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == self.username
            and data.password.decode() == self.password
        )
        if not ok:
            self.failed_logins += 1
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    def _received(self, mail: ReceivedMail) -> None:
        with self._lock:
            self._messages.append(mail)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
        self.failed_logins = 0

    def to(self, address: str) -> list[ReceivedMail]:
        """Messages whose envelope recipients include `address` (case-insensitive)."""
        address = address.lower()
        return [m for m in self.messages if address in (r.lower() for r in m.rcpt_to)]

    async def mail_to(self, address: str, timeout: float = 10.0, count: int = 1) -> ReceivedMail:
        """The `count`-th message to `address`, waiting for it to arrive."""
        deadline = time.monotonic() + timeout
        while len(found := self.to(address)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no mail #{count} to {address} within {timeout}s (got {len(found)})")
            await asyncio.sleep(0.02)
        return found[count - 1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _tls_material(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it; returns the server context and the CA file."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "orrery test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, ca_file


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    """A plain SMTP server on a free loopback port for the whole session."""
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_mailbox(smtp_server: SmtpServer) -> SmtpServer:
    """The session's SMTP server, emptied for this test."""
    smtp_server.clear()
    return smtp_server


@pytest.fixture(scope="session")
def smtp_tls_server() -> Iterator[SmtpServer]:
    """An SMTP server that requires STARTTLS; trust `ca_file` to connect."""
    with tempfile.TemporaryDirectory(prefix="orrery-smtp-tls-") as directory:
        context, ca_file = _tls_material(Path(directory))
        server = SmtpServer(tls_context=context, ca_file=ca_file)
        server.start()
        try:
            yield server
        finally:
            server.stop()
