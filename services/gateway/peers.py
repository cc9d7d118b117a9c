"""Who is asking: the client's address behind the tunnel, and whether a request is from this machine.

cloudflared connects to the gateway from loopback and names the real client in ``CF-Connecting-IP``.
That header is believed only on a loopback connection (the tunnel's); from anywhere else, and always
for ``X-Forwarded-For``, a header is just text the client chose, so the peer address counts instead.
A *local* caller is a loopback connection that carries no forwarding header at all: the operator's own
shell or Prometheus, never a student whose request came in through the tunnel.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from litestar.connection import ASGIConnection

TUNNEL_HEADER = "cf-connecting-ip"
_FORWARDING_HEADERS = (TUNNEL_HEADER, "x-forwarded-for", "forwarded", "x-real-ip")


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The address rate limits and login throttling count against."""
    peer = _peer(connection)
    if _is_loopback(peer):
        tunnelled = _canonical(connection.headers.get(TUNNEL_HEADER, "").strip())
        if tunnelled is not None:
            return tunnelled
    return peer


def is_local(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """True for a loopback connection that was not forwarded (by the tunnel or any proxy)."""
    if not _is_loopback(_peer(connection)):
        return False
    return not any(name in connection.headers for name in _FORWARDING_HEADERS)


def _peer(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    return connection.client.host if connection.client else ""


# Parsing an address is some microseconds, asked on every limited request (a webhook delivery's limit,
# the chat's): the answers for the addresses seen lately are kept (a bounded cache: a header is the client's)
@functools.lru_cache(maxsize=4096)
def _canonical(text: str) -> str | None:
    """``text`` as an IP address in its canonical form, or None when it is not one."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _is_ip(text: str) -> bool:
    return _canonical(text) is not None


@functools.lru_cache(maxsize=4096)
def _is_loopback(host: str) -> bool:
    return _is_ip(host) and ipaddress.ip_address(host).is_loopback
