"""The worker end to end: real Redis, real SMTP (aiosmtpd), the fake Cal.com, the real webhook route, the
real SAQ worker (both queues) running in-process.

The inference server is nowhere (port 9), so the model summary always falls back to the deterministic
draft; what these tests pin is delivery: both channels, retries, dead letters, partial summaries.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from pathlib import Path

import msgspec
import pytest
from structlog.testing import capture_logs

from services.gateway.container import Services
from services.gateway.delivery import jobs
from services.gateway.delivery.queue import JobArgs, QueuedJob
from services.gateway.delivery.render import BLOCK_START
from services.gateway.intake.models import ChatMessage, IntakeRecord, Summary
from services.gateway.worker import MODEL_CONCURRENCY, run_worker
from tests.fakes.calcom import FakeCalcom, running_fake_calcom
from tests.fixtures.smtp import SmtpCapture
from tests.gateway.delivery.harness import (
    Gateway,
    deliver,
    future,
    jobs_of,
    make_summary,
    open_gateway,
    open_wired_gateway,
    record_for,
    sample,
    store_of,
    upcoming,
    wait_for,
    work_until,
    working,
)

UID = "b7Yx2Lq9Kd1pQmRw3sT8vZ"
BOOKING_ID = 48213
STUDENT = "sam.lee@student.example.edu"
ORGANIZER = "ana.rivera@univ.example.edu"
NOTES = "Stuck on my thesis for essay 2"


@pytest.fixture
def calcom() -> Iterator[FakeCalcom]:
    with running_fake_calcom() as fake:
        fake.add_booking(BOOKING_ID, description=NOTES, title="WRIT 101 office hours")
        fake.add_booking(48377, description=NOTES, title="WRIT 101 office hours")
        yield fake


@pytest.fixture
async def wired(
    tmp_path: Path, redis_url: str, smtp_server: SmtpCapture, calcom: FakeCalcom
) -> AsyncIterator[Gateway]:
    """The gateway with SMTP and the Cal.com API configured (fake Cal.com, capturing SMTP server)."""
    async with open_wired_gateway(tmp_path, redis_url, smtp_server, calcom) as gateway:
        yield gateway


async def _booked(gw: Gateway, days: float = 3.0) -> IntakeRecord:
    await deliver(gw.client, upcoming("booking_created", days))
    return await record_for(gw.services, UID)


async def _finished(gw: Gateway, status: str = "complete") -> IntakeRecord:
    """What the chat route leaves behind when an interview ends: status, transcript, a draft summary."""
    store = store_of(gw.services)
    record = await record_for(gw.services, UID)
    record.status = status  # type: ignore[assignment]
    record.interview.messages = [
        ChatMessage("assistant", "What would you like help with?"),
        ChatMessage("student", "My thesis for essay 2 is too broad."),
    ]
    record.summary = make_summary(record, "escalated" if status == "escalated" else "complete")
    await store.save(record)
    await gw.services.summaries.summary_ready(
        record.token, record.booking.uid, escalated=status == "escalated"
    )
    return record


def _summary_mails(smtp: SmtpCapture) -> list[EmailMessage]:
    return smtp.to(ORGANIZER)


async def _dead(gw: Gateway) -> list[QueuedJob]:
    return await gw.services.jobs.dead_letters()


# --- invitation --------------------------------------------------------------------------------------


async def test_invite_email_reaches_the_student_with_the_chat_link(
    wired: Gateway, smtp_server: SmtpCapture
) -> None:
    """BOOKING_CREATED -> the worker emails the student ``{public_url}/i/{token}``."""
    record = await _booked(wired)

    async def invited() -> bool:
        return bool(smtp_server.to(STUDENT))

    await work_until(wired.services, invited)
    (mail,) = smtp_server.to(STUDENT)
    link = f"https://intake.example.test/i/{record.token}"
    assert link in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert link in mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "WRIT 101" in str(mail["Subject"])


async def test_without_smtp_emails_are_written_as_eml_files(tmp_path: Path, redis_url: str) -> None:
    """No SMTP host (the ``make run`` default): the invitation lands in ``<data_dir>/mail/*.eml``."""
    async with open_gateway(tmp_path, redis_url) as gw:
        record = await _booked(gw)
        mail_dir = Path(gw.settings.data_dir) / "mail"

        async def written() -> bool:
            return mail_dir.is_dir() and any(mail_dir.glob("*-invite-*.eml"))

        await work_until(gw.services, written)
        (path,) = mail_dir.glob("*-invite-*.eml")
        assert f"/i/{record.token}" in path.read_text()


# --- summary delivery ----------------------------------------------------------------------------------


async def test_finished_intake_is_emailed_and_written_into_the_booking(
    wired: Gateway, smtp_server: SmtpCapture, calcom: FakeCalcom
) -> None:
    """Email (text + HTML + summary.json) to the organizer; the block appended to the Cal.com notes."""
    record = await _booked(wired)
    await _finished(wired)

    async def delivered() -> bool:
        return bool(_summary_mails(smtp_server)) and bool(calcom.patches(BOOKING_ID))

    await work_until(wired.services, delivered)
    (mail,) = _summary_mails(smtp_server)
    assert mail.get_body(("plain",)) is not None and mail.get_body(("html",)) is not None
    (attachment,) = list(mail.iter_attachments())
    assert attachment.get_filename() == "summary.json"
    summary = msgspec.json.decode(attachment.get_content(), type=Summary)
    assert (summary.booking_uid, summary.schema_version, summary.status) == (UID, "1", "complete")
    description = calcom.description(BOOKING_ID) or ""
    assert description.startswith(NOTES) and description.count(BLOCK_START) == 1
    (patch,) = calcom.patches(BOOKING_ID)
    assert set(patch.body or {}) == {"description"}
    stored = await store_of(wired.services).get(record.token)
    assert stored is not None and stored.summary is not None and stored.summary_delivered_at


async def test_calcom_failing_then_recovering_is_retried_and_a_duplicate_sends_nothing_twice(
    wired: Gateway, smtp_server: SmtpCapture, calcom: FakeCalcom
) -> None:
    """Two 500s, then success (one block, the student's notes kept); the same intake handed over again
    (a duplicated job) sends neither a second email nor a second note."""
    await _booked(wired)
    calcom.fail(times=2)
    with capture_logs() as logs:
        await _finished(wired)

        async def patched() -> bool:
            return bool(calcom.patches(BOOKING_ID)) and bool(_summary_mails(smtp_server))

        await work_until(wired.services, patched)
    retries = [e for e in logs if e["event"] == "job_retry_scheduled"]
    assert [e["attempt"] for e in retries] == [1, 2]
    assert all(e["kind"] == "summary_calcom" and e["delay_s"] > 0 for e in retries)
    assert not any("@" in json.dumps(e, default=str) for e in logs), "no email address in any log line"
    description = calcom.description(BOOKING_ID) or ""
    assert description.count(BLOCK_START) == 1 and description.startswith(NOTES)

    with capture_logs() as logs:
        await _finished(wired)  # the same intake handed over a second time
    assert [e["job_id"] for e in logs if e["event"] == "job_duplicate"] == [f"summarize.{UID}.complete"]
    assert await jobs_of(wired.services, (await record_for(wired.services, UID)).token) == []
    assert len(calcom.patches(BOOKING_ID)) == 1 and len(_summary_mails(smtp_server)) == 1


async def test_calcom_hanging_past_the_timeout_is_retried(
    wired: Gateway, smtp_server: SmtpCapture, calcom: FakeCalcom
) -> None:
    """A request that hangs longer than ``calcom_timeout_s`` counts as a failed attempt, then succeeds."""
    await _booked(wired)
    calcom.hang_s = 2.0
    calcom.fail(times=1, mode="hang")
    await _finished(wired)

    async def patched() -> bool:
        return bool(calcom.patches(BOOKING_ID))

    await work_until(wired.services, patched)
    assert (calcom.description(BOOKING_ID) or "").count(BLOCK_START) == 1


async def test_calcom_down_for_the_whole_window_the_email_still_goes_and_the_summary_waits(
    wired: Gateway, smtp_server: SmtpCapture, calcom: FakeCalcom
) -> None:
    """Every attempt fails: the email is delivered anyway; the Cal.com job is parked, summary included,
    and a requeue once Cal.com is back delivers it."""
    record = await _booked(wired)
    calcom.fail(for_s=600)
    await _finished(wired)

    async def parked() -> bool:
        return bool(_summary_mails(smtp_server)) and bool(await _dead(wired))

    await work_until(wired.services, parked)
    (dead,) = await _dead(wired)
    assert dead.kind == "summary_calcom" and dead.attempts == wired.settings.outbox_max_attempts
    assert dead.summary is not None and dead.summary.booking_uid == UID and dead.token == record.token
    assert calcom.patches(BOOKING_ID) == []
    calcom.recover()
    assert await wired.services.jobs.requeue(dead.id)

    async def patched() -> bool:
        return bool(calcom.patches(BOOKING_ID))

    await work_until(wired.services, patched)
    assert await _dead(wired) == []


async def test_a_wrong_api_key_is_dead_lettered_at_once(
    tmp_path: Path, redis_url: str, smtp_server: SmtpCapture, calcom: FakeCalcom
) -> None:
    """Cal.com's 401 cannot be fixed by retrying: one attempt, then the dead letters (summary kept)."""
    async with open_wired_gateway(
        tmp_path, redis_url, smtp_server, calcom, calcom_api_key="cal_wrong_key"
    ) as gw:
        await _booked(gw)
        await _finished(gw)

        async def parked() -> bool:
            return bool(await _dead(gw)) and bool(_summary_mails(smtp_server))

        await work_until(gw.services, parked)
        (dead,) = await _dead(gw)
        assert dead.attempts == 1 and "401" in (dead.last_error or "")


async def test_without_an_api_key_only_the_email_channel_runs(
    tmp_path: Path, redis_url: str, smtp_server: SmtpCapture
) -> None:
    """No Cal.com key: the note channel is skipped (logged once), the email is delivered."""
    async with open_gateway(
        tmp_path, redis_url, smtp_host=smtp_server.host, smtp_port=smtp_server.port
    ) as gw:
        record = await _booked(gw)
        await _finished(gw)

        async def mailed() -> bool:
            return bool(_summary_mails(smtp_server))

        await work_until(gw.services, mailed)
        kinds = {j.kind for j in await jobs_of(gw.services, record.token)}
        assert "summary_calcom" not in kinds
        assert await _dead(gw) == []


async def test_escalated_intake_is_delivered_with_its_status(
    wired: Gateway, smtp_server: SmtpCapture, calcom: FakeCalcom
) -> None:
    """An escalated intake is delivered at once, marked escalated in the subject and the JSON."""
    await _booked(wired)
    await _finished(wired, status="escalated")

    async def mailed() -> bool:
        return bool(_summary_mails(smtp_server))

    await work_until(wired.services, mailed)
    (mail,) = _summary_mails(smtp_server)
    assert "escalated" in str(mail["Subject"]).lower()
    (attachment,) = list(mail.iter_attachments())
    assert msgspec.json.decode(attachment.get_content(), type=Summary).status == "escalated"


async def test_cancelling_before_delivery_cancels_the_pending_summary(
    wired: Gateway, smtp_server: SmtpCapture, calcom: FakeCalcom
) -> None:
    """CANCELLED while the summary waits in the queue: its jobs are dropped, nothing is delivered,
    while the worker goes on with other work (another student's invitation)."""
    record = await _booked(wired)
    await _finished(wired)
    await deliver(wired.client, sample("booking_cancelled"))
    assert await jobs_of(wired.services, record.token) == []
    other = upcoming("booking_created")
    other["payload"]["uid"] = "another-booking"
    other["payload"]["attendees"][0]["email"] = "kim@student.example.edu"
    await deliver(wired.client, other)

    async def other_invited() -> bool:
        return bool(smtp_server.to("kim@student.example.edu"))

    await work_until(wired.services, other_invited)
    assert _summary_mails(smtp_server) == [] and calcom.patches(BOOKING_ID) == []


# --- partial / no-intake summaries ------------------------------------------------------------------


async def _partial(gw: Gateway, token: str) -> QueuedJob:
    (job,) = [j for j in await jobs_of(gw.services, token) if j.kind == "partial_summary"]
    return job


async def _booked_soon(gw: Gateway, in_s: float) -> IntakeRecord:
    """A booking whose meeting starts ``in_s`` seconds from now."""
    data = sample("booking_created")
    data["payload"]["startTime"] = future(in_s / 86400)
    data["payload"]["endTime"] = future(in_s / 86400 + 0.02)
    await deliver(gw.client, data)
    return await record_for(gw.services, UID)


async def _started_at_or_after_its_time(gw: Gateway, key: str) -> bool:
    job = await gw.services.jobs.intake.job(key)
    assert job is not None and job.scheduled > 0
    return job.started / 1000 >= job.scheduled


async def test_no_intake_summary_is_sent_before_the_meeting_when_the_chat_was_never_started(
    tmp_path: Path, redis_url: str, smtp_server: SmtpCapture, calcom: FakeCalcom
) -> None:
    """The partial-summary job waits for its time (start - ``partial_before_meeting_s``), then sends a
    ``no_intake`` summary on both channels; the intake stays open."""
    async with open_wired_gateway(tmp_path, redis_url, smtp_server, calcom, partial_before_meeting_s=2) as gw:
        record = await _booked_soon(gw, 5)
        job = await _partial(gw, record.token)
        assert job.state == "pending" and job.scheduled_at is not None

        async def delivered() -> bool:
            return bool(_summary_mails(smtp_server)) and bool(calcom.patches(BOOKING_ID))

        await work_until(gw.services, delivered)
        assert await _started_at_or_after_its_time(gw, job.id)
        (mail,) = _summary_mails(smtp_server)
        (attachment,) = list(mail.iter_attachments())
        assert msgspec.json.decode(attachment.get_content(), type=Summary).status == "no_intake"
        assert "No intake" in (calcom.description(BOOKING_ID) or "")
        assert (await store_of(gw.services).get(record.token)).status == "invited"  # type: ignore[union-attr]


async def test_partial_summary_is_sent_when_the_student_stopped_midway(
    tmp_path: Path, redis_url: str, smtp_server: SmtpCapture, calcom: FakeCalcom
) -> None:
    """Some turns but unfinished at the due time: a ``partial`` summary; the intake is closed as partial."""
    async with open_wired_gateway(tmp_path, redis_url, smtp_server, calcom, partial_before_meeting_s=2) as gw:
        record = await _booked_soon(gw, 6)
        record.status = "active"
        record.interview.messages = [
            ChatMessage("assistant", "What would you like help with?"),
            ChatMessage("student", "My thesis for essay 2 is too broad."),
        ]
        await store_of(gw.services).save(record)

        async def delivered() -> bool:
            return bool(_summary_mails(smtp_server)) and bool(calcom.patches(BOOKING_ID))

        await work_until(gw.services, delivered)
        (attachment,) = list(_summary_mails(smtp_server)[0].iter_attachments())
        summary = msgspec.json.decode(attachment.get_content(), type=Summary)
        assert summary.status == "partial" and summary.turns == 1
        stored = await store_of(gw.services).get(record.token)
        assert stored is not None and stored.status == "partial" and stored.summary == summary


async def test_finishing_unschedules_the_partial_summary(wired: Gateway) -> None:
    """A finished intake has no partial summary pending, only the final summary."""
    record = await _booked(wired)
    assert (await _partial(wired, record.token)).state == "pending"
    await _finished(wired)
    kinds = [j.kind for j in await jobs_of(wired.services, record.token)]
    assert "partial_summary" not in kinds and "summarize" in kinds


async def test_rescheduling_moves_the_partial_due_time(wired: Gateway) -> None:
    record = await _booked(wired, days=3)
    before = await _partial(wired, record.token)
    await deliver(wired.client, upcoming("booking_rescheduled", days=6))
    after = await _partial(wired, record.token)
    assert before.scheduled_at and after.scheduled_at
    assert after.scheduled_at - before.scheduled_at == pytest.approx(3 * 86400, abs=60)


# --- the worker process ----------------------------------------------------------------------------------


async def test_run_worker_delivers_and_stops_gracefully(wired: Gateway, smtp_server: SmtpCapture) -> None:
    """``run_worker`` picks up jobs on its own (SAQ blocks on the queue) and returns promptly once stopped."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(wired.services, stop))
    try:
        await _booked(wired)
        for _ in range(200):
            if smtp_server.to(STUDENT):
                break
            await asyncio.sleep(0.05)
        assert smtp_server.to(STUDENT)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)


async def test_rescheduling_a_summarised_intake_writes_the_note_onto_the_new_booking(
    wired: Gateway, smtp_server: SmtpCapture, calcom: FakeCalcom
) -> None:
    """After the summary went to the old booking, a reschedule puts the same note on the new booking."""
    await _booked(wired)
    await _finished(wired)

    async def old_patched() -> bool:
        return bool(calcom.patches(BOOKING_ID))

    await work_until(wired.services, old_patched)
    await deliver(wired.client, upcoming("booking_rescheduled", days=5))

    async def new_patched() -> bool:
        return bool(calcom.patches(48377))

    await work_until(wired.services, new_patched)
    note = calcom.description(48377) or ""
    assert note.startswith(NOTES) and note.count(BLOCK_START) == 1 and "Rk3nV8mQ2wXz5tYb7cLp1d" not in note
    assert len(_summary_mails(smtp_server)) == 1, "the professor is not emailed twice for a reschedule"


async def test_model_summaries_never_take_every_slot(wired: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four students finish at once and their model summaries take minutes: the invitation booked right
    after is still sent at once, because summaries have a queue (and MODEL_CONCURRENCY slots) of their
    own; the fourth summary waits for a slot and runs once one finishes, with no attempt counted."""
    release = asyncio.Event()
    running: list[str] = []
    peak = 0

    async def slow_summary(services: Services, args: JobArgs) -> str:
        nonlocal peak
        running.append(args.token)
        peak = max(peak, len(running))
        await release.wait()
        running.remove(args.token)
        return "done"

    monkeypatch.setitem(jobs.RUNNERS, "summarize", slow_summary)
    queue = wired.services.jobs
    students = MODEL_CONCURRENCY + 1
    for i in range(students):
        await queue.summary_ready(f"t{i}", f"b{i}", escalated=False)
    summaries = [f"summarize.b{i}.complete" for i in range(students)]
    invite = await queue.enqueue("invite_email", "b-next", args=JobArgs(token="t-next"))
    assert invite is not None

    async def state(key: str) -> str:
        job = await queue.get(key)
        return job.state if job else "gone"

    async with working(wired.services):

        async def invited() -> bool:
            return await state(invite) == "delivered"

        await wait_for(invited)
        assert peak == len(running) == MODEL_CONCURRENCY
        release.set()

        async def all_summarised() -> bool:
            return [await state(k) for k in summaries] == ["delivered"] * students

        await wait_for(all_summarised)
    assert peak == MODEL_CONCURRENCY
    stored = [await queue.get(k) for k in summaries]
    assert all(j is not None and j.attempts == 1 for j in stored), "waiting for a slot is not an attempt"
