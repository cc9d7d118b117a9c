"""Emails to people rather than summaries: the course staff's alert when an intake needs a person now, and
a staff member's short broadcast to the students booked in a time window (running late, room changed).

The alert carries the staff link and when the meeting is, never anything the student wrote: a mailbox
is read on many devices, and the intake page behind the login shows the rest. Its job is keyed by the
booking and the reason (``staff_alert.<uid>.distress``), so a student who says it twice alerts once.
"""

from __future__ import annotations

from email.message import EmailMessage

import structlog

from services.coursepack import Course
from services.gateway.container import Services
from services.gateway.delivery.email import first_name, local_time, new_message, send_email
from services.gateway.delivery.queue import JobArgs
from services.gateway.intake import chat
from services.gateway.intake.models import IntakeRecord
from services.settings import Settings

log = structlog.get_logger()

_REASONS = {
    "distress": (
        "a distress signal",
        "The assistant saw signs of distress, showed the student the course's support contacts and stopped "
        "the chat. Please look at it as soon as you can, and acknowledge it on the intake page so your "
        "colleagues know someone has.",
    ),
    "person": (
        "the student asked for a person",
        "The student asked to talk with a person instead of the assistant. The chat goes on meanwhile; you "
        "can take it over from the intake page and answer them there, or acknowledge it.",
    ),
}


def build_staff_alert(
    settings: Settings, record: IntakeRecord, course: Course, reason: str, to: list[str]
) -> EmailMessage:
    what, why = _REASONS.get(reason, _REASONS["person"])
    url = chat.transcript_url(settings, record.staff_id)
    meeting = local_time(record.booking.start_time, course.timezone)
    text = (
        f"An office hours intake for {course.code} needs attention: {what}.\n\n"
        f"Student: {record.booking.student.name or '(no name)'}\n"
        f"Meeting: {meeting}\n\n"
        f"{why}\n\n"
        f"Open the intake (staff login): {url}\n\n"
        "This email deliberately contains nothing the student wrote.\n"
    )
    message = new_message(settings, ", ".join(to), f"Needs attention: {course.code} intake, {what}")
    message.set_content(text)
    return message


def build_broadcast(
    settings: Settings, record: IntakeRecord, course: Course, note: str, sender: str
) -> EmailMessage:
    first = first_name(record.booking)
    meeting = local_time(record.booking.start_time, course.timezone)
    text = (
        f"Hi {first},\n\n"
        f"A message about your {course.code} office hours on {meeting}, from {sender}:\n\n"
        f"{note}\n\n"
        "You do not need to answer this email.\n"
    )
    message = new_message(settings, record.booking.student.email, f"About your {course.code} office hours")
    message.set_content(text)
    return message


async def staff_alert(services: Services, args: JobArgs) -> str:
    found = _intake(services, await services.intakes.get(args.token))
    if found is None:
        return "skipped: the intake is gone, cancelled, or its course is not set up"
    record, course = found
    recipients = sorted(course.staff_emails())
    message = build_staff_alert(services.settings, record, course, args.reason or "person", recipients)
    where = await send_email(services.settings, message, "alert")
    log.info(
        "staff_alert_sent", booking_uid=record.booking.uid, reason=args.reason, recipients=len(recipients)
    )
    return where


async def broadcast_email(services: Services, args: JobArgs) -> str:
    found = _intake(services, await services.intakes.get(args.token))
    if found is None:
        return "skipped: the intake is gone, cancelled, or its course is not set up"
    record, course = found
    if not record.booking.student.email:
        return "skipped: no student address"
    message = build_broadcast(
        services.settings, record, course, args.note or "", args.sender or course.instructor_name
    )
    return await send_email(services.settings, message, "broadcast")


def _intake(services: Services, record: IntakeRecord | None) -> tuple[IntakeRecord, Course] | None:
    if record is None or record.status == "cancelled":
        return None
    course = services.catalog.courses.get(record.course_slug)
    return None if course is None else (record, course)


RUNNERS = {"staff_alert": staff_alert, "broadcast_email": broadcast_email}
