"""Staff pages under ``/staff``: the dashboard and the intake page, failed deliveries; the JSON and live
handlers behind the pages live in ``intakes`` (list, detail, rating), ``takeover`` (take over, message,
hand back, acknowledge), ``live`` (server push) and ``broadcast``.

The HTML pages are static files from ``frontend/staff/`` served only with a session; their data comes
from the JSON endpoints under ``/staff/api``. The app mounts every route here behind ``auth.staff_guard``
(a session, and the course permission: another course's intake is a 404); the login is ``login.py``.
Intakes are addressed by their ``staff_id``, never the student's token.
"""

from __future__ import annotations

import msgspec
import structlog
from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath
from litestar.response import Redirect

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
from services.gateway.staff import broadcast, intakes, live, takeover
from services.gateway.staff.accounts import StaffIntake, StaffPrincipal
from services.gateway.staff.audit import audit
from services.gateway.staff.login import PAGE_HEADERS
from services.settings import REPO_ROOT

PAGES = REPO_ROOT / "frontend" / "staff"
_BODY_CAP = 8 * 1024
log = structlog.get_logger()

# what the published schema says each kind of staff route can answer
_PAGE_ANSWERS = {303: ResponseSpec(None, description="No staff session: to /staff/login?next=...")}
_API = problems(Unauthorized, Forbidden)  # 403: a change without the CSRF token
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


ROUTES = [
    staff_home,
    list_page,
    detail_page,
    failed_deliveries,
    retry_delivery,
    *intakes.ROUTES,
    *takeover.ROUTES,
    *live.ROUTES,
    *broadcast.ROUTES,
]
