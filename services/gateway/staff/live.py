"""Server push for the staff pages (``text/event-stream``), fed by ``services/gateway/live.py``.

``GET /staff/api/events`` — the dashboard: ``row`` (a ``DashboardRow`` that changed, only for the
viewer's courses), ``reload`` (changes may have been missed, or an intake was deleted: fetch the list
again) and ``ended`` (the session is over). ``GET /staff/api/intakes/{id}/events`` — one intake:
``intake`` (the whole ``StaffIntakeDetail``, first at once, then after every change) and ``ended``.
A comment every 20 s keeps proxies from closing an idle stream, and the session is checked with it.
Streams end after 30 minutes; the browser's EventSource reconnects by itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog
from litestar import Request, get
from litestar.di import NamedDependency
from litestar.response import ServerSentEvent, ServerSentEventMessage

from services.gateway.container import Services
from services.gateway.errors import NotFound, Unauthorized, problems
from services.gateway.live import Tick, event_data, hub_of, watch
from services.gateway.staff import auth, dashboard, intakes
from services.gateway.staff.accounts import StaffIntake, StaffPrincipal

HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
RETRY_MS = 3000
KEEP_ALIVE_S = 20.0  # a comment this often, and the session checked with it
log = structlog.get_logger()


@get("/staff/api/events", responses=problems(Unauthorized))
async def list_events(
    principal: NamedDependency[StaffPrincipal], request: Request, services: NamedDependency[Services]
) -> ServerSentEvent:
    """The dashboard's live feed: a ``row`` event whenever one of the staff member's intakes changes."""
    return ServerSentEvent(_list_feed(request, services, principal), headers=HEADERS)


@get(
    "/staff/api/intakes/{staff_id:str}/events",
    responses=problems(Unauthorized, NotFound),
)
async def intake_events(
    staff_intake: NamedDependency[StaffIntake],
    principal: NamedDependency[StaffPrincipal],
    request: Request,
    services: NamedDependency[Services],
) -> ServerSentEvent:
    """One intake live: its detail now, then again after every change (messages, status, takeover)."""
    feed = _intake_feed(request, services, principal, staff_intake.token)
    return ServerSentEvent(feed, headers=HEADERS)


async def row_of(services: Services, token: str, who: StaffPrincipal) -> dashboard.DashboardRow | None:
    record = await services.intakes.get(token)
    if record is None or not who.can_see(record.course_slug):
        return None
    jobs = await services.jobs.jobs_for(token)
    failed = {token} if any(j.state == "dead" for j in jobs) else set()
    course = services.catalog.courses.get(record.course_slug)
    return dashboard.row(
        record,
        course,
        staff_id=intakes.staff_ref(record),
        max_turns=services.settings.max_turns,
        failed=failed,
    )


async def _list_feed(
    request: Request, services: Services, who: StaffPrincipal
) -> AsyncIterator[ServerSentEventMessage]:
    async for change in watch(hub_of(services), heartbeat_s=KEEP_ALIVE_S):
        if change is Tick.READY:
            yield ServerSentEventMessage(event="ready", data="{}", retry=RETRY_MS)
        elif change is Tick.KEEP_ALIVE:
            if not await _still_in(request, services):
                yield _ended()
                return
            yield ServerSentEventMessage(comment="keep-alive")
        elif change is Tick.RELOAD:
            yield ServerSentEventMessage(event="reload", data="{}")
        elif isinstance(change, str):
            if await services.intakes.get(change) is None:
                yield ServerSentEventMessage(event="reload", data="{}")  # deleted: its row must go
                continue
            row = await row_of(services, change, who)
            if row is not None:
                yield ServerSentEventMessage(event="row", data=event_data(row))


async def _intake_feed(
    request: Request, services: Services, who: StaffPrincipal, token: str
) -> AsyncIterator[ServerSentEventMessage]:
    async for change in watch(hub_of(services), heartbeat_s=KEEP_ALIVE_S):
        if change is Tick.KEEP_ALIVE:
            if not await _still_in(request, services):
                yield _ended()
                return
            yield ServerSentEventMessage(comment="keep-alive")
            continue
        if change is Tick.READY or change is Tick.RELOAD or change == token:
            record = await services.intakes.get(token)
            if record is None or not who.can_see(record.course_slug):
                yield _ended("This intake is no longer available.")
                return
            detail = await intakes.detail(services, record)
            yield ServerSentEventMessage(event="intake", data=event_data(detail), retry=RETRY_MS)


async def _still_in(request: Request, services: Services) -> bool:
    """The session still exists (no logout meanwhile) and its person still staffs a course."""
    session_id = request.cookies.get(auth.COOKIE)
    if not session_id or auth.current_principal(request) is None:
        return False
    return bool(await request.app.stores.get(auth.SESSION_STORE).exists(session_id))


def _ended(message: str = "Your staff session has ended. Log in again.") -> ServerSentEventMessage:
    return ServerSentEventMessage(event="ended", data=event_data({"message": message}))


ROUTES = [list_events, intake_events]
