"""What the worker does for each job kind. A job either returns a short, log-safe note (done), raises
``Permanent`` (dead at once: retrying cannot help), or raises anything else (retried with backoff, then
dead). ``run`` wraps every kind with the idempotency guard: a job whose key is done does nothing, and a
job runs only while it holds ``jobs:running:<key>``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog
from saq.job import Job
from saq.types import Context

from finetune.rubric import RUBRIC_VERSION
from services.analytics import intake as intake_events
from services.coursepack import Course
from services.gateway import locks
from services.gateway.container import Services
from services.gateway.delivery import alerts
from services.gateway.delivery.calcom import CalcomClient, CalcomError
from services.gateway.delivery.email import build_invite, build_reminder, build_summary_email, send_email
from services.gateway.delivery.queue import JobArgs, finish_setup
from services.gateway.delivery.render import remove_block
from services.gateway.intake import chat
from services.gateway.intake.interview import draft_summary
from services.gateway.intake.models import IntakeRecord, Person, Summary, SummaryStatus
from services.gateway.intake.store import now_iso
from services.gateway.quality.assess import judge, prompt_version_of

SETUP_GRACE_S = 30.0  # an intake whose setup is pending longer than this was interrupted
log = structlog.get_logger()
_warned: set[str] = set()
Runner = Callable[[Services, JobArgs], Awaitable[str]]


class JobContext(Context, total=False):
    """SAQ's job context plus the services the worker built once at start-up."""

    services: Services


class Permanent(Exception):
    """Retrying cannot help (unknown course, Cal.com refused the key or lost the booking)."""


class Busy(Exception):
    """Another copy of this job is running; this one is retried later (and then finds it done)."""


async def run(ctx: JobContext, kind: str, kwargs: dict[str, Any]) -> str:
    """Run one job of ``kind``: decode its arguments, skip it if done, hold its key's lock while it runs."""
    services, job = ctx["services"], ctx["job"]
    try:
        args = msgspec.convert(kwargs, JobArgs)
    except msgspec.ValidationError as exc:
        _give_up(job, f"undecodable job arguments: {exc}")
        raise Permanent(f"undecodable job arguments: {exc}") from None
    if await services.jobs.is_done(job.key):
        return "skipped: already done"
    lock = await locks.acquire(services.redis, f"jobs:running:{job.key}", ttl_s=job.timeout + 60)
    if lock is None:
        job.meta["error"] = "another copy of this job is running"
        raise Busy(job.key)
    try:
        if await services.jobs.is_done(job.key):
            return "skipped: already done"
        note = await RUNNERS[kind](services, args)
        await services.jobs.mark_done(job.key)
        return note
    except Permanent as exc:
        _give_up(job, describe(exc))
        raise
    except asyncio.CancelledError:
        job.meta["error"] = "interrupted (timed out, aborted, or the worker stopped)"
        raise
    except Exception as exc:  # every other failure is worth another attempt, with backoff
        job.meta["error"] = describe(exc)
        raise
    finally:
        await lock.release()


def _give_up(job: Job, error: str) -> None:
    """No more attempts: SAQ marks the job failed (dead) instead of retrying it."""
    job.retries = job.attempts
    job.meta["error"] = error


def _course(services: Services, record: IntakeRecord) -> Course:
    course = services.catalog.courses.get(record.course_slug)
    if course is None:
        raise Permanent(f"course '{record.course_slug}' is not in the catalog")
    return course


# --- intake start ---------------------------------------------------------------------------------


async def prepare(services: Services, args: JobArgs) -> str:
    """Retrieval and the system prompt ahead of time, so the student's first screen is instant."""
    store = services.intakes
    record = await store.get(args.token)
    if record is None or record.status == "cancelled" or record.interview.prompt:
        return "skipped"
    lock = await store.try_turn_lock(args.token, 0.0)
    if lock is None:
        return "skipped: the chat is preparing itself"
    try:
        record, version = await store.get_versioned(args.token)
        if record is None or record.status == "cancelled" or record.interview.prompt:
            return "skipped"
        course = _course(services, record)
        try:
            await chat.interviewer(services, record).prepare(record.interview, course, record.booking)
        except Exception as exc:  # an optimisation only: the chat prepares itself on consent
            log.warning("interview_prepare_failed", booking_uid=record.booking.uid, error=type(exc).__name__)
            return "skipped: preparation failed, the chat will prepare on consent"
        if not record.interview.context_sources:
            # retrieval found nothing (index still building?): keep nothing, so consent prepares afresh
            return "skipped: no course context yet, the chat will prepare on consent"
        if not await store.save(record, expect=version):
            return "skipped: the intake changed meanwhile, the chat will prepare on consent"
    finally:
        await lock.release()
    return "prepared"


async def invite_email(services: Services, args: JobArgs) -> str:
    record = await services.intakes.get(args.token)
    if record is None or record.status == "cancelled":
        return "skipped"
    message = build_invite(services.settings, record.booking, _course(services, record), record.token)
    return await send_email(services.settings, message, "invite")


async def reminder_email(services: Services, args: JobArgs) -> str:
    """The one reminder, unless the student started the chat (or the meeting moved or was cancelled)."""
    record = await services.intakes.get(args.token)
    if record is None or record.status != "invited" or record.consented_at is not None:
        return "skipped: the chat was started, or the intake is gone"
    if args.start_time and args.start_time != record.booking.start_time:
        return "skipped: the meeting moved (a new reminder is scheduled)"
    message = build_reminder(services.settings, record.booking, _course(services, record), record.token)
    return await send_email(services.settings, message, "reminder")


async def calcom_note_remove(services: Services, args: JobArgs) -> str:
    """After a cancellation: our block leaves the booking's Cal.com notes (the invite promises it)."""
    settings = services.settings
    if not settings.calcom_api_key:
        return "skipped: no Cal.com API key"
    if args.booking is None or args.booking.booking_id is None:
        raise Permanent("note removal without a booking id")
    client = CalcomClient(
        services.http, settings.calcom_api_url, settings.calcom_api_key, settings.calcom_timeout_s
    )
    try:
        booking = await client.get_booking(args.booking.booking_id)
        if remove_block(booking.description) != (booking.description or "").strip():
            await client.set_description(args.booking.booking_id, remove_block(booking.description))
    except CalcomError as exc:
        if not exc.retryable:
            raise Permanent(str(exc)) from None
        raise
    return f"cal.com booking {args.booking.booking_id}: our note removed"


async def finish_setups(ctx: JobContext) -> int:
    """Cron: finish intakes whose creation stopped half-way (the process died between the record and
    its jobs), so the invitation goes out even if Cal.com never retries the webhook."""
    services = ctx["services"]
    tokens = await services.intakes.pending_setups(SETUP_GRACE_S)
    for token in tokens:
        await finish_setup(services.intakes, services.jobs, token)
    return len(tokens)


# --- summaries -------------------------------------------------------------------------------------


async def summarize(services: Services, args: JobArgs) -> str:
    """Write the final summary, keep it on the record, and hand it to both delivery channels."""
    record = await services.intakes.get(args.token)
    if record is None or record.status == "cancelled":
        return "skipped"
    return await _summarize(services, record, args.status or "complete")


async def partial_summary(services: Services, args: JobArgs) -> str:
    """Due before the meeting: an unfinished intake gets a partial (or no-intake) summary."""
    record = await services.intakes.get(args.token)
    if record is None or record.status not in ("invited", "active"):
        return "skipped: the intake finished or was cancelled"
    if args.start_time and args.start_time != record.booking.start_time:
        return "skipped: the meeting moved (a new partial summary is scheduled)"
    status: SummaryStatus = "partial" if record.interview.turn > 0 else "no_intake"
    log.info("partial_summary_due", booking_uid=record.booking.uid, status=status)
    await intake_events.abandoned(services.events, record)
    return await _summarize(services, record, status)


async def _summarize(services: Services, record: IntakeRecord, status: SummaryStatus) -> str:
    course = _course(services, record)
    summary = await _write_summary(services, record, course, status)
    kept = await _keep_summary(services, record.token, summary)
    if kept is None or kept.status == "cancelled":
        return "skipped: booking cancelled"
    if summary.status == "partial" and kept.status != "partial":
        return "skipped: the intake finished meanwhile"
    await services.jobs.deliver_summary(kept, summary, calcom=_calcom_channel(services, kept))
    if summary.status != "no_intake":
        await services.jobs.assess(kept, RUBRIC_VERSION)
    return f"summary {summary.status}"


async def _write_summary(
    services: Services, record: IntakeRecord, course: Course, status: SummaryStatus
) -> Summary:
    url = chat.transcript_url(services.settings, record.staff_id)
    if status == "complete":
        try:
            iv = chat.interviewer(services, record)
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


async def _keep_summary(services: Services, token: str, summary: Summary) -> IntakeRecord | None:
    """Store it on the record (a compare-and-set: a turn or a cancellation meanwhile is never undone);
    a partial summary also closes the chat, a no-intake one leaves it open."""
    if summary.status == "no_intake":
        return await services.intakes.get(token)

    def keep(record: IntakeRecord) -> bool:
        if record.status == "cancelled":
            return False
        if summary.status == "partial":
            if record.status not in ("invited", "active"):
                return False
            record.status = "partial"
        record.summary = summary
        return True

    return await services.intakes.update(token, keep)


def _calcom_channel(services: Services, record: IntakeRecord) -> bool:
    if not services.settings.calcom_api_key:
        _warn_once("calcom_channel_disabled", reason="INTAKE_CALCOM_API_KEY is empty")
        return False
    if record.booking.booking_id is None:
        log.warning("calcom_channel_skipped", booking_uid=record.booking.uid, reason="no booking id")
        return False
    return True


async def summary_email(services: Services, args: JobArgs) -> str:
    if args.summary is None or args.booking is None:
        raise Permanent("summary job without a summary")
    if await _cancelled(services, args.token):
        return "skipped: booking cancelled"
    booking = args.booking
    if not booking.organizer.email:  # Cal.com always sends one; a hand-made booking may not
        course = services.catalog.courses.get(args.course_slug)
        if course is None:
            raise Permanent("no organizer email and no course to take the instructor's from")
        booking = msgspec.structs.replace(
            booking, organizer=Person(course.instructor_name, course.instructor_email)
        )
    message = build_summary_email(services.settings, args.summary, booking)
    where = await send_email(services.settings, message, "summary")
    await _mark_delivered(services, args.token)
    await intake_events.delivered(services.events, args.token, args.course_slug, args.summary)
    return where


async def summary_calcom(services: Services, args: JobArgs) -> str:
    settings = services.settings
    if not settings.calcom_api_key:
        _warn_once("calcom_channel_disabled", reason="INTAKE_CALCOM_API_KEY is empty")
        return "skipped: no Cal.com API key"
    if args.summary is None or args.booking is None or args.booking.booking_id is None:
        raise Permanent("summary job without a summary or booking id")
    if await _cancelled(services, args.token):
        return "skipped: booking cancelled"
    client = CalcomClient(
        services.http, settings.calcom_api_url, settings.calcom_api_key, settings.calcom_timeout_s
    )
    try:
        await client.write_summary(args.booking.booking_id, args.summary)
    except CalcomError as exc:
        if not exc.retryable:
            raise Permanent(str(exc)) from None
        raise
    return f"cal.com booking {args.booking.booking_id}"


async def _cancelled(services: Services, token: str) -> bool:
    record = await services.intakes.get(token)
    return record is not None and record.status == "cancelled"


async def _mark_delivered(services: Services, token: str) -> None:
    """Note the delivery on a closed intake (an open one may be mid-turn: leave it untouched)."""

    def mark(record: IntakeRecord) -> bool:
        if record.status not in ("complete", "escalated", "partial"):
            return False
        record.summary_delivered_at = now_iso()
        return True

    await services.intakes.update(token, mark)


# --- quality ---------------------------------------------------------------------------------------


async def assess(services: Services, args: JobArgs) -> str:
    """The rubric's assessment of a finished intake, kept with the intake and counted per model."""
    record = await services.intakes.get(args.token)
    if record is None or record.status == "cancelled" or record.summary is None:
        return "skipped: no finished intake"
    course = _course(services, record)
    calls = await services.calls.for_intake(record.token)
    result = judge(record, course, services.model_id_of(record), prompt_version_of(calls))
    if not await services.assessments.save(record.token, result, record.course_slug):
        return "skipped: already assessed"
    log.info("intake_assessed", booking_uid=record.booking.uid, model=result.model, **result.means)
    return f"assessed: {len(result.assessments)} records"


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


RUNNERS: dict[str, Runner] = {
    "prepare": prepare,
    "invite_email": invite_email,
    "summarize": summarize,
    "partial_summary": partial_summary,
    "summary_email": summary_email,
    "summary_calcom": summary_calcom,
    "reminder_email": reminder_email,
    "calcom_note_remove": calcom_note_remove,
    **alerts.RUNNERS,
    "assess": assess,
}


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
