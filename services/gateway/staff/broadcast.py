"""One short message by email to every student booked in a time window of a course (running late, the
room changed): ``POST /staff/api/broadcast``.

Each student gets their own email through the job queue (``broadcast_email.<booking uid>.<broadcast
id>``: a retried job never sends twice); the audit log records who sent how many, never the text.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from typing import Annotated

import msgspec
import structlog
from litestar import Request, post
from litestar.di import NamedDependency
from msgspec import Meta

from services.gateway import ratelimit
from services.gateway.container import Services
from services.gateway.errors import (
    Forbidden,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
    problems,
)
from services.gateway.intake import chat
from services.gateway.intake.models import IntakeRecord
from services.gateway.intake.store import parse_time
from services.gateway.staff import intakes
from services.gateway.staff.accounts import StaffPrincipal
from services.gateway.staff.audit import audit

MAX_NOTE = 500
MAX_WINDOW = dt.timedelta(days=7)
MAX_RECIPIENTS = 200
PER_HOUR = 10  # broadcasts per staff member and hour
log = structlog.get_logger()


class BroadcastIn(msgspec.Struct, frozen=True):
    course: Annotated[str, Meta(min_length=1, max_length=64)]
    start: Annotated[str, Meta(max_length=40)]  # RFC 3339: meetings starting at or after
    end: Annotated[str, Meta(max_length=40)]  # RFC 3339: meetings starting before
    message: Annotated[str, Meta(max_length=MAX_NOTE)]


class BroadcastOut(msgspec.Struct, frozen=True):
    id: str
    recipients: int  # students emailed (one email each, through the queue)


@post(
    "/staff/api/broadcast",
    status_code=202,
    responses=problems(Unauthorized, Forbidden, NotFound, PayloadTooLarge, Unprocessable, TooManyRequests),
)
async def broadcast(
    principal: NamedDependency[StaffPrincipal], request: Request, services: NamedDependency[Services]
) -> BroadcastOut:
    """One email per student booked in ``[start, end)`` of ``course`` (cancelled bookings skipped)."""
    who = principal
    body = chat.decode_body(await chat.read_capped(request, 4096), BroadcastIn)
    if not who.can_see(body.course) or body.course not in services.catalog.courses:
        raise NotFound("No such course.")
    note = body.message.strip()
    if not note:
        raise Unprocessable("The message is empty.")
    start, end = _window(body.start, body.end)
    window = await ratelimit.hit(services.redis, f"staff_broadcast:{who.actor}", 3600)
    if window.count > PER_HOUR:
        raise TooManyRequests(f"At most {PER_HOUR} messages an hour. Please wait a little.")
    records = await _booked(services, body.course, start, end)
    broadcast_id = secrets.token_hex(6)
    sender = who.name or services.catalog.courses[body.course].instructor_name
    queued = [await services.jobs.broadcast(r, note, sender, broadcast_id) for r in records]
    sent = sum(1 for q in queued if q is not None)
    log.info("staff_broadcast_queued", course=body.course, recipients=sent)
    await audit(services, who.actor, "broadcast", f"{broadcast_id} to {sent} students", course=body.course)
    return BroadcastOut(id=broadcast_id, recipients=sent)


def _window(start_text: str, end_text: str) -> tuple[dt.datetime, dt.datetime]:
    try:
        start, end = parse_time(start_text), parse_time(end_text)
    except ValueError:
        raise Unprocessable("Give the window's start and end as dates with times.") from None
    if end <= start:
        raise Unprocessable("The window's end must come after its start.")
    if end - start > MAX_WINDOW:
        raise Unprocessable("The window can be at most 7 days long.")
    return start, end


async def _booked(
    services: Services, course: str, start: dt.datetime, end: dt.datetime
) -> list[IntakeRecord]:
    store = services.intakes
    records = await asyncio.gather(*(store.get(t) for t in await store.tokens(limit=intakes.LIST_LIMIT)))
    return [
        r
        for r in records
        if r is not None
        and r.course_slug == course
        and r.status != "cancelled"
        and r.booking.student.email
        and start <= parse_time(r.booking.start_time) < end
    ][:MAX_RECIPIENTS]


ROUTES = [broadcast]
