"""The worker end to end: real Redis, real SMTP (aiosmtpd), the fake Cal.com, the real webhook route.

The inference server is nowhere (port 9), so the model summary always falls back to the deterministic
draft; what these tests pin is delivery: both channels, retries, dead letters, partial summaries.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import msgspec
import pytest
from structlog.testing import capture_logs

from services.gateway import worker
from services.gateway.container import Services
from services.gateway.delivery.jobs import enqueue_due_partials
from services.gateway.delivery.outbox import PARTIAL_DUE, Job, Outbox, enqueue_summary_delivery
from services.gateway.delivery.render import BLOCK_START
from services.gateway.intake.models import ChatMessage, IntakeRecord, Summary
from services.gateway.worker import CONCURRENCY, MODEL_SLOTS, run_once, run_worker
from tests.fakes.calcom import FakeCalcom, running_fake_calcom
from tests.fixtures.smtp import SmtpCapture
from tests.gateway.delivery.harness import (
    Gateway,
    deliver,
    jobs_of,
    make_summary,
    open_gateway,
    open_wired_gateway,
    record_for,
    sample,
    store_of,
    upcoming,
    work_until,
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
    await enqueue_summary_delivery(gw.services, record)
    return record


def _summary_mails(smtp: SmtpCapture) -> list[EmailMessage]:
    return smtp.to(ORGANIZER)


async def _dead(gw: Gateway) -> list[Any]:
    return await Outbox(gw.services.redis, gw.settings).dead_letters()


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


async def test_calcom_failing_then_recovering_is_retried_and_the_block_is_replaced_not_duplicated(
    wired: Gateway, smtp_server: SmtpCapture, calcom: FakeCalcom
) -> None:
    """Two 500s, then success; a second delivery replaces the block; the student's notes stay."""
    await _booked(wired)
    calcom.fail(times=2)
    with capture_logs() as logs:
        await _finished(wired)

        async def patched() -> bool:
            return bool(calcom.patches(BOOKING_ID))

        await work_until(wired.services, patched)
    retries = [e for e in logs if e["event"] == "job_retry_scheduled"]
    assert [e["attempt"] for e in retries] == [1, 2]
    assert all(e["kind"] == "summary_calcom" and e["delay_s"] > 0 for e in retries)
    assert not any("@" in json.dumps(e, default=str) for e in logs), "no email address in any log line"
    first = calcom.description(BOOKING_ID) or ""

    await _finished(wired)  # the same intake delivered again (e.g. staff re-sent it)

    async def patched_twice() -> bool:
        return len(calcom.patches(BOOKING_ID)) == 2

    await work_until(wired.services, patched_twice)
    again = calcom.description(BOOKING_ID) or ""
    assert again.count(BLOCK_START) == 1 and again.startswith(NOTES)
    assert len(again) == len(first)


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
    assert await Outbox(wired.services.redis, wired.settings).requeue(dead.id)

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
        assert dead.attempts == 0 and "401" in (dead.last_error or "")


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
    """CANCELLED while the summary waits in the outbox: nothing is delivered afterwards."""
    await _booked(wired)
    await _finished(wired)
    await deliver(wired.client, sample("booking_cancelled"))
    outbox = Outbox(wired.services.redis, wired.settings)
    for _ in range(20):
        await asyncio.sleep(0.02)
        await run_once(wired.services, outbox)
    assert _summary_mails(smtp_server) == [] and calcom.patches(BOOKING_ID) == []


# --- partial / no-intake summaries ------------------------------------------------------------------


async def _due_of(gw: Gateway, token: str) -> float:
    due = await gw.services.redis.zscore(PARTIAL_DUE, token)
    assert due is not None
    return float(due)


async def test_no_intake_summary_is_sent_before_the_meeting_when_the_chat_was_never_started(
    wired: Gateway, smtp_server: SmtpCapture, calcom: FakeCalcom
) -> None:
    """Nothing is due before ``start - 2 h``; then a ``no_intake`` summary goes on both channels."""
    record = await _booked(wired, days=3)
    due = await _due_of(wired, record.token)
    outbox = Outbox(wired.services.redis, wired.settings)
    assert await enqueue_due_partials(wired.services, outbox, now=due - 10) == 0
    assert await enqueue_due_partials(wired.services, outbox, now=due + 1) == 1
    assert await enqueue_due_partials(wired.services, outbox, now=due + 2) == 0, "taken only once"

    async def delivered() -> bool:
        return bool(_summary_mails(smtp_server)) and bool(calcom.patches(BOOKING_ID))

    await work_until(wired.services, delivered)
    (mail,) = _summary_mails(smtp_server)
    (attachment,) = list(mail.iter_attachments())
    assert msgspec.json.decode(attachment.get_content(), type=Summary).status == "no_intake"
    assert "No intake" in (calcom.description(BOOKING_ID) or "")
    assert (await store_of(wired.services).get(record.token)).status == "invited"  # type: ignore[union-attr]


async def test_partial_summary_is_sent_when_the_student_stopped_midway(
    wired: Gateway, smtp_server: SmtpCapture, calcom: FakeCalcom
) -> None:
    """Some turns but unfinished at the due time: a ``partial`` summary; the intake is closed as partial."""
    record = await _booked(wired, days=3)
    record.status = "active"
    record.interview.messages = [
        ChatMessage("assistant", "What would you like help with?"),
        ChatMessage("student", "My thesis for essay 2 is too broad."),
    ]
    await store_of(wired.services).save(record)
    due = await _due_of(wired, record.token)
    await enqueue_due_partials(wired.services, Outbox(wired.services.redis, wired.settings), now=due + 1)

    async def delivered() -> bool:
        return bool(_summary_mails(smtp_server)) and bool(calcom.patches(BOOKING_ID))

    await work_until(wired.services, delivered)
    (attachment,) = list(_summary_mails(smtp_server)[0].iter_attachments())
    summary = msgspec.json.decode(attachment.get_content(), type=Summary)
    assert summary.status == "partial" and summary.turns == 1
    stored = await store_of(wired.services).get(record.token)
    assert stored is not None and stored.status == "partial" and stored.summary == summary


async def test_finishing_unschedules_the_partial_summary(wired: Gateway) -> None:
    """A finished intake has no partial summary pending."""
    record = await _booked(wired)
    await _finished(wired)
    assert await wired.services.redis.zscore(PARTIAL_DUE, record.token) is None


async def test_rescheduling_moves_the_partial_due_time(wired: Gateway) -> None:
    record = await _booked(wired, days=3)
    before = await _due_of(wired, record.token)
    await deliver(wired.client, upcoming("booking_rescheduled", days=6))
    after = await _due_of(wired, record.token)
    assert after - before == pytest.approx(3 * 86400, abs=60)


# --- the worker process ----------------------------------------------------------------------------------


async def test_run_worker_delivers_and_stops_gracefully(wired: Gateway, smtp_server: SmtpCapture) -> None:
    """``run_worker`` picks up jobs on its own (BLPOP wake-up) and returns promptly once stopped."""
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
    after is still sent at once, because summaries get at most MODEL_SLOTS of the worker's slots; the
    deferred summary runs once one finishes, with no attempt counted against it."""
    release = asyncio.Event()
    running: list[str] = []
    peak = 0

    async def fake_job(services: Services, outbox: Outbox, job: Job) -> str:
        nonlocal peak
        if job.kind == "summarize":
            running.append(job.id)
            peak = max(peak, len(running))
            await release.wait()
            running.remove(job.id)
        return "done"

    monkeypatch.setattr(worker, "run_job", fake_job)
    outbox = Outbox(wired.services.redis, wired.services.settings)
    summaries = [await outbox.enqueue("summarize", f"t{i}") for i in range(CONCURRENCY)]
    invite = await outbox.enqueue("invite_email", "t-next")
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run_worker(wired.services, stop))

    async def state(job: Job) -> str:
        stored = await outbox.get(job.id)
        return stored.state if stored else "gone"

    try:
        for _ in range(200):
            if await state(invite) == "delivered":
                break
            await asyncio.sleep(0.05)
        assert await state(invite) == "delivered"
        assert peak == len(running) == MODEL_SLOTS
        release.set()
        for _ in range(200):
            if all([await state(j) == "delivered" for j in summaries]):
                break
            await asyncio.sleep(0.05)
        assert [await state(j) for j in summaries] == ["delivered"] * CONCURRENCY
        assert peak == MODEL_SLOTS
        stored = [await outbox.get(j.id) for j in summaries]
        assert all(j is not None and j.attempts == 0 for j in stored)  # deferring is not an attempt
    finally:
        release.set()
        stop.set()
        await asyncio.wait_for(task, timeout=5)
