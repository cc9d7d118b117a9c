"""The student's side of the booking on a real Redis (and real SMTP, the fake Cal.com): the /booked landing
page never reveals the chat and resends at a bounded rate, the reminder goes out once, and a cancellation
deletes the student's details, every job, the mail files and our block in the Cal.com note.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from services.gateway.delivery import jobs as job_kinds
from services.gateway.delivery.email import build_invite, send_email
from services.gateway.delivery.queue import REMINDER_MIN_LEAD_S
from services.gateway.delivery.render import BLOCK_START
from services.gateway.intake.store import parse_time
from tests.fakes.calcom import running_fake_calcom
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
    upcoming,
    work_until,
)

UID = "b7Yx2Lq9Kd1pQmRw3sT8vZ"  # the samples' booking
STUDENT = "sam.lee@student.example.edu"


async def test_booked_page_names_a_masked_address_and_never_the_chat(tmp_path: Path, redis_url: str) -> None:
    """Knowing the uid shows ``s***@student.example.edu`` and a resend button: no token, no chat link. An
    unknown uid (Cal.com may redirect before its webhook) gets the same page without an address."""
    async with open_gateway(tmp_path, redis_url) as gw:
        await deliver(gw.client, upcoming("booking_created"))
        record = await record_for(gw.services, UID)
        page = await gw.client.get(f"/booked?uid={UID}")
        assert page.status_code == 200 and "s***@student.example.edu" in page.text
        assert record.token not in page.text and "/i/" not in page.text and STUDENT not in page.text
        assert 'action="/booked/resend"' in page.text
        unknown = await gw.client.get("/booked?uid=no-such-booking")
        assert unknown.status_code == 200 and "being set up" in unknown.text and "***@" not in unknown.text


async def test_resend_queues_the_invitation_again_at_a_bounded_rate(tmp_path: Path, redis_url: str) -> None:
    """Each resend queues one more invitation, up to the per-booking limit; past it the answer is the same
    and nothing more is queued."""
    async with open_gateway(tmp_path, redis_url) as gw:
        await deliver(gw.client, upcoming("booking_created"))
        record = await record_for(gw.services, UID)
        answers = []
        for _ in range(5):
            response = await gw.client.post("/booked/resend", data={"uid": UID})
            answers.append((response.status_code, "on its way again" in response.text))
            resends = [j for j in await jobs_of(gw.services, record.token) if ".resend-" in j.id]
        assert answers == [(200, True)] * 5
        assert 1 <= len(resends) <= 3  # keys are per second: two resends in one second are one job
        assert record.token not in response.text


async def test_the_reminder_is_scheduled_before_the_meeting_and_sent_once(
    tmp_path: Path, redis_url: str, smtp_server: SmtpCapture
) -> None:
    """Booked three days ahead: a reminder waits for 24 h before the meeting. Run twice (a retried or
    duplicated job), it emails the student once; a student who started the chat gets none."""
    with running_fake_calcom() as calcom:
        async with open_wired_gateway(
            tmp_path, redis_url, smtp_server, calcom, reminder_before_s=86400
        ) as gw:
            await deliver(gw.client, upcoming("booking_created", days=3))
            record = await record_for(gw.services, UID)
            reminder = next(j for j in await jobs_of(gw.services, record.token) if j.kind == "reminder_email")
            start = parse_time(record.booking.start_time).timestamp()
            assert reminder.scheduled_at is not None and abs(reminder.scheduled_at - (start - 86400)) < 2
            job = await gw.services.jobs.intake.job(reminder.id)
            assert job is not None
            ctx = {"services": gw.services, "job": job}
            first = await job_kinds.run(ctx, "reminder_email", job.kwargs or {})  # type: ignore[arg-type]
            second = await job_kinds.run(ctx, "reminder_email", job.kwargs or {})  # type: ignore[arg-type]
            assert first.startswith("smtp://") and second == "skipped: already done"
            sent = [m for m in smtp_server.to(STUDENT) if m["Subject"].startswith("Reminder")]
            assert len(sent) == 1 and f"/i/{record.token}" in sent[0].get_content()
            await gw.client.post(f"/api/intakes/{record.token}/consent")
            late = await job_kinds.reminder_email(gw.services, job_kinds.JobArgs(token=record.token))
            assert late.startswith("skipped")


async def test_no_reminder_for_a_meeting_booked_inside_the_window(tmp_path: Path, redis_url: str) -> None:
    """Booked for tomorrow morning (less than 24 h + an hour ahead): the fresh invitation is enough."""
    async with open_gateway(tmp_path, redis_url, reminder_before_s=86400) as gw:
        await deliver(gw.client, upcoming("booking_created", days=(86400 + REMINDER_MIN_LEAD_S / 2) / 86400))
        record = await record_for(gw.services, UID)
        kinds = {j.kind for j in await jobs_of(gw.services, record.token)}
        assert "invite_email" in kinds and "reminder_email" not in kinds


async def test_a_cancellation_deletes_the_students_data_and_our_note(
    tmp_path: Path, redis_url: str, smtp_server: SmtpCapture
) -> None:
    """CANCELLED after a summary reached Cal.com: the record keeps no name, address or booking title, no
    job of the intake is left in Redis (snapshots included), its mail files are gone, and the worker takes
    our block out of the booking's notes while the student's own notes stay."""
    with running_fake_calcom() as calcom:
        async with open_wired_gateway(tmp_path, redis_url, smtp_server, calcom, smtp_host="") as gw:
            await deliver(gw.client, upcoming("booking_created"))
            record = await record_for(gw.services, UID)
            record.summary = make_summary(record)
            await gw.services.intakes.save(record)
            await gw.services.jobs.mark_done(f"summary_calcom.{UID}.complete")  # the note was written
            assert record.booking.booking_id is not None
            calcom.add_booking(
                record.booking.booking_id,
                f"My own notes.\n\n{BLOCK_START}\nsummary\n<!-- office-hours-intake:end -->",
            )
            settings = gw.settings
            await send_email(
                settings, build_invite(settings, record.booking, _course(gw), record.token), "invite"
            )
            assert list((settings.data_path / "mail").glob("*.eml"))
            await deliver(gw.client, sample("booking_cancelled"))
            closed = await record_for(gw.services, UID)
            assert closed.status == "cancelled" and closed.booking.student.email == ""
            assert closed.booking.student.name == "" and closed.booking.title == "" and closed.summary is None
            assert not list((settings.data_path / "mail").glob("*.eml"))
            left = [
                k
                async for k in gw.services.redis.scan_iter(match="saq:job:*")
                if UID.encode() in k and b"calcom_note_remove" not in k
            ]
            assert left == []
            await work_until(gw.services, lambda: _note_gone(calcom, record.booking.booking_id))
            assert calcom.description(record.booking.booking_id) == "My own notes."


async def _note_gone(calcom: object, booking_id: int | None) -> bool:
    return BLOCK_START not in (calcom.description(booking_id or 0) or "")  # type: ignore[attr-defined]


def _course(gw: Gateway):  # type: ignore[no-untyped-def]
    return gw.services.catalog.courses["writ101"]


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
