"""Staff login: an argon2 password check, sessions in Redis behind a signed cookie, a small rate limit.

Sessions live in Redis (the gateway stays stateless, and logout really ends a session); the cookie
carries the session id plus an HMAC with ``INTAKE_SESSION_SECRET``, so a forged or truncated cookie is
rejected before Redis is asked. Without a configured secret each process makes its own (``Services``
does, at start-up), which is fine for one gateway; more gateways need the same ``INTAKE_SESSION_SECRET``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from services.gateway.container import Services
from services.gateway.errors import NotConfigured, Unauthorized

COOKIE = "staff_session"
SESSION_TTL_S = 12 * 3600
LOGIN_ATTEMPTS = 8  # failed attempts per client address and window
LOGIN_WINDOW_S = 300
_SESSION_KEY = "staff:session:{}"
_ATTEMPTS_KEY = "staff:login:{}"


def staff_enabled(services: Services) -> str | None:
    """``None`` when staff pages work, else why not (shown on every staff page)."""
    configured = services.settings.staff_password_hash.strip()
    if not configured:
        return (
            "Staff pages are turned off: no staff password is set. Create a hash with "
            "`python -m services.gateway.staff.password` and set INTAKE_STAFF_PASSWORD_HASH."
        )
    if not configured.startswith("$argon2"):
        return "Staff pages are turned off: INTAKE_STAFF_PASSWORD_HASH is not an argon2 hash."
    return None


async def check_password(services: Services, password: str) -> bool:
    """argon2 verification in a worker thread (it is deliberately slow)."""

    def verify() -> bool:
        try:
            return PasswordHasher().verify(services.settings.staff_password_hash.strip(), password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


async def throttled(services: Services, client: str) -> bool:
    """True once ``client`` used up its failed attempts for the window (a right password is not counted)."""
    count = await services.redis.get(_attempts_key(client))
    return int(count or 0) >= LOGIN_ATTEMPTS


async def count_failure(services: Services, client: str) -> None:
    key = _attempts_key(client)
    async with services.redis.pipeline(transaction=True) as pipe:
        pipe.set(key, 0, ex=LOGIN_WINDOW_S, nx=True)  # the window starts at the first failure (Redis 6)
        pipe.incr(key)
        await pipe.execute()


def _attempts_key(client: str) -> str:
    return _ATTEMPTS_KEY.format(hashlib.sha256(client.encode()).hexdigest()[:16])


async def open_session(services: Services) -> str:
    """A new session; returns the cookie value."""
    session_id = secrets.token_urlsafe(24)
    await services.redis.set(_SESSION_KEY.format(session_id), b"1", ex=SESSION_TTL_S)
    return f"{session_id}.{_sign(services, session_id)}"


async def has_session(services: Services, cookie: str | None) -> bool:
    session_id = _verified_id(services, cookie)
    return bool(session_id and await services.redis.exists(_SESSION_KEY.format(session_id)))


async def close_session(services: Services, cookie: str | None) -> None:
    session_id = _verified_id(services, cookie)
    if session_id:
        await services.redis.delete(_SESSION_KEY.format(session_id))


def _verified_id(services: Services, cookie: str | None) -> str | None:
    if not cookie or len(cookie) > 200 or "." not in cookie:
        return None
    session_id, _, signature = cookie.rpartition(".")
    return session_id if hmac.compare_digest(signature, _sign(services, session_id)) else None


def _sign(services: Services, session_id: str) -> str:
    digest = hmac.new(_secret(services), session_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _secret(services: Services) -> bytes:
    return services.session_secret


async def operator_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Litestar guard for the operator's pages (the job queue UI): a staff session, or 401 / 503."""
    services: Services = connection.app.state.services
    disabled = staff_enabled(services)
    if disabled:
        raise NotConfigured(disabled)
    if not await has_session(services, connection.cookies.get(COOKIE)):
        raise Unauthorized("Log in at /staff/login first; the job queue is for staff only.")
