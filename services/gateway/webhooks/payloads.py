"""Cal.com webhook payloads (version 2021-10-20) as msgspec Structs.

Real deliveries carry many more fields than we use; every Struct ignores unknown fields and declares only
what the gateway reads, so a Cal.com upgrade that adds fields changes nothing here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from services.gateway.intake.models import Booking, Person


class CalPerson(msgspec.Struct, frozen=True, rename="camel"):
    name: str = ""
    email: str = ""
    time_zone: str | None = None


class CalResponse(msgspec.Struct, frozen=True):
    """One booking-form answer: ``{"label": ..., "value": ...}`` (value is a string, list or object)."""

    label: str = ""
    value: Any = None


class Envelope(msgspec.Struct, frozen=True, rename="camel"):
    """The outer shape every trigger shares; ``payload`` is decoded once we know the trigger."""

    trigger_event: str
    created_at: str = ""
    payload: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))


class BookingPayload(msgspec.Struct, frozen=True, rename="camel"):
    """``payload`` of BOOKING_CREATED / BOOKING_RESCHEDULED / BOOKING_CANCELLED."""

    uid: str
    start_time: dt.datetime
    organizer: CalPerson
    booking_id: int | None = None
    event_type_id: int | None = None
    type: str | None = None  # the event type slug
    title: str = ""
    end_time: dt.datetime | None = None
    attendees: list[CalPerson] = []
    responses: dict[str, CalResponse] = {}
    additional_notes: str | None = None
    reschedule_uid: str | None = None  # RESCHEDULED: the old booking
    reschedule_id: int | None = None
    cancellation_reason: str | None = None


class MeetingEnded(msgspec.Struct, frozen=True, rename="camel"):
    """MEETING_ENDED: the booking fields sit at the top level, next to ``triggerEvent``."""

    trigger_event: str
    uid: str
    created_at: str = ""
    id: int | None = None
    event_type_id: int | None = None


class NoShowAttendee(msgspec.Struct, frozen=True, rename="camel"):
    email: str = ""
    no_show: bool = False


class NoShowPayload(msgspec.Struct, frozen=True, rename="camel"):
    """``payload`` of BOOKING_NO_SHOW_UPDATED."""

    booking_uid: str
    booking_id: int | None = None
    attendees: list[NoShowAttendee] = []


def to_booking(payload: BookingPayload) -> Booking:
    """What we keep of a Cal.com booking: the first attendee is the student."""
    student = payload.attendees[0] if payload.attendees else _student_from_responses(payload.responses)
    return Booking(
        uid=payload.uid,
        booking_id=payload.booking_id,
        event_type_id=payload.event_type_id,
        event_type_slug=payload.type,
        title=payload.title,
        start_time=rfc3339(payload.start_time),
        end_time=rfc3339(payload.end_time) if payload.end_time else None,
        organizer=Person(name=payload.organizer.name, email=payload.organizer.email),
        student=Person(name=student.name, email=student.email),
        notes=_notes(payload),
    )


def rfc3339(value: dt.datetime) -> str:
    aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return aware.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _student_from_responses(responses: dict[str, CalResponse]) -> CalPerson:
    name, email = responses.get("name"), responses.get("email")
    return CalPerson(
        name=name.value if name and isinstance(name.value, str) else "",
        email=email.value if email and isinstance(email.value, str) else "",
    )


def _notes(payload: BookingPayload) -> str:
    if payload.additional_notes:
        return payload.additional_notes
    notes = payload.responses.get("notes")
    return notes.value if notes and isinstance(notes.value, str) else ""
