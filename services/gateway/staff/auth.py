"""Staff login and what guards every staff route, built from Litestar's own pieces.

- **Sessions**: Litestar's server-side sessions (``ServerSideSessionConfig``) in a ``RedisStore``
  (``staff:session:*``, expiring with the session), cookie ``staff_session`` (HttpOnly, SameSite=Lax,
  path ``/staff``). Lax, not Strict: a professor opening the staff link in a summary email (a cross-site
  navigation) must arrive logged in, and the emailed login link's redirect must carry the new session;
  every change is guarded by the CSRF token, which Lax leaves to do its work. The session holds only
  who logged in (``email`` or ``operator``). Two small changes to Litestar's backend: a request without
  a session writes no key and sets no cookie, and a login gets a fresh session id (no session fixation).
- **CSRF**: Litestar's ``CSRFConfig`` (double-submit cookie ``staff_csrf``, header ``X-CSRFToken`` or a
  ``_csrf_token`` form field) on every state-changing ``/staff`` request. Not on the webhooks and the
  student chat (they have their own protections: a signature, the capability token), not on the login
  link request (it carries no authority and answers everyone alike), not on SAQ's queue UI (its script
  cannot send the header; it is operator-only, and a cross-site page can only send it GETs).
- **Guards**: ``staff_guard`` on every staff route (a session whose person still staffs a course, and
  for a ``{staff_id}`` route an intake of one of their courses: any other is a 404, as if it did not
  exist); ``operator_guard`` for the operator's routes. A page without a session redirects to the login
  and comes back afterwards (``?next=``).
- **Login**: the operator's password (argon2, ``INTAKE_STAFF_PASSWORD_HASH``), or a single-use emailed
  link for anyone a course pack lists (``accounts``).

How a handler gets the person and the intake: see ``services.gateway.staff.accounts``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import msgspec
import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from litestar import Request, Response
from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.session.server_side import ServerSideSessionBackend, ServerSideSessionConfig
from litestar.response import Redirect
from litestar.types import Empty, Message, ScopeSession
from litestar.utils.scope.state import ScopeState

from services.gateway import ratelimit
from services.gateway.container import Services
from services.gateway.errors import Forbidden, NotFound, Unauthorized
from services.gateway.intake.store import now_iso
from services.gateway.staff import accounts
from services.gateway.staff.accounts import StaffIntake, StaffPrincipal
from services.settings import Settings

COOKIE = "staff_session"
CSRF_COOKIE = "staff_csrf"
CSRF_HEADER = "x-csrftoken"
SESSION_STORE = "staff_sessions"
SESSION_NAMESPACE = "staff:session"
SESSION_TTL_S = 12 * 3600
LOGIN_ATTEMPTS = 8  # failed password attempts per client address and window
LOGIN_WINDOW_S = 300
LINKS_PER_EMAIL = 5  # login links per address and window
LINKS_PER_CLIENT = 20  # login link requests per client address and window
LINK_WINDOW_S = 900
_ROTATE = "_rotate"
_ATTEMPTS_KEY = "staff:login:{}"
_NEXT = re.compile(r"^/staff/[A-Za-z0-9_\-/]{0,200}$")
log = structlog.get_logger()


# --- sessions ---------------------------------------------------------------------------------------


class StaffSessionBackend(ServerSideSessionBackend):
    """Litestar's server-side backend, except: no session, no write (a visitor who never logged in costs
    no Redis key); a login (``_rotate`` in the session) moves to a fresh id and drops the old one."""

    async def store_in_message(
        self, scope_session: ScopeSession, message: Message, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> None:
        cookie = connection.cookies.get(self.config.key)
        if isinstance(scope_session, dict) and not scope_session:
            if not cookie or cookie == "null":
                return
            scope_session = Empty  # an empty session behind a cookie: delete it, expire the cookie
        if isinstance(scope_session, dict) and scope_session.pop(_ROTATE, False):
            if cookie and cookie != "null":
                await self.delete(cookie, self.config.get_store_from_app(connection.scope["app"]))
            connection.state["new_session_id"] = self.generate_session_id()
        await super().store_in_message(scope_session, message, connection)

    def get_session_id(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str:
        fresh = connection.state.get("new_session_id")
        return str(fresh) if fresh else super().get_session_id(connection)


@dataclass
class StaffSessionConfig(ServerSideSessionConfig):
    _backend_class = StaffSessionBackend


def session_config(settings: Settings) -> StaffSessionConfig:
    """Sessions only under ``/staff`` (the student's pages never load or write one)."""
    return StaffSessionConfig(
        key=COOKIE,
        path="/staff",
        max_age=SESSION_TTL_S,
        httponly=True,
        samesite="lax",
        secure=settings.public_url.startswith("https://"),
        store=SESSION_STORE,
        exclude=[r"^/(?!staff(/|$))."],
    )


def csrf_config(settings: Settings, secret: bytes) -> CSRFConfig:
    return CSRFConfig(
        secret=hashlib.sha256(b"csrf\x00" + secret).hexdigest(),
        cookie_name=CSRF_COOKIE,
        cookie_path="/staff",
        header_name=CSRF_HEADER,
        cookie_samesite="strict",
        cookie_secure=settings.public_url.startswith("https://"),
        exclude=[r"^/(?!staff(/|$)).", r"^/staff/login/link$", r"^/staff/queue(/|$)"],
    )


def csrf_token(request: Request[Any, Any, Any]) -> str:
    """The token a page's forms carry (``_csrf_token``): the CSRF middleware sets it on every GET; on a
    route it skips (the login link request) the cookie's own value is the token."""
    token = ScopeState.from_scope(request.scope).csrf_token
    return str(token or request.cookies.get(CSRF_COOKIE) or "")


def start_session(request: Request[Any, Any, Any], principal: StaffPrincipal) -> None:
    """Log ``principal`` in on this response (under a fresh session id)."""
    request.set_session(
        {"email": principal.email, "operator": principal.is_operator, "since": now_iso(), _ROTATE: True}
    )


def end_session(request: Request[Any, Any, Any]) -> None:
    request.clear_session()


def current_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> StaffPrincipal | None:
    """The logged-in person, or None (no session, or they no longer staff any course)."""
    if "session" not in connection.scope:
        return None
    session = connection.session
    if not isinstance(session, dict) or not session:
        return None
    services: Services = connection.app.state.services
    return accounts.principal_for(
        services.catalog, session.get("email"), operator=bool(session.get("operator"))
    )


# --- guards -----------------------------------------------------------------------------------------


class LoginRequired(Unauthorized):
    """No staff session: a page redirects to the login (and back), an API answers 401 problem JSON."""

    def __init__(self, detail: str, *, page: bool, next_path: str = "") -> None:
        super().__init__(detail)
        self.page = page
        self.next_path = next_path if _NEXT.match(next_path) else ""


def is_page(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """A page a person opens (redirected to the login), not an API or the queue UI (401 problem JSON)."""
    path = connection.url.path
    api = path.startswith(("/staff/api/", "/staff/queue"))
    return connection.scope.get("method", "GET") == "GET" and not api


def login_redirect(request: Request[Any, Any, Any], exc: LoginRequired) -> Response[Any]:
    """The app's handler for ``LoginRequired``: pages go to the login and come back afterwards."""
    if not exc.page:
        return exc.to_response(request)
    target = "/staff/login" + (f"?next={quote(exc.next_path, safe='/')}" if exc.next_path else "")
    return Redirect(target, status_code=303)


async def staff_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """A staff member of some course (or the operator); a ``{staff_id}`` intake must be one of theirs;
    a ``?course=`` must be one of theirs."""
    principal = _require(connection, handler)
    course = connection.query_params.get("course")
    if course and not principal.can_see(course):
        raise NotFound("No such course.")
    staff_id = connection.path_params.get("staff_id")
    if staff_id is not None:
        connection.state["staff_intake"] = await _intake_for(connection, principal, str(staff_id))


async def operator_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """The operator only (the password login): privacy operations, the audit log, the job queue UI."""
    principal = _require(connection, handler)
    if not principal.is_operator:
        raise Forbidden("Only the operator (the password login) may do this.")


def _require(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> StaffPrincipal:
    principal = current_principal(connection)
    if principal is None:
        path = connection.url.path
        raise LoginRequired(
            "Your staff session has ended. Log in again.", page=is_page(connection), next_path=path
        )
    connection.state["principal"] = principal
    return principal


async def _intake_for(
    connection: ASGIConnection[Any, Any, Any, Any], principal: StaffPrincipal, staff_id: str
) -> StaffIntake:
    services: Services = connection.app.state.services
    token = await services.intakes.token_for_staff(staff_id)
    record = await services.intakes.get(token) if token else None
    if token is None or record is None or not principal.can_see(record.course_slug):
        raise NotFound("No intake with this link (it may have expired or been deleted).")
    return StaffIntake(staff_id=staff_id, token=token, record=record)


def provide_principal(request: Request[Any, Any, Any]) -> StaffPrincipal:
    """Dependency ``principal``: set by the guard (a route without one gets a 401)."""
    principal = request.state.get("principal")
    if not isinstance(principal, StaffPrincipal):
        raise Unauthorized("Your staff session has ended. Log in again.")
    return principal


def provide_staff_intake(request: Request[Any, Any, Any]) -> StaffIntake:
    """Dependency ``staff_intake``: the ``{staff_id}`` intake the guard checked."""
    found = request.state.get("staff_intake")
    if not isinstance(found, StaffIntake):
        raise NotFound("No intake with this link (it may have expired or been deleted).")
    return found


def safe_next(value: str | None) -> str:
    """Where to go after the login: only a staff page of this site (never another host)."""
    return value if value and _NEXT.match(value) and "//" not in value else "/staff/intakes"


# --- the operator's password ------------------------------------------------------------------------


def password_login_off(services: Services) -> str | None:
    """``None`` when the password login works, else why not (shown on the login page)."""
    configured = services.settings.staff_password_hash.strip()
    if not configured:
        return (
            "The operator's password login is off: no staff password is set. Create a hash with "
            "`python -m services.gateway.staff.password` and set INTAKE_STAFF_PASSWORD_HASH."
        )
    if not configured.startswith("$argon2"):
        return "The operator's password login is off: INTAKE_STAFF_PASSWORD_HASH is not an argon2 hash."
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
    await ratelimit.hit(services.redis, _ATTEMPTS_KEY.format(accounts.digest(client)), LOGIN_WINDOW_S)


def _attempts_key(client: str) -> str:
    return ratelimit.KEY_PREFIX + _ATTEMPTS_KEY.format(accounts.digest(client))


# --- emailed login links ----------------------------------------------------------------------------


class LoginLink(msgspec.Struct, frozen=True):
    email: str
    next: str = "/staff/intakes"


async def link_allowed(services: Services, email: str, client: str) -> bool:
    """Both windows counted on every request (a refused request still counts against its client)."""
    per_client = await ratelimit.hit(
        services.redis, f"staff_link_client:{accounts.digest(client)}", LINK_WINDOW_S
    )
    per_email = await ratelimit.hit(
        services.redis, f"staff_link_email:{accounts.digest(email)}", LINK_WINDOW_S
    )
    return per_client.count <= LINKS_PER_CLIENT and per_email.count <= LINKS_PER_EMAIL


async def issue_login_link(services: Services, email: str, next_path: str) -> str:
    """A single-use token for ``email``, valid ``LINK_TTL_S``; only its digest is stored."""
    token = accounts.new_link_token()
    value = msgspec.json.encode(LoginLink(email=email, next=safe_next(next_path)))
    await services.redis.set(accounts.link_key(token), value, ex=accounts.LINK_TTL_S)
    return token


async def peek_login_link(services: Services, token: str) -> LoginLink | None:
    """The link's person without using it up: opening the link (GET, which mail scanners do too) only
    shows the "Log in" button; pressing it (POST) redeems the link."""
    if not token or len(token) > 100:
        return None
    return _link(await services.redis.get(accounts.link_key(token)))


async def redeem_login_link(services: Services, token: str) -> LoginLink | None:
    """The link's person, once: the first opening deletes it (GETDEL), a second one finds nothing."""
    if not token or len(token) > 100:
        return None
    return _link(await services.redis.getdel(accounts.link_key(token)))


def _link(raw: bytes | str | None) -> LoginLink | None:
    if not raw:
        return None
    try:
        return msgspec.json.decode(raw, type=LoginLink)
    except msgspec.DecodeError:
        return None


def login_url(settings: Settings, token: str) -> str:
    return f"{settings.public_url.rstrip('/')}/staff/login/{token}"
