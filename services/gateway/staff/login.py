"""Staff login and logout: the login page, the operator's password, emailed single-use login links.

``POST /staff/login/link`` answers every address alike (202, the same words), so nobody can find out
who is staff; for an address a course pack lists, a link ``/staff/login/{token}`` valid 15 minutes goes
out by email. Opening it starts a session and goes on to where the person was headed (``next``).
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import parse_qs

import msgspec
import structlog
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath
from litestar.response import Redirect

from services.gateway.container import Services
from services.gateway.delivery.email import build_login_email, send_email
from services.gateway.errors import Forbidden, TooManyRequests, problems
from services.gateway.intake import chat
from services.gateway.peers import client_address
from services.gateway.ratelimit import LIMIT
from services.gateway.staff import accounts, auth
from services.gateway.staff.audit import audit
from services.settings import REPO_ROOT

PAGES = REPO_ROOT / "frontend" / "staff"
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
}
LINK_SENT = (
    "If this address belongs to the staff of a course here, a login link is on its way to it. "
    "The link works once, for 15 minutes."
)
_BODY_CAP = 4096
log = structlog.get_logger()

_LOGIN_ANSWERS = {
    401: ResponseSpec(None, description="Wrong password: the login page again", media_type=MediaType.HTML),
    **problems(TooManyRequests, Forbidden),  # 403: the form's CSRF token is missing or wrong
    503: ResponseSpec(None, description="No operator password set", media_type=MediaType.HTML),
}


class LoginLinkIn(msgspec.Struct, frozen=True):
    email: str
    next: str = ""


class LinkRequested(msgspec.Struct, frozen=True):
    """The 202 answer, the same for every address."""

    detail: str


@get("/staff/login", media_type=MediaType.HTML)
async def login_page(request: Request, services: NamedDependency[Services]) -> Response[bytes]:
    return login_form(request, services, "", 200, next_path=request.query_params.get("next", ""))


@post(
    "/staff/login", media_type=MediaType.HTML, status_code=303, opt={LIMIT: "login"}, responses=_LOGIN_ANSWERS
)
async def password_login(request: Request, services: NamedDependency[Services]) -> Response[bytes] | Redirect:
    """The operator's password: every course, and the operator-only pages."""
    form = parse_qs((await chat.read_capped(request, _BODY_CAP)).decode("utf-8", "replace"))
    next_path = (form.get("next") or [""])[0][:300]
    off = auth.password_login_off(services)
    if off:
        return login_form(request, services, off, 503, next_path=next_path)
    client = client_address(request)
    if await auth.throttled(services, client):
        log.warning("staff_login_throttled")
        return login_form(request, services, "Too many attempts. Wait a few minutes, then try again.", 429)
    password = (form.get("password") or [""])[0][:256]
    if not password or not await auth.check_password(services, password):
        await auth.count_failure(services, client)
        log.info("staff_login_failed")
        return login_form(request, services, "That password is not right.", 401, next_path=next_path)
    principal = accounts.principal_for(services.catalog, None, operator=True)
    assert principal is not None
    auth.start_session(request, principal)
    await audit(services, principal.actor, "login", "password")
    log.info("staff_logged_in", operator=True)
    return Redirect(auth.safe_next(next_path), status_code=303)


@post("/staff/login/link", status_code=202, media_type=MediaType.JSON)
async def request_login_link(request: Request, services: NamedDependency[Services]) -> Response[Any]:
    """Always 202 with the same words; a known staff address gets a single-use link by email. Its own
    limits (per address and per client, ``auth.link_allowed``) refuse silently: a 429 would tell."""
    body = await chat.read_capped(request, _BODY_CAP)
    wanted = _link_request(request, body)
    email = accounts.normalize_email(wanted.email) if wanted else None
    if email and await auth.link_allowed(services, email, client_address(request)):
        if accounts.principal_for(services.catalog, email) is not None:
            token = await auth.issue_login_link(services, email, wanted.next if wanted else "")
            chat.spawn(_send_link(services, email, token))
        else:  # the same Redis work as a known address, so the answer's timing tells nothing either
            await services.redis.set(accounts.link_key(accounts.new_link_token()), b"", ex=1, nx=True)
    if request.headers.get("content-type", "").startswith("application/json"):
        return Response(LinkRequested(LINK_SENT), status_code=202, headers={"Cache-Control": "no-store"})
    return login_form(request, services, LINK_SENT, 202, kind="info")


_LINK_USED = "This login link has expired or was already used. Ask for a new one below."


@get(
    "/staff/login/{token:str}",
    media_type=MediaType.HTML,
    responses={
        410: ResponseSpec(
            None, description="Used, expired or unknown link: the login page", media_type=MediaType.HTML
        )
    },
)
async def show_login_link(
    token: FromPath[str], request: Request, services: NamedDependency[Services]
) -> Response[bytes]:
    """The emailed link opens a page with one "Log in" button; the link stays unused until it is pressed
    (a mail filter that opens every link to check it must not log in, or spend the link)."""
    link = await auth.peek_login_link(services, token)
    principal = accounts.principal_for(services.catalog, link.email) if link else None
    if link is None or principal is None:
        return login_form(request, services, _LINK_USED, 410)
    page = (PAGES / "login-confirm.html").read_text(encoding="utf-8")
    for key, value in {
        "{{name}}": html.escape(principal.name or principal.email),
        "{{action}}": f"/staff/login/{html.escape(token)}",
        "{{csrf}}": html.escape(auth.csrf_token(request)),
    }.items():
        page = page.replace(key, value)
    return Response(page.encode(), media_type=MediaType.HTML, headers=PAGE_HEADERS)


@post(
    "/staff/login/{token:str}",
    media_type=MediaType.HTML,
    status_code=303,
    responses={
        410: ResponseSpec(
            None, description="Used, expired or unknown link: the login page", media_type=MediaType.HTML
        ),
        **problems(Forbidden),
    },
)
async def open_login_link(
    token: FromPath[str], request: Request, services: NamedDependency[Services]
) -> Response[bytes] | Redirect:
    """The "Log in" button of an emailed link: the first press logs in; a used, expired or unknown link
    says so."""
    link = await auth.redeem_login_link(services, token)
    principal = accounts.principal_for(services.catalog, link.email) if link else None
    if link is None or principal is None:
        log.info("staff_login_link_refused")
        return login_form(request, services, _LINK_USED, 410)
    auth.start_session(request, principal)
    await audit(services, principal.actor, "login", "link")
    log.info("staff_logged_in", operator=False, courses=len(principal.courses))
    return Redirect(auth.safe_next(link.next), status_code=303)


@post("/staff/logout", media_type=MediaType.HTML, status_code=303, responses=problems(Forbidden))
async def logout(request: Request, services: NamedDependency[Services]) -> Redirect:
    principal = auth.current_principal(request)
    if principal is not None:
        await audit(services, principal.actor, "logout")
    auth.end_session(request)
    return Redirect("/staff/login", status_code=303)


async def _send_link(services: Services, email: str, token: str) -> None:
    """Off the request (the answer must not wait for SMTP, or its timing would tell a known address)."""
    try:
        message = build_login_email(services.settings, email, auth.login_url(services.settings, token))
        await send_email(services.settings, message, "login")
        log.info("staff_login_link_sent")
    except Exception as exc:  # the person asks again; nothing to retry for a 15-minute link
        log.warning("staff_login_link_failed", error=type(exc).__name__)


def _link_request(request: Request, body: bytes) -> LoginLinkIn | None:
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            return msgspec.json.decode(body, type=LoginLinkIn)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None
    form = parse_qs(body.decode("utf-8", "replace"))
    return LoginLinkIn(email=(form.get("email") or [""])[0][:300], next=(form.get("next") or [""])[0][:300])


def login_form(
    request: Request,
    services: Services,
    message: str,
    status: int,
    *,
    next_path: str = "",
    kind: str = "alert",
) -> Response[bytes]:
    page = (PAGES / "login.html").read_text(encoding="utf-8")
    role = "alert" if kind == "alert" else "status"
    notice = f'<p class="notice {kind}" role="{role}">{html.escape(message)}</p>' if message else ""
    off = auth.password_login_off(services)
    password_shown = status in (401, 429) or (status == 503 and off is not None)
    replacements = {
        "{{notice}}": notice,
        "{{next}}": html.escape(auth.safe_next(next_path) if next_path else ""),
        "{{csrf}}": html.escape(auth.csrf_token(request)),
        "{{form_hidden}}": "hidden" if off else "",
        "{{password_open}}": "open" if password_shown else "",
        "{{link_hidden}}": "",
    }
    for key, value in replacements.items():
        page = page.replace(key, value)
    return Response(page.encode(), media_type=MediaType.HTML, headers=PAGE_HEADERS, status_code=status)


ROUTES = [login_page, password_login, request_login_link, show_login_link, open_login_link, logout]
