"""Input rules and secrets of the auth domain."""

from __future__ import annotations

import hashlib

import pytest

from orrery_auth.domain import guest_name, new_secret, normalize_email, normalize_username, secret_hash


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ada@Example.COM", "ada@example.com"),
        ("  ada.lovelace+orrery@example.co.uk ", "ada.lovelace+orrery@example.co.uk"),
        ("zorg@bücher.example", "zorg@xn--bcher-kva.example"),
    ],
)
def test_addresses_are_trimmed_and_lower_cased(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "plain",
        "a@b",
        "a@@example.com",
        "a@example.com\r\nBcc: x@example.com",
        "a b@example.com",
        ".a@example.com",
        "a..b@example.com",
        "a@-example.com",
        "a@example.123",
        "<a@example.com>",
        "x" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
    ],
)
def test_malformed_addresses_are_rejected(raw: str) -> None:
    with pytest.raises(ValueError):
        normalize_email(raw)


def test_usernames_are_trimmed_with_inner_whitespace_collapsed() -> None:
    assert normalize_username("  Zorg   the\tGreat ") == "Zorg the Great"


@pytest.mark.parametrize("raw", ["", "   ", "x" * 41, "bell\x07", "zero\u200bwidth"])
def test_empty_overlong_or_control_character_usernames_are_rejected(raw: str) -> None:
    with pytest.raises(ValueError):
        normalize_username(raw)


def test_secrets_are_long_random_and_stored_as_sha256() -> None:
    secrets = {new_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert all(len(s) >= 43 for s in secrets)
    secret = secrets.pop()
    assert secret_hash(secret) == hashlib.sha256(secret.encode()).digest()


def test_guests_get_a_friendly_name() -> None:
    assert normalize_username(guest_name()).startswith("Stargazer-")
