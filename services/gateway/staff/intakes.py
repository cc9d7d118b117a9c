"""What every staff intake handler shares: who is asking (and for which courses), finding an intake by
its staff link, changing it under the turn lock, and the detail the intake page shows.

A staff member only ever sees the intakes of the courses they staff: an intake of another course is
answered exactly like one that does not exist (404).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Callable
from typing import Annotated, Literal

import msgspec
import structlog
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from services.analytics import intake as intake_events
from services.gateway.container import Services
from services.gateway.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unprocessable,
    problems,
)
from services.gateway.intake import chat
from services.gateway.intake.models import IntakeRecord, IntakeView, Summary
from services.gateway.staff import dashboard
from services.gateway.staff.accounts import StaffIntake, StaffPrincipal
from services.gateway.staff.audit import audit

log = structlog.get_logger()
NOT_FOUND = "No intake with this link (it may have expired, been deleted, or belong to another course)."


def staff_ref(record: IntakeRecord) -> str:
    """The id in the intake's staff link (``/staff/intakes/{staff_id}``), never the student's token."""
    return record.staff_id


async def mutate(
    services: Services, token: str, apply: Callable[[IntakeRecord], bool | None]
) -> IntakeRecord:
    """Change a record under the turn lock (a running student turn never overwrites the change), as a
    compare-and-set (a cancellation arriving meanwhile is never undone)."""
    async with services.intakes.turn_lock(token, ttl_s=30):
        stored = await services.intakes.update(token, apply)
    if stored is None:
        raise NotFound(NOT_FOUND)
    return stored


class DeliveryJob(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    state: str
    attempts: int
    last_error: str | None = None


class StaffIntakeDetail(msgspec.Struct, frozen=True, kw_only=True):
    """The intake page: the summary in labels first, then the student's view and what only staff see."""

    staff_id: str
    intake: IntakeView
    course_code: str
    course_title: str
    meeting_time: str  # in the course's time zone
    status_label: str
    attention: list[dashboard.Attention]
    attention_labels: list[str]
    overview: dashboard.SummaryView | None
    booking_uid: str
    student_email: str
    consented_at: str | None
    updated_at: str
    summary_delivered_at: str | None
    pending_deliveries: list[DeliveryJob]
    student_rating: str | None
    professor_rating: str | None
    transcript_url: str
    taken_over_by: str
    acknowledged_by: str
    can_take_over: bool
    take_over_refusal: str  # why taking over is not possible ("" when it is)
    summary: Summary | None = None  # the professor's full summary (the student's view leaves fields out)


async def detail(services: Services, record: IntakeRecord) -> StaffIntakeDetail:
    course = services.catalog.courses.get(record.course_slug)
    jobs = await services.jobs.jobs_for(record.token)
    failed = {record.token} if any(j.state == "dead" for j in jobs) else set()
    attention = dashboard.needs(record, failed)
    refusal = take_over_refusal(record)
    return StaffIntakeDetail(
        staff_id=staff_ref(record),
        intake=chat.build_view(record, course, services.settings),
        course_code=course.code if course else record.course_slug,
        course_title=course.title if course else "",
        meeting_time=dashboard.meeting_time(record.booking.start_time, course.timezone if course else "UTC"),
        status_label=dashboard.STATUS_LABELS.get(record.status, record.status),
        attention=attention,
        attention_labels=[dashboard.ATTENTION_LABELS[a] for a in attention],
        overview=dashboard.summary_view(record, course),
        booking_uid=record.booking.uid,
        student_email=record.booking.student.email,
        consented_at=record.consented_at,
        updated_at=record.updated_at,
        summary_delivered_at=record.summary_delivered_at,
        pending_deliveries=[
            DeliveryJob(kind=j.kind, state=j.state, attempts=j.attempts, last_error=scrub_error(j.last_error))
            for j in jobs
        ],
        student_rating=record.student_rating,
        professor_rating=record.professor_rating,
        transcript_url=chat.transcript_url(services.settings, record.staff_id),
        taken_over_by=record.taken_over_by if record.taken_over else "",
        acknowledged_by=record.acknowledged_by,
        can_take_over=not refusal,
        take_over_refusal=refusal,
        summary=record.summary,
    )


_REFUSALS = {
    "invited": "The student has not opened the chat yet, so there is nobody to answer. Taking over becomes "
    "possible once they agree and start.",
    "complete": "This chat is finished: the student answered the questions and the summary went out. Nobody "
    "is in the chat any more, so it cannot be taken over; write to the student or talk at the meeting.",
    "partial": "This chat was closed before the meeting and a partial summary went out. Nobody is in the "
    "chat any more, so it cannot be taken over; write to the student or talk at the meeting.",
    "escalated": "The assistant stopped this chat after a distress signal and showed the student support "
    "contacts. The chat is closed, so it cannot be taken over: please contact the student directly.",
    "cancelled": "This booking was cancelled and its chat is closed, so it cannot be taken over.",
}


def take_over_refusal(record: IntakeRecord) -> str:
    """Why staff cannot take this chat over right now ("" when they can)."""
    if record.status == "active" and record.consented_at is not None:
        return ""
    return _REFUSALS.get(record.status, _REFUSALS["invited"])


_EMAIL = re.compile(r"[^\s@<>()\[\]:;,\"']+@[^\s@<>()\[\]:;,\"']+")
_ERROR_CHARS = 200


def scrub_error(error: str | None) -> str | None:
    """SMTP and HTTP errors often quote the recipient: mask addresses, and keep the list readable."""
    if not error:
        return error
    text = _EMAIL.sub("[email]", error)
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 1] + "…"


# --- the list and the intake page's JSON ------------------------------------------------------------

LIST_LIMIT = 500
_API = problems(Unauthorized, Forbidden)  # 403: a change without the CSRF token


@get("/staff/api/intakes", responses={**_API, **problems(NotFound, Unprocessable)})
async def list_intakes(
    principal: NamedDependency[StaffPrincipal],
    services: NamedDependency[Services],
    course: Annotated[str | None, QueryParameter(name="course", max_length=64)] = None,
    status: Annotated[str | None, QueryParameter(name="status", max_length=20)] = None,
) -> Response[list[dashboard.DashboardRow]]:
    """The viewer's intakes in dashboard order (needs attention, upcoming soonest first, past); filtered
    by ``course`` (a slug) and ``status`` (an intake status, or ``attention``)."""
    if status and status not in dashboard.STATUS_FILTERS:
        raise Unprocessable(f"Unknown status filter; use one of: {', '.join(dashboard.STATUS_FILTERS)}.")
    store = services.intakes
    records = await asyncio.gather(*(store.get(t) for t in await store.tokens(limit=LIST_LIMIT)))
    failed = {j.token for j in await services.jobs.dead_letters(limit=200)}
    now = dt.datetime.now(dt.UTC)
    rows = (
        dashboard.row(
            r,
            services.catalog.courses.get(r.course_slug),
            staff_id=staff_ref(r),
            max_turns=services.settings.max_turns,
            failed=failed,
            now=now,
        )
        for r in records
        if r is not None and principal.can_see(r.course_slug)
    )
    listed = [r for r in dashboard.ordered(rows) if dashboard.matches(r, course, status)]
    return Response(listed, headers={"Cache-Control": "no-store"})


class CourseChoice(msgspec.Struct, frozen=True):
    slug: str
    code: str
    title: str
    timezone: str


@get("/staff/api/courses", responses=_API)
async def list_courses(
    principal: NamedDependency[StaffPrincipal], services: NamedDependency[Services]
) -> list[CourseChoice]:
    """The courses the staff member staffs (the dashboard's course filter and the broadcast form)."""
    return [
        CourseChoice(c.slug, c.code, c.title, c.timezone)
        for c in sorted(services.catalog.courses.values(), key=lambda c: c.code)
        if principal.can_see(c.slug)
    ]


@get("/staff/api/intakes/{staff_id:str}", responses={**_API, **problems(NotFound)})
async def intake_detail(
    staff_intake: NamedDependency[StaffIntake], services: NamedDependency[Services]
) -> Response[StaffIntakeDetail]:
    return Response(await detail(services, staff_intake.record), headers={"Cache-Control": "no-store"})


class ProfessorRatingIn(msgspec.Struct, frozen=True):
    value: Literal["useful", "not_useful"]


@post(
    "/staff/api/intakes/{staff_id:str}/rating",
    status_code=200,
    responses={**_API, **problems(NotFound, Conflict, PayloadTooLarge, Unprocessable)},
)
async def rate_summary(
    staff_intake: NamedDependency[StaffIntake],
    principal: NamedDependency[StaffPrincipal],
    request: Request,
    services: NamedDependency[Services],
) -> StaffIntakeDetail:
    """The professor's verdict on the summary (useful / not useful), once there is one."""
    found = staff_intake
    body = chat.decode_body(await chat.read_capped(request, 1024), ProfessorRatingIn)

    def apply(record: IntakeRecord) -> None:
        if record.summary is None:
            raise Conflict("There is no summary to rate yet.")
        record.professor_rating = body.value

    record = await mutate(services, found.token, apply)
    log.info("summary_rated", booking_uid=record.booking.uid, value=body.value)
    await intake_events.rated(services.events, "professor_rating", record, body.value)
    await audit(services, principal.actor, "rate", found.staff_id, course=record.course_slug)
    return await detail(services, record)


ROUTES = [list_intakes, list_courses, intake_detail, rate_summary]
