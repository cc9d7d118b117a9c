"""Intake events, emitted where the intake changes (one line at each place: consent, a stored turn, a
partial summary, a delivered summary, a rating, a take-over).

Each helper takes the services' ``EventLog`` (``None``: analytics off, nothing happens) and never raises.
Event ids are what happened to which intake (``consented``, ``turn 3``, ``delivered partial``...), so a
retried request or job emits the same id and counts once. The week is the meeting's; the intake is known
by a hash of its token, the student by an HMAC of their email.
"""

from __future__ import annotations

import time

import structlog

from services.analytics.events import Event, EventKind, EventLog, epoch, event_id, intake_id, week_of
from services.gateway.intake.models import IntakeRecord, Summary

log = structlog.get_logger()


async def record_event(
    events: EventLog | None, kind: EventKind, record: IntakeRecord, *about: str, **fields: str
) -> None:
    """One event about ``record`` (``about`` tells repeated happenings apart, e.g. a rating's value)."""
    if events is None:
        return
    try:
        await events.emit(await _event(events, kind, record, *about, **fields))
    except Exception as exc:  # analytics must never fail the request that changed the intake
        log.warning("analytics_emit_failed", kind=kind, error=type(exc).__name__)


async def after_turn(events: EventLog | None, record: IntakeRecord) -> None:
    """A stored turn; when it ended the interview, ``intake_completed`` or ``intake_escalated`` too."""
    if events is None:
        return
    try:
        batch = [await _event(events, "intake_turn", record, str(record.interview.turn))]
        if record.status == "complete":
            started = epoch(record.consented_at or record.created_at)
            minutes = max(0.0, (time.time() - started) / 60) if started else 0.0
            batch.append(
                await _event(events, "intake_completed", record, turns=record.interview.turn, minutes=minutes)
            )
        elif record.status == "escalated":
            batch.append(await _event(events, "intake_escalated", record))
        for event in batch:
            await events.emit(event)
    except Exception as exc:
        log.warning("analytics_emit_failed", kind="intake_turn", error=type(exc).__name__)


async def abandoned(events: EventLog | None, record: IntakeRecord) -> None:
    """The meeting is near and the student started but did not finish (never started: not abandoned)."""
    if record.consented_at is not None:
        await record_event(events, "intake_abandoned", record)


async def rated(events: EventLog | None, kind: EventKind, record: IntakeRecord, value: str) -> None:
    """A student's thumbs or a professor's verdict; a later rating replaces an earlier one (by time)."""
    await record_event(events, kind, record, str(time.time_ns()), value=value)


async def delivered(events: EventLog | None, token: str, course_slug: str, summary: Summary | None) -> None:
    """A summary reached the professor: what the student is stuck on (topic, assignment, section)."""
    if events is None or summary is None:
        return
    try:
        first = summary.suggested_materials[0] if summary.suggested_materials else None
        section = f"{first.source}#{first.section}" if first and first.section else ""
        label = f"{first.section} ({first.title})" if first and first.section else ""
        event = Event(
            id=event_id(intake_id(token), "delivered", summary.status),
            kind="summary_delivered",
            course=course_slug,
            week=week_of(summary.appointment_start),
            at=time.time(),
            intake=intake_id(token),
            student=await events.student(summary.student.email),
            topic=summary.topic,
            assignment=summary.assignment or "",
            section=section,
            section_title=label,
        )
        await events.emit(event)
    except Exception as exc:
        log.warning("analytics_emit_failed", kind="summary_delivered", error=type(exc).__name__)


async def _event(
    events: EventLog, kind: EventKind, record: IntakeRecord, *about: str, **fields: object
) -> Event:
    intake = intake_id(record.token)
    return Event(
        id=event_id(intake, kind, *about),
        kind=kind,
        course=record.course_slug,
        week=week_of(record.booking.start_time),
        at=time.time(),
        booking=record.booking.uid,
        host=record.booking.organizer.email.lower(),
        intake=intake,
        student=await events.student(record.booking.student.email),
        **fields,  # type: ignore[arg-type]
    )
