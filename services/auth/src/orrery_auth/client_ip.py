"""The client's address: the socket peer, or what trusted proxies say in X-Forwarded-For."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address

from starlette.requests import Request

UNKNOWN = "unknown"


def _trusted(address: str, proxies: Sequence[IPv4Network | IPv6Network]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_ip(request: Request, trusted_proxies: Sequence[IPv4Network | IPv6Network]) -> str:
    """The address to rate-limit on.

    X-Forwarded-For is only believed when the peer is a trusted proxy, and then read from the right: each
    trusted hop appends what it saw, so the first untrusted address from the right is the real client and
    anything further left may be forged by that client.
    """
    peer = request.client.host if request.client else UNKNOWN
    if not trusted_proxies or not _trusted(peer, trusted_proxies):
        return peer
    forwarded = [part.strip() for header in request.headers.getlist("x-forwarded-for") for part in header.split(",")]
    for hop in reversed([h for h in forwarded if h]):
        if not _trusted(hop, trusted_proxies):
            try:
                return str(ip_address(hop))
            except ValueError:
                return peer
    return peer
