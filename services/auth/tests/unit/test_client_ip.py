"""The client address used for rate limits: X-Forwarded-For is believed only from trusted proxies."""

from __future__ import annotations

from ipaddress import ip_network

from starlette.requests import Request

from orrery_auth.client_ip import client_ip

GATEWAY = [ip_network("127.0.0.1/32"), ip_network("10.0.0.0/8")]


def request(peer: str, *forwarded: str) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return Request({"type": "http", "client": (peer, 5000), "headers": headers, "method": "GET", "path": "/"})


def test_without_trusted_proxies_the_socket_peer_is_the_client() -> None:
    assert client_ip(request("203.0.113.9", "198.51.100.1"), []) == "203.0.113.9"


def test_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    assert client_ip(request("203.0.113.9", "198.51.100.1"), GATEWAY) == "203.0.113.9"


def test_a_trusted_proxy_names_the_client() -> None:
    assert client_ip(request("127.0.0.1", "198.51.100.1"), GATEWAY) == "198.51.100.1"


def test_addresses_a_client_prepends_itself_are_not_believed() -> None:
    # The client sent "X-Forwarded-For: 1.2.3.4"; the gateway appended the address it really saw.
    assert client_ip(request("127.0.0.1", "1.2.3.4, 198.51.100.1"), GATEWAY) == "198.51.100.1"


def test_a_chain_of_trusted_proxies_is_walked_from_the_right() -> None:
    assert client_ip(request("127.0.0.1", "198.51.100.1", "10.1.2.3"), GATEWAY) == "198.51.100.1"


def test_garbage_in_forwarded_for_falls_back_to_the_peer() -> None:
    assert client_ip(request("127.0.0.1", "not-an-ip"), GATEWAY) == "127.0.0.1"
