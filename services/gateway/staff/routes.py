"""Staff pages under ``/staff``: the intake list, a live intake with take-over, summary rating.

The HTML pages are static files from ``frontend/staff/`` served only with a session; their data comes
from the JSON endpoints under ``/staff/api``. The app mounts every route here behind ``auth.staff_guard``
(a session, and the course permission: another course's intake is a 404); the login is ``login.py``.
Intakes are addressed by their ``staff_id``, never the student's token.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Annotated, Literal

import msgspec
import structlog
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath
from litestar.response import Redirect
from msgspec import Meta

from services.gateway.container import Services
from services.gateway.errors import (
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unprocessable,
    problems,
)
from services.gateway.intake import chat
from services.gateway.intake.models import ChatMessage, IntakeRecord, IntakeView, Summary
from services.gateway.staff.accounts import StaffIntake, StaffPrincipal
from services.gateway.staff.audit import Action, audit
from services.gateway.staff.login import PAGE_HEADERS
from services.settings import REPO_ROOT

PAGES = REPO_ROOT / "frontend" / "staff"
_BODY_CAP = 8 * 1024
log = structlog.get_logger()

# what the published schema says each kind of staff route can answer
_PAGE_ANSWERS = {303: ResponseSpec(None, description="No staff session: to /staff/login?next=...")}
_API = problems(Unauthorized, Forbidden)  # 403: a change without the CSRF token
_CHANGE = {**_API, **problems(NotFound, Conflict, Gone, PayloadTooLarge, Unprocessable)}


class StaffIntakeRow(msgspec.Struct, frozen=True, kw_only=True):
    staff_id: str
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

    staff_id: str
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


@get("/staff/intakes", media_type=MediaType.HTML, responses=_PAGE_ANSWERS)
async def list_page() -> Response[bytes]:
    return _page("list.html")


@get(
    "/staff/intakes/{staff_id:str}",
    media_type=MediaType.HTML,
    responses={**_PAGE_ANSWERS, **problems(NotFound)},
)
async def detail_page(
    staff_intake: NamedDependency[StaffIntake],
    principal: NamedDependency[StaffPrincipal],
    services: NamedDependency[Services],
) -> Response[bytes]:
    course = staff_intake.record.course_slug
    await audit(services, principal.actor, "view", staff_intake.staff_id, course=course)
    return _page("detail.html")


# --- JSON for the pages -----------------------------------------------------------------------------


@get("/staff/api/intakes", responses=_API)
async def list_intakes(
    principal: NamedDependency[StaffPrincipal], services: NamedDependency[Services]
) -> list[StaffIntakeRow]:
    store = services.intakes
    records = await asyncio.gather(*(store.get(t) for t in await store.tokens(limit=200)))
    return [_row(services, r) for r in records if r is not None and principal.can_see(r.course_slug)]


@get("/staff/api/intakes/{staff_id:str}", responses={**_API, **problems(NotFound)})
async def intake_detail(
    staff_intake: NamedDependency[StaffIntake], services: NamedDependency[Services]
) -> Response[StaffIntakeDetail]:
    return Response(await _detail(services, staff_intake.record), headers={"Cache-Control": "no-store"})


@post("/staff/api/intakes/{staff_id:str}/takeover", status_code=200, responses=_CHANGE)
async def take_over(
    staff_intake: NamedDependency[StaffIntake],
    principal: NamedDependency[StaffPrincipal],
    request: Request,
    services: NamedDependency[Services],
) -> StaffIntakeDetail:
    """Staff answer instead of the model (or hand the chat back to it)."""
    token = staff_intake.token
    body = chat.decode_body(await chat.read_capped(request, _BODY_CAP), TakeOverIn)

    def apply(record: IntakeRecord) -> None:
        record.taken_over = body.taken_over

    record = await _mutate(services, token, apply)
    log.info("intake_taken_over", booking_uid=record.booking.uid, taken_over=body.taken_over)
    action: Action = "takeover" if body.taken_over else "hand_back"
    await audit(services, principal.actor, action, staff_intake.staff_id, course=record.course_slug)
    return await _detail(services, record)


@post("/staff/api/intakes/{staff_id:str}/messages", status_code=200, responses=_CHANGE)
async def staff_message(
    staff_intake: NamedDependency[StaffIntake],
    principal: NamedDependency[StaffPrincipal],
    request: Request,
    services: NamedDependency[Services],
) -> StaffIntakeDetail:
    """A staff message shows in the student's chat as role ``staff``; sending one takes the chat over."""
    token = staff_intake.token
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
    await audit(services, principal.actor, "message", staff_intake.staff_id, course=record.course_slug)
    return await _detail(services, record)


@post("/staff/api/intakes/{staff_id:str}/rating", status_code=200, responses=_CHANGE)
async def rate_summary(
    staff_intake: NamedDependency[StaffIntake],
    principal: NamedDependency[StaffPrincipal],
    request: Request,
    services: NamedDependency[Services],
) -> StaffIntakeDetail:
    token = staff_intake.token
    body = chat.decode_body(await chat.read_capped(request, _BODY_CAP), ProfessorRatingIn)

    def apply(record: IntakeRecord) -> None:
        if record.summary is None:
            raise Conflict("There is no summary to rate yet.")
        record.professor_rating = body.value

    record = await _mutate(services, token, apply)
    log.info("summary_rated", booking_uid=record.booking.uid, value=body.value)
    await audit(services, principal.actor, "rate", staff_intake.staff_id, course=record.course_slug)
    return await _detail(services, record)


@get("/staff/api/deliveries/failed", responses=_API)
async def failed_deliveries(
    principal: NamedDependency[StaffPrincipal], services: NamedDependency[Services]
) -> Response[list[FailedDelivery]]:
    """Jobs the worker gave up on (dead) for the person's courses, most recent first, for the list page."""
    rows: list[FailedDelivery] = []
    for job in await services.jobs.dead_letters(limit=100):
        record = await services.intakes.get(job.token)
        if record is None or not principal.can_see(record.course_slug):
            continue
        uid = job.booking.uid if job.booking else record.booking.uid
        rows.append(
            FailedDelivery(
                id=job.id,
                kind=job.kind,
                booking_uid=uid,
                intake_url=chat.transcript_url(services.settings, record.staff_id),
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
    job_id: FromPath[str], principal: NamedDependency[StaffPrincipal], services: NamedDependency[Services]
) -> RetriedDelivery:
    """Give a dead job a fresh set of attempts; the worker picks it up at once."""
    job = await services.jobs.get(job_id[:200])
    record = await services.intakes.get(job.token) if job else None
    if job is None or not (principal.is_operator or (record and principal.can_see(record.course_slug))):
        raise NotFound("No delivery with this id (it may have expired).")
    if not await services.jobs.requeue(job.id):
        raise Conflict(f"This delivery is {job.state}, not failed; there is nothing to retry.")
    log.info("delivery_requeued", job_id=job.id, kind=job.kind)
    await audit(services, principal.actor, "retry", job.id, course=record.course_slug if record else "")
    return RetriedDelivery(id=job.id, state="pending")


# --- helpers ----------------------------------------------------------------------------------------


def _page(name: str) -> Response[bytes]:
    return Response(
        (PAGES / name).read_bytes(), media_type=MediaType.HTML, headers=PAGE_HEADERS, status_code=200
    )


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
        staff_id=record.staff_id,
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
        staff_id=record.staff_id,
        intake=chat.build_view(record, course, services.settings),
        booking_uid=record.booking.uid,
        student_email=record.booking.student.email,
        consented_at=record.consented_at,
        updated_at=record.updated_at,
        summary_delivered_at=record.summary_delivered_at,
        pending_deliveries=await _pending_deliveries(services, record.token),
        student_rating=record.student_rating,
        professor_rating=record.professor_rating,
        transcript_url=chat.transcript_url(services.settings, record.staff_id),
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


ROUTES = [
    staff_home,
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
