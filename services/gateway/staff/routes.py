"""Staff pages under ``/staff``: login, the intake list, a live intake with take-over, summary rating.

The HTML pages are static files from ``frontend/staff/`` served only with a session; their data comes
from the JSON endpoints under ``/staff/api``. With no ``INTAKE_STAFF_PASSWORD_HASH`` every staff page
says so (503) instead of offering a login that cannot work.
"""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Callable
from typing import Annotated, Literal
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
from msgspec import Meta

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
from services.gateway.intake.models import ChatMessage, IntakeRecord, IntakeView, Summary
from services.gateway.peers import client_address
from services.gateway.ratelimit import LIMIT
from services.gateway.staff import auth
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


class StaffIntakeRow(msgspec.Struct, frozen=True, kw_only=True):
    token: str
    course: str
    student_name: str
    appointment_start: str
    status: str
    turn: int
    max_turns: int
    taken_over: bool
    updated_at: str


class DeliveryJob(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    state: str
    attempts: int
    last_error: str | None = None


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


class StaffIntakeDetail(msgspec.Struct, frozen=True, kw_only=True):
    """What the staff detail page polls: the student's view plus what only staff may see."""

    token: str
    intake: IntakeView
    booking_uid: str
    student_email: str
    consented_at: str | None
    updated_at: str
    summary_delivered_at: str | None
    pending_deliveries: list[DeliveryJob]
    student_rating: str | None
    professor_rating: str | None
    transcript_url: str
    summary: Summary | None = None  # the professor's full summary (the student's view leaves fields out)


class TakeOverIn(msgspec.Struct, frozen=True):
    taken_over: bool


class StaffMessageIn(msgspec.Struct, frozen=True):
    text: Annotated[str, Meta(max_length=4000)]


class ProfessorRatingIn(msgspec.Struct, frozen=True):
    value: Literal["useful", "not_useful"]


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
async def list_page(request: Request, services: NamedDependency[Services]) -> Response[bytes] | Redirect:
    return await _page(request, services, "list.html")


@get("/staff/intakes/{token:str}", media_type=MediaType.HTML, responses=_PAGE_ANSWERS)
async def detail_page(
    token: FromPath[str], request: Request, services: NamedDependency[Services]
) -> Response[bytes] | Redirect:
    return await _page(request, services, "detail.html")


# --- JSON for the pages -----------------------------------------------------------------------------


@get("/staff/api/intakes", responses=_API)
async def list_intakes(request: Request, services: NamedDependency[Services]) -> list[StaffIntakeRow]:
    await _authorized(request, services)
    store = services.intakes
    records = await asyncio.gather(*(store.get(t) for t in await store.tokens(limit=200)))
    return [_row(services, r) for r in records if r is not None]


@get("/staff/api/intakes/{token:str}", responses={**_API, **problems(NotFound)})
async def intake_detail(
    token: FromPath[str], request: Request, services: NamedDependency[Services]
) -> Response[StaffIntakeDetail]:
    await _authorized(request, services)
    record = await _load(services, token)
    return Response(await _detail(services, record), headers={"Cache-Control": "no-store"})


@post("/staff/api/intakes/{token:str}/takeover", status_code=200, responses=_CHANGE)
async def take_over(
    token: FromPath[str], request: Request, services: NamedDependency[Services]
) -> StaffIntakeDetail:
    """Staff answer instead of the model (or hand the chat back to it)."""
    await _authorized(request, services)
    body = chat.decode_body(await chat.read_capped(request, _BODY_CAP), TakeOverIn)

    def apply(record: IntakeRecord) -> None:
        record.taken_over = body.taken_over

    record = await _mutate(services, token, apply)
    log.info("intake_taken_over", booking_uid=record.booking.uid, taken_over=body.taken_over)
    return await _detail(services, record)


@post("/staff/api/intakes/{token:str}/messages", status_code=200, responses=_CHANGE)
async def staff_message(
    token: FromPath[str], request: Request, services: NamedDependency[Services]
) -> StaffIntakeDetail:
    """A staff message shows in the student's chat as role ``staff``; sending one takes the chat over."""
    await _authorized(request, services)
    body = chat.decode_body(await chat.read_capped(request, _BODY_CAP * 3), StaffMessageIn)
    text = body.text.strip()
    if not text:
        raise Unprocessable("The message is empty.")

    def apply(record: IntakeRecord) -> None:
        if record.status == "cancelled":
            raise Gone("This booking was cancelled; the chat is closed.")
        record.taken_over = True
        record.interview.messages.append(ChatMessage("staff", text))

    record = await _mutate(services, token, apply)
    log.info("staff_message_sent", booking_uid=record.booking.uid)
    return await _detail(services, record)


@post("/staff/api/intakes/{token:str}/rating", status_code=200, responses=_CHANGE)
async def rate_summary(
    token: FromPath[str], request: Request, services: NamedDependency[Services]
) -> StaffIntakeDetail:
    await _authorized(request, services)
    body = chat.decode_body(await chat.read_capped(request, _BODY_CAP), ProfessorRatingIn)

    def apply(record: IntakeRecord) -> None:
        if record.summary is None:
            raise Conflict("There is no summary to rate yet.")
        record.professor_rating = body.value

    record = await _mutate(services, token, apply)
    log.info("summary_rated", booking_uid=record.booking.uid, value=body.value)
    return await _detail(services, record)


@get("/staff/api/deliveries/failed", responses=_API)
async def failed_deliveries(
    request: Request, services: NamedDependency[Services]
) -> Response[list[FailedDelivery]]:
    """Jobs the worker gave up on (dead), most recent first, for the list page."""
    await _authorized(request, services)
    rows: list[FailedDelivery] = []
    for job in await services.jobs.dead_letters(limit=100):
        uid = job.booking.uid if job.booking else ""
        if not uid:
            record = await services.intakes.get(job.token)
            uid = record.booking.uid if record else ""
        rows.append(
            FailedDelivery(
                id=job.id,
                kind=job.kind,
                booking_uid=uid,
                intake_url=chat.transcript_url(services.settings, job.token),
                attempts=job.attempts,
                last_error=_scrub_error(job.last_error),
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
    await _authorized(request, services)
    job = await services.jobs.get(job_id[:200])
    if job is None:
        raise NotFound("No delivery with this id (it may have expired).")
    if not await services.jobs.requeue(job.id):
        raise Conflict(f"This delivery is {job.state}, not failed; there is nothing to retry.")
    log.info("delivery_requeued", job_id=job.id, kind=job.kind)
    return RetriedDelivery(id=job.id, state="pending")


# --- helpers ----------------------------------------------------------------------------------------


async def _page(request: Request, services: Services, name: str) -> Response[bytes] | Redirect:
    disabled = auth.staff_enabled(services)
    if disabled:
        return _login(disabled, 503, form=False)
    if not await auth.has_session(services, request.cookies.get(auth.COOKIE)):
        return Redirect("/staff/login", status_code=303)
    return Response(
        (PAGES / name).read_bytes(), media_type=MediaType.HTML, headers=PAGE_HEADERS, status_code=200
    )


async def _authorized(request: Request, services: Services) -> None:
    disabled = auth.staff_enabled(services)
    if disabled:
        raise NotConfigured(disabled)
    if not await auth.has_session(services, request.cookies.get(auth.COOKIE)):
        raise Unauthorized("Your staff session has ended. Log in again.")


async def _load(services: Services, token: str) -> IntakeRecord:
    record = await services.intakes.get(token)
    if record is None:
        raise NotFound("No intake with this link (it may have expired or been deleted).")
    return record


async def _mutate(services: Services, token: str, apply: Callable[[IntakeRecord], None]) -> IntakeRecord:
    """Change a record under the turn lock (a running student turn never overwrites the change), as a
    compare-and-set (a cancellation arriving meanwhile is never undone)."""
    async with services.intakes.turn_lock(token, ttl_s=30):
        record = await services.intakes.update(token, apply)
    if record is None:
        raise NotFound("No intake with this link (it may have expired or been deleted).")
    return record


def _row(services: Services, record: IntakeRecord) -> StaffIntakeRow:
    course = services.catalog.courses.get(record.course_slug)
    return StaffIntakeRow(
        token=record.token,
        course=course.code if course else record.course_slug,
        student_name=record.booking.student.name,
        appointment_start=record.booking.start_time,
        status=record.status,
        turn=record.interview.turn,
        max_turns=services.settings.max_turns,
        taken_over=record.taken_over,
        updated_at=record.updated_at,
    )


async def _detail(services: Services, record: IntakeRecord) -> StaffIntakeDetail:
    course = services.catalog.courses.get(record.course_slug)
    return StaffIntakeDetail(
        token=record.token,
        intake=chat.build_view(record, course, services.settings),
        booking_uid=record.booking.uid,
        student_email=record.booking.student.email,
        consented_at=record.consented_at,
        updated_at=record.updated_at,
        summary_delivered_at=record.summary_delivered_at,
        pending_deliveries=await _pending_deliveries(services, record.token),
        student_rating=record.student_rating,
        professor_rating=record.professor_rating,
        transcript_url=chat.transcript_url(services.settings, record.token),
        summary=record.summary,
    )


async def _pending_deliveries(services: Services, token: str) -> list[DeliveryJob]:
    """The intake's jobs still pending, running or dead (finished jobs leave the list)."""
    jobs = await services.jobs.jobs_for(token)
    return [
        DeliveryJob(kind=j.kind, state=j.state, attempts=j.attempts, last_error=_scrub_error(j.last_error))
        for j in jobs
    ]


_EMAIL = re.compile(r"[^\s@<>()\[\]:;,\"']+@[^\s@<>()\[\]:;,\"']+")
_ERROR_CHARS = 200


def _scrub_error(error: str | None) -> str | None:
    """SMTP and HTTP errors often quote the recipient: mask addresses, and keep the list readable."""
    if not error:
        return error
    text = _EMAIL.sub("[email]", error)
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 1] + "…"


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
    list_intakes,
    intake_detail,
    take_over,
    staff_message,
    rate_summary,
    failed_deliveries,
    retry_delivery,
]
