"""Staff pages under ``/staff``: login, the intake list, a live intake with take-over, summary rating.

The HTML pages are static files from ``frontend/staff/`` served only with a session; their data comes
from the JSON endpoints under ``/staff/api``. With no ``INTAKE_STAFF_PASSWORD_HASH`` every staff page
says so (503) instead of offering a login that cannot work.
"""

from __future__ import annotations

import html
from urllib.parse import parse_qs

import msgspec
import structlog
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath
from litestar.response import Redirect

from services.gateway.container import Services
from services.gateway.errors import (
    Conflict,
    Gone,
    NotConfigured,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
    problems,
)
from services.gateway.intake import chat
from services.gateway.peers import client_address
from services.gateway.ratelimit import LIMIT
from services.gateway.staff import auth, broadcast, intakes, live, takeover
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
_BODY_CAP = 8 * 1024
log = structlog.get_logger()

# what the published schema says each kind of staff route can answer
_DISABLED = {
    503: ResponseSpec(
        None, description="Staff pages are off (no staff password set)", media_type=MediaType.HTML
    )
}
_PAGE_ANSWERS = {303: ResponseSpec(None, description="No staff session: to /staff/login"), **_DISABLED}
_LOGIN_ANSWERS = {
    401: ResponseSpec(None, description="Wrong password: the login page again", media_type=MediaType.HTML),
    **problems(TooManyRequests),
    **_DISABLED,
}
_API = problems(Unauthorized, NotConfigured)
_CHANGE = {**_API, **problems(NotFound, Conflict, Gone, PayloadTooLarge, Unprocessable)}


class FailedDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """A dead job as the staff list shows it: enough to find the intake and judge a
    retry, never the student's email address or anything from the transcript."""

    id: str
    kind: str
    booking_uid: str
    intake_url: str
    attempts: int
    last_error: str | None
    failed_at: str


class RetriedDelivery(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    state: str


# --- pages ------------------------------------------------------------------------------------------


@get("/staff", media_type=MediaType.HTML, status_code=303)
async def staff_home() -> Redirect:
    return Redirect("/staff/intakes", status_code=303)


@get("/staff/login", media_type=MediaType.HTML, responses=_DISABLED)
async def login_page(services: NamedDependency[Services]) -> Response[bytes]:
    disabled = auth.staff_enabled(services)
    if disabled:
        return _login(disabled, 503, form=False)
    return _login("", 200)


@post(
    "/staff/login", media_type=MediaType.HTML, status_code=303, opt={LIMIT: "login"}, responses=_LOGIN_ANSWERS
)
async def login(request: Request, services: NamedDependency[Services]) -> Response[bytes] | Redirect:
    disabled = auth.staff_enabled(services)
    if disabled:
        return _login(disabled, 503, form=False)
    client = client_address(request)
    if await auth.throttled(services, client):
        log.warning("staff_login_throttled")
        return _login("Too many attempts. Wait a few minutes, then try again.", 429)
    form = parse_qs((await chat.read_capped(request, 4096)).decode("utf-8", "replace"))
    password = (form.get("password") or [""])[0][:256]
    if not password or not await auth.check_password(services, password):
        await auth.count_failure(services, client)
        log.info("staff_login_failed")
        return _login("That password is not right.", 401)
    log.info("staff_logged_in")
    cookie = await auth.open_session(services)
    return Redirect("/staff/intakes", status_code=303, cookies=[_cookie(services, cookie)])


@post("/staff/logout", media_type=MediaType.HTML, status_code=303)
async def logout(request: Request, services: NamedDependency[Services]) -> Redirect:
    await auth.close_session(services, request.cookies.get(auth.COOKIE))
    gone = _cookie(services, "", max_age=0)
    return Redirect("/staff/login", status_code=303, cookies=[gone])


@get("/staff/intakes", media_type=MediaType.HTML, responses=_PAGE_ANSWERS)
async def list_page() -> Response[bytes]:
    """The dashboard (its data: ``/staff/api/intakes`` and the live ``/staff/api/events``)."""
    return _static_page("list.html")


@get(
    "/staff/intakes/{staff_id:str}",
    media_type=MediaType.HTML,
    responses=_PAGE_ANSWERS,
)
async def detail_page(
    staff_id: FromPath[str], request: Request, services: NamedDependency[Services]
) -> Response[bytes]:
    """One intake (another course's is a 404, like one that does not exist); opening it is audited."""
    found = intakes.addressed(request)
    await audit(services, intakes.who(request).actor, "view", found.staff_id, course=found.record.course_slug)
    return _static_page("detail.html")


# --- JSON for the pages -----------------------------------------------------------------------------


@get("/staff/api/deliveries/failed", responses=_API)
async def failed_deliveries(
    request: Request, services: NamedDependency[Services]
) -> Response[list[FailedDelivery]]:
    """Jobs the worker gave up on (dead), most recent first, for the list page: only those of the staff
    member's courses, each with its intake's staff link (never the student's token)."""
    principal = intakes.who(request)
    rows: list[FailedDelivery] = []
    for job in await services.jobs.dead_letters(limit=100):
        record = await services.intakes.get(job.token)
        if record is None or not principal.can_see(record.course_slug):
            continue
        rows.append(
            FailedDelivery(
                id=job.id,
                kind=job.kind,
                booking_uid=record.booking.uid,
                intake_url=chat.transcript_url(services.settings, record.staff_id),
                attempts=job.attempts,
                last_error=intakes.scrub_error(job.last_error),
                failed_at=job.updated_at,
            )
        )
    return Response(rows, headers={"Cache-Control": "no-store"})


@post(
    "/staff/api/deliveries/{job_id:str}/retry",
    status_code=200,
    responses={**_API, **problems(NotFound, Conflict)},
)
async def retry_delivery(
    job_id: FromPath[str], request: Request, services: NamedDependency[Services]
) -> RetriedDelivery:
    """Give a dead job a fresh set of attempts; the worker picks it up at once."""
    principal = intakes.who(request)
    job = await services.jobs.get(job_id[:200])
    record = await services.intakes.get(job.token) if job else None
    if job is None or record is None or not principal.can_see(record.course_slug):
        raise NotFound("No delivery with this id (it may have expired).")
    if not await services.jobs.requeue(job.id):
        raise Conflict(f"This delivery is {job.state}, not failed; there is nothing to retry.")
    log.info("delivery_requeued", job_id=job.id, kind=job.kind)
    await audit(services, principal.actor, "retry", job.id, course=record.course_slug)
    return RetriedDelivery(id=job.id, state="pending")


# --- helpers ----------------------------------------------------------------------------------------


def _static_page(name: str) -> Response[bytes]:
    return Response(
        (PAGES / name).read_bytes(), media_type=MediaType.HTML, headers=PAGE_HEADERS, status_code=200
    )


def _login(message: str, status: int, *, form: bool = True) -> Response[bytes]:
    page = (PAGES / "login.html").read_text(encoding="utf-8")
    notice = f'<p class="notice" role="alert">{html.escape(message)}</p>' if message else ""
    page = page.replace("{{notice}}", notice).replace("{{form_hidden}}", "" if form else "hidden")
    return Response(page.encode(), media_type=MediaType.HTML, headers=PAGE_HEADERS, status_code=status)


def _cookie(services: Services, value: str, max_age: int = auth.SESSION_TTL_S) -> Cookie:
    return Cookie(
        key=auth.COOKIE,
        value=value,
        path="/staff",
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=services.settings.public_url.startswith("https://"),
    )


ROUTES = [
    staff_home,
    login_page,
    login,
    logout,
    list_page,
    detail_page,
    failed_deliveries,
    retry_delivery,
    *intakes.ROUTES,
    *takeover.ROUTES,
    *live.ROUTES,
    *broadcast.ROUTES,
]
