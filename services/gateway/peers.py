"""Who is asking: the client's address behind the tunnel, and whether a request is from this machine.

cloudflared connects to the gateway from loopback and names the real client in ``CF-Connecting-IP``.
That header is believed only on a loopback connection (the tunnel's); from anywhere else, and always
for ``X-Forwarded-For``, a header is just text the client chose, so the peer address counts instead.
A *local* caller is a loopback connection that carries no forwarding header at all: the operator's own
shell or Prometheus, never a student whose request came in through the tunnel.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from litestar.connection import ASGIConnection

TUNNEL_HEADER = "cf-connecting-ip"
_FORWARDING_HEADERS = (TUNNEL_HEADER, "x-forwarded-for", "forwarded", "x-real-ip")


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The address rate limits and login throttling count against."""
    peer = _peer(connection)
    if _is_loopback(peer):
        tunnelled = connection.headers.get(TUNNEL_HEADER, "").strip()
        if _is_ip(tunnelled):
            return str(ipaddress.ip_address(tunnelled))
    return peer


def is_local(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """True for a loopback connection that was not forwarded (by the tunnel or any proxy)."""
    if not _is_loopback(_peer(connection)):
        return False
    return not any(name in connection.headers for name in _FORWARDING_HEADERS)


def _peer(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    return connection.client.host if connection.client else ""


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_loopback(host: str) -> bool:
    return _is_ip(host) and ipaddress.ip_address(host).is_loopback
