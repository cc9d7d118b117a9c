"""What the worker does for each job kind. A job either returns (done), raises ``Permanent`` (dead-letter
at once: retrying cannot help), or raises anything else (retried with backoff, then dead-lettered).

Summary jobs deliver a snapshot taken when the summary was written, so the two channels are independent:
Cal.com being down for a day delays only the booking note, never the email.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
import structlog

from services.coursepack import Course
from services.gateway.container import Services
from services.gateway.delivery.calcom import CalcomClient, CalcomError
from services.gateway.delivery.email import build_invite, build_summary_email, send_email
from services.gateway.delivery.locks import try_turn_lock
from services.gateway.delivery.outbox import Job, Outbox, claim_due_partials
from services.gateway.intake import chat
from services.gateway.intake.interview import draft_summary
from services.gateway.intake.models import IntakeRecord, Person, Summary, SummaryStatus
from services.gateway.intake.store import IntakeStore, now_iso

log = structlog.get_logger()
_warned: set[str] = set()


class Permanent(Exception):
    """Retrying cannot help (unknown course, Cal.com refused the key or lost the booking)."""


def _store(services: Services) -> IntakeStore:
    return IntakeStore(services.redis, services.settings.retention_days)


def _course(services: Services, record: IntakeRecord) -> Course:
    course = services.catalog.courses.get(record.course_slug)
    if course is None:
        raise Permanent(f"course '{record.course_slug}' is not in the catalog")
    return course


def job_timeout_s(services: Services, job: Job) -> float:
    if job.kind == "summarize":
        return services.settings.inference_timeout_s * 3 + 30
    return 120.0


async def run_job(services: Services, outbox: Outbox, job: Job) -> str:
    """Run one job; returns a short, log-safe note of what happened."""
    runner = {
        "prepare": _prepare,
        "invite_email": _invite_email,
        "summarize": _summarize,
        "summary_email": _summary_email,
        "summary_calcom": _summary_calcom,
    }[job.kind]
    return await runner(services, outbox, job)


# --- intake start ---------------------------------------------------------------------------------


async def _prepare(services: Services, outbox: Outbox, job: Job) -> str:
    """Retrieval and the system prompt ahead of time, so the student's first screen is instant."""
    store = _store(services)
    record = await store.get(job.token)
    if record is None or record.status == "cancelled" or record.interview.prompt:
        return "skipped"
    lock = await try_turn_lock(store, job.token, 0.0)
    if lock is None:
        return "skipped: the chat is preparing itself"
    try:
        record = await store.get(job.token)
        if record is None or record.status == "cancelled" or record.interview.prompt:
            return "skipped"
        course = _course(services, record)
        try:
            await chat.interviewer(services).prepare(record.interview, course, record.booking)
        except Exception as exc:  # an optimisation only: the chat prepares itself on consent
            log.warning("interview_prepare_failed", booking_uid=record.booking.uid, error=type(exc).__name__)
            return "skipped: preparation failed, the chat will prepare on consent"
        if not record.interview.context_sources:
            # retrieval found nothing (index still building?): keep nothing, so consent prepares afresh
            return "skipped: no course context yet, the chat will prepare on consent"
        await store.save(record)
    finally:
        await lock.__aexit__(None, None, None)
    return "prepared"


async def _invite_email(services: Services, outbox: Outbox, job: Job) -> str:
    record = await _store(services).get(job.token)
    if record is None or record.status == "cancelled":
        return "skipped"
    message = build_invite(services.settings, record.booking, _course(services, record), record.token)
    return await send_email(services.settings, message, "invite")


# --- summaries -------------------------------------------------------------------------------------


async def _summarize(services: Services, outbox: Outbox, job: Job) -> str:
    """Write the summary, keep it on the record, and hand it to both delivery channels."""
    store = _store(services)
    record = await store.get(job.token)
    status: SummaryStatus = job.summary_status or "complete"
    if record is None or record.status == "cancelled":
        return "skipped"
    if status in ("partial", "no_intake") and record.status not in ("invited", "active"):
        return "skipped: the intake finished meanwhile"
    course = _course(services, record)
    summary = await _write_summary(services, record, course, status)
    record = await _keep_summary(store, record.token, summary) or record
    await enqueue_channels(services, outbox, record, summary)
    return f"summary {summary.status}"


async def _write_summary(
    services: Services, record: IntakeRecord, course: Course, status: SummaryStatus
) -> Summary:
    url = chat.transcript_url(services.settings, record.token)
    if status == "complete":
        try:
            iv = chat.interviewer(services)
            return await asyncio.wait_for(
                iv.summarize(record.interview, course, record.booking, status, url),
                services.settings.inference_timeout_s * 3,
            )
        except Exception as exc:  # the model draft is a refinement: any failure falls back to the draft
            log.warning("summary_model_failed", booking_uid=record.booking.uid, error=type(exc).__name__)
    if status in ("complete", "escalated") and record.summary is not None:
        return record.summary
    try:
        return draft_summary(record.interview, course, record.booking, status, url)
    except Exception as exc:  # never lose the summary to a bug in the drafting code
        log.error("summary_draft_failed", booking_uid=record.booking.uid, error=type(exc).__name__)
        return minimal_summary(record, course, status, url)


async def _keep_summary(store: IntakeStore, token: str, summary: Summary) -> IntakeRecord | None:
    """Store it on the record; a partial summary also closes the chat (no_intake leaves it open)."""
    if summary.status == "no_intake":
        return None
    lock = await try_turn_lock(store, token, 5.0)
    try:
        record = await store.get(token)
        if record is None or record.status == "cancelled":
            return record
        if summary.status == "partial" and record.status not in ("invited", "active"):
            return record
        if summary.status == "partial":
            record.status = "partial"
        record.summary = summary
        await store.save(record)
        return record
    finally:
        if lock is not None:
            await lock.__aexit__(None, None, None)


async def enqueue_channels(
    services: Services, outbox: Outbox, record: IntakeRecord, summary: Summary
) -> None:
    booking, slug = record.booking, record.course_slug
    await outbox.enqueue("summary_email", record.token, summary=summary, booking=booking, course_slug=slug)
    if not services.settings.calcom_api_key:
        _warn_once("calcom_channel_disabled", reason="INTAKE_CALCOM_API_KEY is empty")
        return
    if record.booking.booking_id is None:
        log.warning("calcom_channel_skipped", booking_uid=record.booking.uid, reason="no booking id")
        return
    await outbox.enqueue("summary_calcom", record.token, summary=summary, booking=booking, course_slug=slug)


async def _summary_email(services: Services, outbox: Outbox, job: Job) -> str:
    if job.summary is None or job.booking is None:
        raise Permanent("summary job without a summary")
    if await _cancelled(services, job):
        return "skipped: booking cancelled"
    booking = job.booking
    if not booking.organizer.email:  # Cal.com always sends one; a hand-made booking may not
        course = services.catalog.courses.get(job.course_slug)
        if course is None:
            raise Permanent("no organizer email and no course to take the instructor's from")
        booking = msgspec.structs.replace(
            booking, organizer=Person(course.instructor_name, course.instructor_email)
        )
    message = build_summary_email(services.settings, job.summary, booking)
    where = await send_email(services.settings, message, "summary")
    await _mark_delivered(services, job)
    return where


async def _summary_calcom(services: Services, outbox: Outbox, job: Job) -> str:
    settings = services.settings
    if not settings.calcom_api_key:
        _warn_once("calcom_channel_disabled", reason="INTAKE_CALCOM_API_KEY is empty")
        return "skipped: no Cal.com API key"
    if job.summary is None or job.booking is None or job.booking.booking_id is None:
        raise Permanent("summary job without a summary or booking id")
    if await _cancelled(services, job):
        return "skipped: booking cancelled"
    client = CalcomClient(
        services.http, settings.calcom_api_url, settings.calcom_api_key, settings.calcom_timeout_s
    )
    try:
        await client.write_summary(job.booking.booking_id, job.summary)
    except CalcomError as exc:
        if not exc.retryable:
            raise Permanent(str(exc)) from None
        raise
    return f"cal.com booking {job.booking.booking_id}"


async def _cancelled(services: Services, job: Job) -> bool:
    record = await _store(services).get(job.token)
    return record is not None and record.status == "cancelled"


async def _mark_delivered(services: Services, job: Job) -> None:
    """Note the delivery on a closed intake (an open one may be mid-turn: leave it untouched)."""
    store = _store(services)
    record = await store.get(job.token)
    if record is not None and record.status in ("complete", "escalated", "partial"):
        record.summary_delivered_at = now_iso()
        await store.save(record)


def minimal_summary(record: IntakeRecord, course: Course, status: SummaryStatus, url: str) -> Summary:
    """The last resort when drafting fails: still valid schema v1, still tells the professor who is coming."""
    notes = record.booking.notes[:1000] or "The student did not describe the problem."
    return Summary(
        booking_uid=record.booking.uid,
        course=course.code,
        student=record.booking.student,
        appointment_start=record.booking.start_time,
        status=status,
        topic="other",
        assignment=None,
        request_type="other",
        issue_description=notes,
        student_attempts="",
        student_goal="",
        difficulty=3,
        urgency="medium",
        professor_prep_note="Read the student's booking notes; the intake summary could not be drafted.",
        turns=record.interview.turn,
        transcript_url=url,
    )


# --- the partial-summary scheduler ----------------------------------------------------------------


async def enqueue_due_partials(services: Services, outbox: Outbox, now: float | None = None) -> int:
    """Intakes unfinished ``partial_before_meeting_s`` before the meeting get a partial/no-intake summary."""
    store = _store(services)
    count = 0
    for token in await claim_due_partials(services.redis, now=time.time() if now is None else now):
        record = await store.get(token)
        if record is None or record.status not in ("invited", "active"):
            continue
        status: SummaryStatus = "partial" if record.interview.turn > 0 else "no_intake"
        await outbox.enqueue("summarize", token, summary_status=status, course_slug=record.course_slug)
        log.info("partial_summary_due", booking_uid=record.booking.uid, status=status)
        count += 1
    return count


def _warn_once(event: str, **fields: str) -> None:
    if event not in _warned:
        _warned.add(event)
        log.warning(event, **fields)


def describe(exc: BaseException) -> str:
    """A log-safe error note: our own messages carry no personal data; foreign ones only their type."""
    if isinstance(exc, CalcomError | Permanent):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return type(exc).__name__ + (f": {exc}" if type(exc).__module__.startswith("services.") else "")
