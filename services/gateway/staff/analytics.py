"""Staff analytics: the page ``/staff/analytics``, its JSON ``/staff/api/analytics`` and its SVG charts.

Every route sits in the app's staff router behind ``staff_guard``: a staff session, and a ``?course=``
must be one of the courses the person staffs (another course is a 404, like a course that does not
exist). Without ``course`` the first course they staff (by slug) is shown. ``weeks`` (1-26, default 4)
is the window of the host and intake figures; topics always compare this week with last week. Bad
parameters are a 422 problem (RFC 9457). The figures come from the aggregates the ``analytics`` program
folds (``services/analytics``); the charts are matplotlib SVGs with the same numbers as the page's tables.
"""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath

from services.analytics import charts
from services.analytics.aggregates import Aggregates
from services.analytics.consumer import state_ttl_s
from services.analytics.report import Analytics, course_analytics
from services.coursepack import Course
from services.gateway.container import Services
from services.gateway.errors import NotFound, Unauthorized, Unprocessable, problems
from services.gateway.staff.accounts import StaffPrincipal
from services.gateway.staff.login import PAGE_HEADERS  # one set of headers for every staff page
from services.settings import REPO_ROOT

PAGE = REPO_ROOT / "frontend" / "staff" / "analytics.html"
DEFAULT_WEEKS, MAX_WEEKS = 4, 26
SVG_HEADERS = {
    "Cache-Control": "private, no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}
_API = problems(Unauthorized, NotFound, Unprocessable)


class CourseChoice(msgspec.Struct, frozen=True, kw_only=True):
    slug: str
    code: str
    title: str


@get(
    "/staff/analytics",
    media_type=MediaType.HTML,
    responses={303: ResponseSpec(None, description="No staff session: to /staff/login")},
)
async def analytics_page() -> Response[bytes]:
    return Response(PAGE.read_bytes(), media_type=MediaType.HTML, headers=PAGE_HEADERS)


@get("/staff/api/analytics/courses", responses=problems(Unauthorized))
async def analytics_courses(
    services: NamedDependency[Services], principal: StaffPrincipal
) -> list[CourseChoice]:
    """The courses this person may see figures for (the page's course picker)."""
    return [CourseChoice(slug=c.slug, code=c.code, title=c.title) for c in _courses(services, principal)]


@get("/staff/api/analytics", responses=_API)
async def analytics(
    request: Request,
    services: NamedDependency[Services],
    principal: StaffPrincipal,
    course: str | None = None,
    weeks: str | None = None,
) -> Response[Analytics]:
    """Per host, per course and per topic figures for one course (see the README's contract)."""
    figures = await _figures(services, principal, course, weeks)
    return Response(figures, headers={"Cache-Control": "no-store"})


@get(
    "/staff/api/analytics/charts/{name:str}",
    media_type="image/svg+xml",
    responses={**_API, 200: ResponseSpec(None, description="An SVG chart", media_type="image/svg+xml")},
)
async def analytics_chart(
    name: FromPath[str],
    services: NamedDependency[Services],
    principal: StaffPrincipal,
    course: str | None = None,
    weeks: str | None = None,
) -> Response[bytes]:
    """``hosts`` (reschedule rate per host, the threshold drawn), ``intakes`` (per week), ``topics``."""
    chart = name.removesuffix(".svg")
    if chart not in charts.CHART_NAMES:
        raise NotFound(f"No chart named {chart[:40]!r}; there are {', '.join(charts.CHART_NAMES)}.")
    figures = await _figures(services, principal, course, weeks)
    svg = await asyncio.to_thread(charts.render, chart, figures)  # type: ignore[arg-type]
    return Response(svg, media_type="image/svg+xml", headers=SVG_HEADERS)


async def _figures(
    services: Services, principal: StaffPrincipal, course: str | None, weeks: str | None
) -> Analytics:
    chosen = _course(services, principal, course)
    span = _weeks(weeks)
    settings = services.settings
    aggregates = Aggregates(services.redis, state_ttl_s(settings))
    return await course_analytics(aggregates, chosen, span, settings.analytics_reschedule_threshold)


def _courses(services: Services, principal: StaffPrincipal) -> list[Course]:
    return [c for slug, c in sorted(services.catalog.courses.items()) if principal.can_see(slug)]


def _course(services: Services, principal: StaffPrincipal, slug: str | None) -> Course:
    if slug is None:
        mine = _courses(services, principal)
        if not mine:
            raise NotFound("You do not staff any course.")
        return mine[0]
    found = services.catalog.courses.get(slug)
    if found is None or not principal.can_see(slug):
        raise NotFound("No such course.")
    return found


def _weeks(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_WEEKS
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_WEEKS:  # not "²" or "١"
        raise Unprocessable(f"weeks must be a whole number from 1 to {MAX_WEEKS}.", extra={"weeks": raw[:20]})
    return int(raw)


ROUTES = [analytics_page, analytics_courses, analytics, analytics_chart]
