"""A person in the loop: take a running chat over, write to the student, hand it back, acknowledge a flag.

Taking over pauses the assistant (the student's messages are kept for staff; no model turn runs) and
the student's page shows who is answering. Handing back resumes the interview where the policy left it:
the assistant asks for what is still missing and never starts again. Only a running chat (consented,
status ``active``) can be taken over; any other answers 409 with the reason in words.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
import structlog
from litestar import Request, post
from litestar.di import NamedDependency
from msgspec import Meta

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
from services.gateway.intake.models import ChatMessage, IntakeRecord
from services.gateway.intake.store import now_iso
from services.gateway.staff import intakes
from services.gateway.staff.accounts import StaffIntake, StaffPrincipal
from services.gateway.staff.audit import audit
from services.gateway.staff.intakes import StaffIntakeDetail

_BODY_CAP = 8 * 1024
MAX_STAFF_MESSAGE = 4000
OPERATOR_NAME = "Course staff"  # what the student sees when the operator's password login answers
_CHANGE = problems(Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge, Unprocessable)
log = structlog.get_logger()


class TakeOverIn(msgspec.Struct, frozen=True):
    taken_over: bool  # False hands the chat back to the assistant


class StaffMessageIn(msgspec.Struct, frozen=True):
    text: Annotated[str, Meta(max_length=MAX_STAFF_MESSAGE)]


@post("/staff/api/intakes/{staff_id:str}/takeover", status_code=200, responses=_CHANGE)
async def take_over(
    staff_intake: NamedDependency[StaffIntake],
    principal: NamedDependency[StaffPrincipal],
    request: Request,
    services: NamedDependency[Services],
) -> StaffIntakeDetail:
    """``{"taken_over": true}`` pauses the assistant; ``false`` hands the chat back (the bot asks on)."""
    who, found = principal, staff_intake
    body = chat.decode_body(await chat.read_capped(request, _BODY_CAP), TakeOverIn)
    if body.taken_over:
        record = await intakes.mutate(services, found.token, lambda r: _take(r, who))
        log.info("intake_taken_over", booking_uid=record.booking.uid)
        await intake_events.record_event(services.events, "intake_taken_over", record)
        await audit(services, who.actor, "takeover", found.staff_id, course=record.course_slug)
    else:
        record = await _hand_back(services, found.token)
        await audit(services, who.actor, "hand_back", found.staff_id, course=record.course_slug)
    return await intakes.detail(services, record)


@post("/staff/api/intakes/{staff_id:str}/messages", status_code=200, responses=_CHANGE)
async def staff_message(
    staff_intake: NamedDependency[StaffIntake],
    principal: NamedDependency[StaffPrincipal],
    request: Request,
    services: NamedDependency[Services],
) -> StaffIntakeDetail:
    """A message to the student, shown with the staff member's name; sending one takes the chat over."""
    who, found = principal, staff_intake
    body = chat.decode_body(await chat.read_capped(request, _BODY_CAP * 3), StaffMessageIn)
    text = body.text.strip()
    if not text:
        raise Unprocessable("The message is empty.")

    def apply(record: IntakeRecord) -> None:
        if not record.taken_over:
            _take(record, who)
        record.interview.messages.append(ChatMessage("staff", text, author=record.taken_over_by))

    record = await intakes.mutate(services, found.token, apply)
    log.info("staff_message_sent", booking_uid=record.booking.uid)
    await audit(services, who.actor, "message", found.staff_id, course=record.course_slug)
    return await intakes.detail(services, record)


@post("/staff/api/intakes/{staff_id:str}/acknowledge", status_code=200, responses=_CHANGE)
async def acknowledge(
    staff_intake: NamedDependency[StaffIntake],
    principal: NamedDependency[StaffPrincipal],
    request: Request,
    services: NamedDependency[Services],
) -> StaffIntakeDetail:
    """Someone has seen the distress signal or the request for a person: it leaves *needs attention*."""
    who, found = principal, staff_intake

    def apply(record: IntakeRecord) -> None:
        flags = record.interview.flags
        if not (flags.distress or flags.escalated_to_human or record.status == "escalated"):
            raise Conflict("There is nothing to acknowledge: no distress signal and no request for a person.")
        if record.acknowledged_at is None:
            record.acknowledged_at = now_iso()
            record.acknowledged_by = who.name

    record = await intakes.mutate(services, found.token, apply)
    log.info("intake_acknowledged", booking_uid=record.booking.uid)
    await audit(services, who.actor, "acknowledge", found.staff_id, course=record.course_slug)
    return await intakes.detail(services, record)


def _take(record: IntakeRecord, who: StaffPrincipal) -> None:
    refusal = intakes.take_over_refusal(record)
    if refusal:
        raise Conflict(refusal, extra={"intake_status": record.status})
    record.taken_over = True
    record.taken_over_by = OPERATOR_NAME if who.is_operator else who.name


async def _hand_back(services: Services, token: str) -> IntakeRecord:
    """The assistant's question for the next missing slot, appended under the turn lock."""
    course_of = services.catalog.courses.get
    iv = chat.interviewer(services)

    def apply(record: IntakeRecord) -> bool:
        if not record.taken_over:
            return False  # already handed back (a second tab): nothing to do, nothing asked twice
        record.taken_over = False
        record.taken_over_by = ""
        course = course_of(record.course_slug)
        if course is not None and record.status == "active":
            iv.resume(record.interview, course, record.booking)
        return True

    record = await intakes.mutate(services, token, apply)
    log.info("intake_handed_back", booking_uid=record.booking.uid, turn=record.interview.turn)
    return record


ROUTES = [take_over, staff_message, acknowledge]
