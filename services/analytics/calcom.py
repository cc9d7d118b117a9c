"""Cal.com deliveries as analytics events.

The webhook handler wraps its work with ``tracked``: once a delivery was handled (whatever it did to the
intakes: created, moved, ignored as a late copy), its event goes onto the stream inside the same handling,
before the delivery is marked seen, so a delivery that fails half-way and is sent again still emits (the
event id is the delivery's key, so the consumer counts it once). Deliveries for event types of no known
course are not emitted: every figure belongs to a course.

The payload is read here with our own lenient Structs (only what analytics needs: ``rescheduledBy``,
``cancelledBy``, ``rescheduleStartTime``, the attendees' no-show marks), so the intake side's Structs stay
as they are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar, cast

import msgspec
from redis.asyncio.client import Pipeline

from services.analytics.events import Actor, Event, EventLog, epoch, event_id, week_of
from services.coursepack import Catalog

Run = TypeVar("Run", bound=Callable[[], Awaitable[Any]])


class _Sources(Protocol):
    @property
    def catalog(self) -> Catalog: ...

    @property
    def events(self) -> EventLog | None: ...


class _Person(msgspec.Struct, frozen=True, rename="camel"):
    email: str = ""
    no_show: bool = False


class _Booking(msgspec.Struct, frozen=True, rename="camel"):
    uid: str = ""
    start_time: str = ""
    organizer: _Person = _Person()
    user: _Person = _Person()  # MEETING_ENDED names the host ``user``
    attendees: list[_Person] = []
    event_type_id: int | None = None
    type: str | None = None
    reschedule_uid: str | None = None
    reschedule_start_time: str | None = None
    rescheduled_by: str | None = None
    cancelled_by: str | None = None
    booking_uid: str = ""  # BOOKING_NO_SHOW_UPDATED


class _Envelope(msgspec.Struct, frozen=True, rename="camel"):
    trigger_event: str = ""
    created_at: str = ""
    payload: _Booking | None = None


class _TopLevel(_Booking, frozen=True, rename="camel"):
    """MEETING_ENDED: the booking's fields next to ``triggerEvent``."""

    created_at: str = ""


@dataclass
class Ahead:
    """For a run that writes its delivery's events itself, in the step that ends its work: ``entries``
    gives them, as ``EventLog.entries`` does, for the outcome (status) it is about to return (``tracked``
    sets it), and the run sets ``written`` once they are written, so ``tracked`` does not write them
    again."""

    entries: Callable[[str], Awaitable[tuple[str, list[bytes]]]] | None = None
    written: bool = False


def tracked(
    sources: _Sources,
    run: Run,
    body: bytes,
    key: str,
    *,
    tail: Pipeline | None = None,
    lenient: list[int] | None = None,
    ahead: Ahead | None = None,
) -> Run:
    """``run``, then the delivery's analytics events (``key`` is the delivery's idempotency key).

    With ``tail`` (the pipeline the handling sends once the run succeeded) the events are queued on it
    instead of sent on their own, and their positions in it added to ``lenient``: a failure to write them
    is the caller's to log, never to raise. With ``ahead``, the run may write them itself (see ``Ahead``)."""
    events = sources.events
    if events is None:
        return run
    if ahead is not None:
        ahead.entries = partial(_entries, sources.catalog, events, body, key)

    async def run_and_emit() -> Any:
        result = await run()
        if ahead is not None and ahead.written:
            return result
        status = str(getattr(result, "status", ""))
        found = await webhook_events(sources.catalog, events, body, key, status)
        if tail is None:
            await events.emit(*found)
        else:
            first = len(tail)
            events.queue(tail, found)
            if lenient is not None:
                lenient.extend(range(first, len(tail)))
        return result

    return cast(Run, run_and_emit)  # the same call, its events emitted after it


async def webhook_events(
    catalog: Catalog, events: EventLog, body: bytes, key: str, status: str = ""
) -> list[Event]:
    """The events of one verified delivery (none for an unknown course or an unreadable body)."""
    try:
        envelope = msgspec.json.decode(body, type=_Envelope)
        booking = envelope.payload
        if envelope.trigger_event == "MEETING_ENDED":
            booking = msgspec.json.decode(body, type=_TopLevel)
    except msgspec.DecodeError:
        return []
    if booking is None:
        return []
    trigger, at = envelope.trigger_event, epoch(envelope.created_at)
    if trigger == "BOOKING_NO_SHOW_UPDATED":
        return [_no_show(booking, key, at)]
    course = catalog.for_event_type(booking.event_type_id, booking.type)
    if course is None or not booking.uid:
        return []
    base = Event(
        id=key,
        kind="booking_created",
        course=course.slug,
        week=week_of(booking.start_time) if booking.start_time else "",
        at=at,
        booking=booking.uid,
        host=(booking.organizer.email or booking.user.email).lower(),
    )
    found = _booking_events(trigger, base, booking)
    if status == "created" and found:
        student = await events.student(booking.attendees[0].email if booking.attendees else "")
        found.append(
            msgspec.structs.replace(
                base,
                id=event_id(key, "invited"),
                kind="intake_invited",
                intake=event_id("booking", booking.uid)[:20],  # the token is not known here
                student=student,
            )
        )
    return found


async def _entries(
    catalog: Catalog, events: EventLog, body: bytes, key: str, status: str
) -> tuple[str, list[bytes]]:
    return events.entries(await webhook_events(catalog, events, body, key, status))


def _booking_events(trigger: str, base: Event, booking: _Booking) -> list[Event]:
    if not base.week:
        return []
    if trigger == "BOOKING_CREATED":
        return [base]
    if trigger == "BOOKING_RESCHEDULED":
        previous_start = booking.reschedule_start_time or booking.start_time
        return [
            msgspec.structs.replace(
                base,
                kind="booking_rescheduled",
                previous=booking.reschedule_uid or "",
                previous_week=week_of(previous_start),
                by=actor(booking.rescheduled_by, base.host, booking),
            )
        ]
    if trigger == "BOOKING_CANCELLED":
        return [
            msgspec.structs.replace(
                base, kind="booking_cancelled", by=actor(booking.cancelled_by, base.host, booking)
            )
        ]
    if trigger == "MEETING_ENDED":
        return [msgspec.structs.replace(base, kind="meeting_ended")]
    return []


def _no_show(booking: _Booking, key: str, at: float) -> Event:
    """Only the booking uid is in the payload: the consumer joins it to the booking's host and course."""
    marked = any(a.no_show for a in booking.attendees)
    uid = booking.booking_uid or booking.uid
    return Event(id=key, kind="no_show", course="", week="", at=at, booking=uid, value="1" if marked else "0")


def actor(by: str | None, host: str, booking: _Booking) -> Actor:
    """Who rescheduled or cancelled: an attendee (the student), the host, or not said.

    Anyone who is not an attendee (the organizer, a team member, an admin) counts as the host side: it is
    a change the student did not ask for.
    """
    if not by or not by.strip():
        return "unknown"
    who = by.strip().lower()
    if who in {a.email.lower() for a in booking.attendees if a.email}:
        return "attendee"
    return "host"
