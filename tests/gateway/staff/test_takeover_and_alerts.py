"""The professor's side of a running intake through the real app on a real Redis: the dashboard's order and
filters, take-over and hand-back, acknowledging a flag, a request for a person, the distress alert email,
a broadcast to the students of a time window, and the booking's own reschedule and cancel links.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from services.coursepack import Catalog
from services.gateway.app import create_app
from services.gateway.container import Services, build_services
from services.gateway.intake.models import Flags, IntakeRecord
from services.gateway.staff import audit
from services.settings import Settings
from tests.fixtures.smtp import SmtpCapture
from tests.gateway.delivery.harness import work_until
from tests.gateway.intake.scripted import ScriptedModel
from tests.gateway.staff.harness import (
    STAFF_PASSWORD,
    course,
    csrf_ready,
    load,
    make_settings,
    parse_sse,
    reply_text,
    save,
    seed_intake,
    services_factory,
)


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, smtp_server: SmtpCapture) -> Settings:
    # every test logs in and the session shares one Redis: the per-client login limit is off here
    return make_settings(
        tmp_path,
        redis_url,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        rate_limit_login_per_client=0,
    )


@pytest.fixture
async def staff(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """The app, logged in with the operator's password (sees every course)."""
    app = create_app(settings, services_factory=services_factory(ScriptedModel()))
    async with AsyncTestClient(app) as client:
        token = await csrf_ready(client)
        form = {"password": STAFF_PASSWORD, "_csrf_token": token}
        assert (await client.post("/staff/login", data=form, follow_redirects=False)).status_code == 303
        yield client


def _worker_services(settings: Settings) -> Services:
    return build_services(
        settings,
        catalog=Catalog(courses={"stat150": course()}, problems=[]),
        retriever=None,
        model=ScriptedModel(),
    )


def _at(days: float) -> str:
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


async def _seed_at(redis_url: str, settings: Settings, days: float, **fields: Any) -> IntakeRecord:
    record = await seed_intake(redis_url, settings, **fields)
    booking = msgspec.structs.replace(record.booking, start_time=_at(days), end_time=_at(days + 0.02))
    record.booking = booking
    await save(redis_url, settings, record)
    return record


async def _started(staff: AsyncTestClient[Litestar], redis_url: str, settings: Settings) -> IntakeRecord:
    record = await seed_intake(redis_url, settings)
    assert (await staff.post(f"/api/intakes/{record.token}/consent")).status_code == 200
    return record


async def _say(
    staff: AsyncTestClient[Litestar], record: IntakeRecord, text: str
) -> list[tuple[str, dict[str, Any]]]:
    response = await staff.post(f"/api/intakes/{record.token}/messages", json={"text": text})
    assert response.status_code == 200, response.text
    return parse_sse(response.text)


async def test_dashboard_groups_attention_then_upcoming_soonest_then_past(
    staff: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """Escalated first whatever its date, then upcoming meetings soonest first, then past ones; each row
    has titles and the meeting time in the course's zone; the filters narrow by course and status."""
    later = await _seed_at(redis_url, settings, 3)
    past = await _seed_at(redis_url, settings, -2)
    soon = await _seed_at(redis_url, settings, 1)
    alarm = await _seed_at(redis_url, settings, 5, status="escalated")
    alarm.interview.flags = Flags(distress=True, escalated_to_human=True)
    alarm.interview.facts.assignment = "ps3"
    await save(redis_url, settings, alarm)
    mine = {
        r.staff_id: name for r, name in ((later, "later"), (past, "past"), (soon, "soon"), (alarm, "alarm"))
    }

    rows = (await staff.get("/staff/api/intakes")).json()
    order = [mine[r["staff_id"]] for r in rows if r["staff_id"] in mine]
    assert order == ["alarm", "soon", "later", "past"]
    first = next(r for r in rows if r["staff_id"] == alarm.staff_id)
    assert first["group"] == "attention" and first["attention_labels"] == ["Escalated"]
    assert first["assignment"] == "Problem Set 3: Hypothesis Tests" and first["course_code"] == "STAT 150"
    assert first["meeting_time"].endswith("UTC") and first["status_label"] == "Escalated"

    only = (await staff.get("/staff/api/intakes", params={"course": "stat150", "status": "attention"})).json()
    assert alarm.staff_id in [r["staff_id"] for r in only] and all(r["group"] == "attention" for r in only)
    assert (await staff.get("/staff/api/intakes", params={"status": "bogus"})).status_code == 422
    assert (await staff.get("/staff/api/intakes", params={"course": "nope"})).json() == []


async def test_take_over_of_a_finished_intake_says_why_not(
    staff: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """A complete intake cannot be taken over: 409 problem JSON in words, and the page's detail carries the
    same reason (so the button is replaced by the explanation)."""
    record = await seed_intake(redis_url, settings, status="complete")
    refused = await staff.post(f"/staff/api/intakes/{record.staff_id}/takeover", json={"taken_over": True})
    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "finished" in refused.json()["detail"] and refused.json()["intake_status"] == "complete"
    detail = (await staff.get(f"/staff/api/intakes/{record.staff_id}")).json()
    assert detail["can_take_over"] is False and "finished" in detail["take_over_refusal"]
    stored = await load(redis_url, settings, record.token)
    assert stored is not None and stored.taken_over is False


async def test_hand_back_asks_for_what_is_still_missing(
    staff: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """Take over, talk, hand back: the assistant asks the policy's next question (no restart, facts and turn
    count intact), and the next student answer is an ordinary interview turn again."""
    record = await _started(staff, redis_url, settings)
    await _say(staff, record, "I'm stuck on rejecting the null hypothesis in Problem Set 3.")
    before = await load(redis_url, settings, record.token)
    assert before is not None and before.interview.turn == 1
    url = f"/staff/api/intakes/{record.staff_id}"
    assert (await staff.post(url + "/takeover", json={"taken_over": True})).status_code == 200
    assert await _say(staff, record, "Is anyone there?") == [("done", {"status": "active", "turn": 1})]
    assert (await staff.post(url + "/messages", json={"text": "Yes, Dr. Okafor here."})).status_code == 200

    back = await staff.post(url + "/takeover", json={"taken_over": False})
    assert back.status_code == 200 and back.json()["intake"]["taken_over"] is False
    after = await load(redis_url, settings, record.token)
    assert after is not None and after.interview.turn == 1
    assert after.interview.facts.assignment == before.interview.facts.assignment == "ps3"
    asked = after.interview.asked[-1]
    assert asked not in ("issue", "assignment") and asked in after.interview.asked  # not a restart
    last = after.interview.messages[-1]
    assert last.role == "assistant" and last.text.startswith("Thanks for waiting") and last.text.endswith("?")
    assert after.interview.messages[0].text != last.text

    events = await _say(staff, record, "I re-read the lecture slides and tried two practice problems.")
    assert events[-1] == ("done", {"status": "active", "turn": 2}) and reply_text(events)


async def test_acknowledge_takes_a_flag_off_needs_attention_and_is_audited(
    staff: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """An escalated intake needs attention until someone acknowledges it; the audit log has who; an intake
    without a flag has nothing to acknowledge (409)."""
    record = await seed_intake(redis_url, settings, status="escalated")
    record.interview.flags = Flags(distress=True, escalated_to_human=True)
    await save(redis_url, settings, record)
    url = f"/staff/api/intakes/{record.staff_id}"
    assert (await staff.get(url)).json()["attention"] == ["escalated"]
    acked = await staff.post(url + "/acknowledge", json={})
    assert acked.status_code == 200 and acked.json()["attention"] == [] and acked.json()["acknowledged_by"]
    rows = (await staff.get("/staff/api/intakes")).json()
    assert next(r for r in rows if r["staff_id"] == record.staff_id)["group"] == "upcoming"
    services = _worker_services(settings)
    try:
        entries = await audit.entries(services, limit=50)
    finally:
        await services.aclose()
    assert any(e.action == "acknowledge" and e.target == record.staff_id for e in entries)
    plain = await seed_intake(redis_url, settings)
    assert (await staff.post(f"/staff/api/intakes/{plain.staff_id}/acknowledge", json={})).status_code == 409


async def test_asking_for_a_person_flags_the_intake_and_emails_the_staff(
    staff: AsyncTestClient[Litestar], redis_url: str, settings: Settings, smtp_server: SmtpCapture
) -> None:
    """ "Can I talk to a real person?": the student is told the staff will see it, the chat goes on, the
    intake needs attention (asked for a person), and the course staff get one email with the staff link."""
    record = await _started(staff, redis_url, settings)
    events = await _say(staff, record, "Can I talk to a real person please?")
    assert "flagged this for" in reply_text(events) and events[-1][1]["status"] == "active"
    stored = await load(redis_url, settings, record.token)
    assert (
        stored is not None
        and stored.interview.flags.escalated_to_human
        and not stored.interview.flags.distress
    )
    assert "person" not in (stored.interview.facts.stuck_on or "")  # the request is no fact about the problem
    row = next(r for r in (await staff.get("/staff/api/intakes")).json() if r["staff_id"] == record.staff_id)
    assert row["attention"] == ["person"] and row["attention_labels"] == ["Asked for a person"]

    services = _worker_services(settings)
    try:
        asked = "asked for a person"
        to = "okafor@example.edu"
        await work_until(services, lambda: _has_mail(smtp_server, to, record.staff_id, asked))
    finally:
        await services.aclose()
    mail = _mail_about(smtp_server, "okafor@example.edu", record.staff_id, "asked for a person")
    body = mail.get_content()
    assert "asked for a person" in mail["Subject"] and f"/staff/intakes/{record.staff_id}" in body
    assert record.token not in body


async def test_distress_emails_the_staff_at_once_without_the_students_words(
    staff: AsyncTestClient[Litestar], redis_url: str, settings: Settings, smtp_server: SmtpCapture
) -> None:
    """A distress message: the course staff get an email with the staff link and none of the transcript; the
    alert job is keyed by booking and reason (saying it again does not queue a second)."""
    record = await _started(staff, redis_url, settings)
    words = "honestly I want to kill myself, nothing matters anymore"
    events = await _say(staff, record, words)
    assert events[-1][1]["status"] == "escalated"
    services = _worker_services(settings)
    try:
        keys = [j.id for j in await services.jobs.jobs_for(record.token)]
        assert f"staff_alert.{record.booking.uid}.distress" in keys
        await work_until(
            services, lambda: _has_mail(smtp_server, "okafor@example.edu", record.staff_id, "distress")
        )
    finally:
        await services.aclose()
    alert = _mail_about(smtp_server, "okafor@example.edu", record.staff_id, "distress")
    body = alert.get_content()
    assert "distress" in alert["Subject"]
    assert (
        f"/staff/intakes/{record.staff_id}" in body and "kill" not in body and "nothing matters" not in body
    )
    row = next(r for r in (await staff.get("/staff/api/intakes")).json() if r["staff_id"] == record.staff_id)
    assert row["group"] == "attention" and "escalated" in row["attention"]


async def test_broadcast_emails_each_student_booked_in_the_window(
    staff: AsyncTestClient[Litestar], redis_url: str, settings: Settings, smtp_server: SmtpCapture
) -> None:
    """Students booked in the window get the note by email (cancelled ones and those outside it do not);
    the audit log records the broadcast without its text."""
    inside = await _seed_at(redis_url, settings, 10.1)
    cancelled = await _seed_at(redis_url, settings, 10.2, status="cancelled")
    outside = await _seed_at(redis_url, settings, 12)
    inside.booking = msgspec.structs.replace(
        inside.booking, student=msgspec.structs.replace(inside.booking.student, email="in@example.edu")
    )
    await save(redis_url, settings, inside)
    body = {
        "course": "stat150",
        "start": _at(10),
        "end": _at(11),
        "message": "Running 10 minutes late, sorry!",
    }
    sent = await staff.post("/staff/api/broadcast", json=body)
    assert sent.status_code == 202 and sent.json()["recipients"] == 1, sent.text
    services = _worker_services(settings)
    try:
        await work_until(services, lambda: _has_mail(smtp_server, "in@example.edu"))
        entries = await audit.entries(services, limit=50)
    finally:
        await services.aclose()
    mail = smtp_server.to("in@example.edu")[0]
    assert "Running 10 minutes late" in mail.get_content() and "STAT 150" in mail["Subject"]
    assert not any(
        cancelled.booking.uid in str(m) or outside.booking.uid in str(m) for m in smtp_server.messages
    )
    entry = next(e for e in entries if e.action == "broadcast" and e.target.startswith(sent.json()["id"]))
    assert "late" not in entry.target
    too_long = {**body, "end": _at(30)}
    assert (await staff.post("/staff/api/broadcast", json=too_long)).status_code == 422
    assert (await staff.post("/staff/api/broadcast", json={**body, "message": "x" * 501})).status_code == 422
    assert (await staff.post("/staff/api/broadcast", json={**body, "course": "other"})).status_code == 404


async def test_asking_to_reschedule_gets_the_bookings_own_links(
    staff: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """ "Can I move the meeting?": the reply carries the booking's Cal.com reschedule and cancel links, and
    the interview goes on with its next question."""
    record = await _started(staff, redis_url, settings)
    events = await _say(staff, record, "Actually can I reschedule the meeting to next week?")
    reply = reply_text(events)
    uid = record.booking.uid
    assert (
        f"https://app.cal.com/reschedule/{uid}" in reply
        and f"https://app.cal.com/booking/{uid}?cancel=true" in reply
    )
    assert reply.rstrip().endswith("?") and events[-1][1]["status"] == "active"


async def _has_mail(smtp: SmtpCapture, address: str, about: str = "", subject: str = "") -> bool:
    """A message to ``address`` whose text mentions ``about`` (this test's staff link) and whose subject
    has ``subject``: other tests' jobs left in the shared queue may be sent by this test's worker too, and
    the same booking's summary email also links to the staff page."""
    return any(_is_about(m, about, subject) for m in smtp.to(address))


def _mail_about(smtp: SmtpCapture, address: str, about: str, subject: str) -> Any:
    return next(m for m in smtp.to(address) if _is_about(m, about, subject))


def _is_about(mail: Any, about: str, subject: str) -> bool:
    return subject in mail["Subject"] and about in mail.get_body(("plain",)).get_content()


async def test_asking_for_a_person_again_after_the_staff_saw_it_raises_a_new_alert(
    staff: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """Asked twice before anyone looked: one alert. Asked again after the staff acknowledged it: the intake
    needs attention again and a second alert job is queued (its own key, the first one's stays done)."""
    record = await _started(staff, redis_url, settings)
    await _say(staff, record, "Can I talk to a real person please?")
    await _say(staff, record, "I'd really like to talk to a human")
    services = _worker_services(settings)
    try:
        alerts = [j.id for j in await services.jobs.jobs_for(record.token) if j.id.startswith("staff_alert.")]
        assert alerts == [f"staff_alert.{record.booking.uid}.person"]
        acked = await staff.post(f"/staff/api/intakes/{record.staff_id}/acknowledge", json={})
        assert acked.status_code == 200 and acked.json()["attention"] == []
        await _say(staff, record, "Can I please talk to a real person now?")
        alerts = [j.id for j in await services.jobs.jobs_for(record.token) if j.id.startswith("staff_alert.")]
        assert len(alerts) == 2 and any(".person-after-" in a for a in alerts), alerts
    finally:
        await services.aclose()
    row = next(r for r in (await staff.get("/staff/api/intakes")).json() if r["staff_id"] == record.staff_id)
    assert row["attention"] == ["person"]
