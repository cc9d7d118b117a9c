"""The professor's side on a phone (360x740) in a real browser: the dashboard's groups, order and filters,
live updates by server push, the intake page (summary first, transcript folded), and a whole take-over:
the student sees the staff member's name, both sides see each other live, and after the hand-back the
assistant asks for what is still missing. Screenshots go to test-output/.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from services.coursepack import StaffMember
from services.gateway.app import create_app
from services.gateway.intake.models import Flags, IntakeRecord
from services.settings import Settings
from tests.browser.conftest import PHONE, no_horizontal_scroll, serve
from tests.gateway.intake.scripted import ScriptedModel, make_course
from tests.gateway.staff.harness import (
    STAFF_PASSWORD,
    load,
    make_settings,
    save,
    seed_intake,
    services_factory,
)

pytestmark = pytest.mark.browser
# every test here logs in; the session shares one Redis, so the per-client login limit would bite
NO_LOGIN_LIMIT = {"rate_limit_login_per_client": 0}
TA_EMAIL = "sam.lee@example.edu"


def _courses() -> list[Any]:
    stat = msgspec.structs.replace(make_course(), staff=[StaffMember(email=TA_EMAIL, name="Sam Lee")])
    phil = msgspec.structs.replace(
        make_course(), slug="phil210", code="PHIL 210", title="Ethics", timezone="America/New_York"
    )
    return [stat, phil]


def _at(days: float) -> str:
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


async def _seed(redis_url: str, settings: Settings, name: str, days: float, **fields: Any) -> IntakeRecord:
    record = await seed_intake(redis_url, settings, **fields)
    student = msgspec.structs.replace(record.booking.student, name=name)
    record.booking = msgspec.structs.replace(
        record.booking, student=student, start_time=_at(days), end_time=_at(days + 0.02)
    )
    await save(redis_url, settings, record)
    return record


async def _phone(browser: Any) -> tuple[Any, Any]:
    context = await browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    return context, await context.new_page()


async def _operator_login(page: Any, base: str) -> None:
    await page.goto(f"{base}/staff/intakes")
    await page.get_by_text("Operator login (password)").click()
    await page.get_by_label("Staff password").fill(STAFF_PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.get_by_role("heading", name="Intakes").wait_for()


async def _link_login(page: Any, base: str, settings: Settings, email: str, next_path: str) -> None:
    """The emailed link, as a TA uses it: ask for it, read it from the mail folder, open it."""
    async with httpx.AsyncClient() as client:
        asked = await client.post(f"{base}/staff/login/link", json={"email": email, "next": next_path})
        assert asked.status_code == 202
    folder = settings.data_path / "mail"
    for _ in range(100):
        mails = sorted(folder.glob("*-login-*.eml")) if folder.exists() else []
        if mails:
            break
        await asyncio.sleep(0.1)
    text = mails[-1].read_text()
    link = re.search(r"(http://\S+/staff/login/[A-Za-z0-9_\-]+)", text)
    assert link, text
    await page.goto(link.group(1).replace(settings.public_url, base))
    await page.get_by_role("button", name="Log in").click()  # opening the link alone logs nobody in


async def test_dashboard_on_a_phone_groups_filters_and_updates_live(
    browser: Any, redis_url: str, tmp_path: Path, screenshots: Path
) -> None:
    """Needs attention first, upcoming soonest first, then past; the course and status filters narrow the
    list; a new escalation appears at once (no reload) with a badge and a spoken announcement."""
    settings = make_settings(tmp_path, redis_url, **NO_LOGIN_LIMIT)
    later = await _seed(redis_url, settings, "Avery Later", 3)
    await _seed(redis_url, settings, "Pat Past", -2)
    soon = await _seed(redis_url, settings, "Sol Soon", 1)
    alarm = await _seed(redis_url, settings, "Ari Alarm", 6, status="escalated")
    alarm.interview.flags = Flags(distress=True, escalated_to_human=True)
    await save(redis_url, settings, alarm)
    ethics = await _seed(redis_url, settings, "Eli Ethics", 2)
    ethics.course_slug = "phil210"
    ethics.interview.facts.topic = "regression"
    ethics.interview.facts.assignment = "ps4"
    await save(redis_url, settings, ethics)
    app = create_app(settings, services_factory=services_factory(ScriptedModel(), _courses()))
    with serve(app) as gateway:
        context, page = await _phone(browser)
        await _operator_login(page, gateway.url)
        await page.locator("#live.on").wait_for()
        attention = page.locator("#rows-attention li")
        await attention.filter(has_text="Ari Alarm").wait_for()
        upcoming = [t.split("\n")[0] for t in await page.locator("#rows-upcoming li").all_inner_texts()]
        mine = [n for n in upcoming if n in ("Sol Soon", "Eli Ethics", "Avery Later")]
        assert mine == ["Sol Soon", "Eli Ethics", "Avery Later"]
        assert "Pat Past" in await page.locator("#rows-past").inner_text()
        row = page.locator("#rows-upcoming li", has_text="Eli Ethics")
        assert "PHIL 210" in await row.inner_text() and (
            "EST" in await row.inner_text() or "EDT" in await row.inner_text()
        )
        assert "Problem Set 4: Regression" in await row.inner_text() and "ps4" not in await row.inner_text()
        assert await no_horizontal_scroll(page)
        await page.screenshot(path=str(screenshots / "staff-dashboard-phone.png"), full_page=True)

        await page.get_by_label("Course").first.select_option("phil210")
        await page.locator("#rows-upcoming li", has_text="Sol Soon").wait_for(state="detached")
        assert await page.locator("#rows-upcoming li", has_text="Eli Ethics").count() == 1
        assert "course=phil210" in page.url
        await page.get_by_label("Course").first.select_option("")
        await page.get_by_label("Status").select_option("attention")
        await page.locator("#group-upcoming li").first.wait_for(state="detached")
        assert await attention.filter(has_text="Ari Alarm").count() == 1
        await page.get_by_label("Status").select_option("")

        soon.status = "escalated"  # as a chat turn would store it: the page hears it by server push
        soon.interview.flags = Flags(distress=True, escalated_to_human=True)
        await save(redis_url, settings, soon)
        await attention.filter(has_text="Sol Soon").wait_for(timeout=5_000)
        for _ in range(50):  # the announcement is set a moment after the list is drawn
            if "Sol Soon" in (await page.locator("#announcer").text_content() or ""):
                break
            await asyncio.sleep(0.1)
        assert "Needs attention: Sol Soon" in (await page.locator("#announcer").text_content() or "")
        assert (
            await page.locator("#rows-attention li", has_text="Sol Soon").locator(".badge.alert").count() >= 1
        )
        assert later.staff_id  # the rest of the list stayed put
        await context.close()


async def test_take_over_and_hand_back_between_two_phones(
    browser: Any, redis_url: str, tmp_path: Path, screenshots: Path
) -> None:
    """A TA logs in by emailed link and opens the running intake on a phone: summary first, transcript
    folded. The student's message arrives live; "Take over": the student sees Sam Lee is answering and Sam's
    message, Sam sees the student's reply live; "Hand back": the assistant asks the next missing question."""
    settings = make_settings(tmp_path, redis_url, **NO_LOGIN_LIMIT)
    record = await seed_intake(redis_url, settings)
    app = create_app(settings, services_factory=services_factory(ScriptedModel(), _courses()))
    with serve(app) as gateway:
        student_context, student = await _phone(browser)
        await student.goto(f"{gateway.url}/i/{record.token}")
        await student.get_by_role("button", name="I agree, start the chat").click()
        await student.locator("#messages li.assistant").first.wait_for()

        staff_context, staff = await _phone(browser)
        await _link_login(staff, gateway.url, settings, TA_EMAIL, f"/staff/intakes/{record.staff_id}")
        await staff.locator("#live.on").wait_for()
        first_card = staff.locator("main > section.card").first
        assert await first_card.locator("h2").inner_text() in ("Summary", "What we know so far")
        assert await staff.locator("#transcript").get_attribute("open") is None  # folded

        await student.get_by_label("Your answer").fill(
            "I'm stuck on rejecting the null hypothesis in Problem Set 3."
        )
        await student.get_by_role("button", name="Send").click()
        await staff.locator("#messages li.student").first.wait_for(state="attached", timeout=10_000)
        await staff.locator("#summary dd", has_text="Problem Set 3: Hypothesis Tests").wait_for(
            timeout=10_000
        )
        await student.locator("#send:not([disabled])").wait_for()

        await staff.get_by_role("button", name="Take over").click()
        await staff.get_by_label("Your message to the student").fill(
            "Hi Mina, Sam here. Bring your notes on Monday."
        )
        await staff.get_by_role("button", name="Send").click()
        notice = student.locator("#staff-notice")
        await notice.wait_for(timeout=10_000)
        assert "Sam Lee" in await notice.inner_text()
        staff_line = student.locator("#messages li.staff")
        await staff_line.wait_for(timeout=10_000)
        assert "Sam Lee" in await staff_line.locator(".who").inner_text()
        assert "Sam here" in await staff_line.inner_text()
        assert await no_horizontal_scroll(student)
        await student.screenshot(path=str(screenshots / "chat-taken-over-phone.png"))

        await student.get_by_label("Your answer").fill("Thanks, I will bring them.")
        await student.get_by_role("button", name="Send").click()
        await staff.locator("#messages li.student", has_text="I will bring them").wait_for(timeout=10_000)
        assert await no_horizontal_scroll(staff)
        await staff.screenshot(path=str(screenshots / "staff-intake-phone.png"), full_page=True)

        before = await load(redis_url, settings, record.token)
        assert before is not None
        await staff.get_by_role("button", name="Hand back to the assistant").click()
        resumed = student.locator("#messages li.assistant", has_text="Thanks for waiting")
        await resumed.wait_for(timeout=10_000)
        await notice.wait_for(state="hidden")
        after = await load(redis_url, settings, record.token)
        assert after is not None and after.interview.turn == before.interview.turn == 1
        asked = after.interview.asked[-1]
        assert asked != "issue" and (await resumed.inner_text()).rstrip().endswith("?")
        await staff.locator("#messages li.assistant", has_text="Thanks for waiting").wait_for(
            state="attached"
        )
        await student_context.close()
        await staff_context.close()


async def test_a_finished_intake_explains_why_it_cannot_be_taken_over(
    browser: Any, redis_url: str, tmp_path: Path
) -> None:
    """On a complete intake the page offers no take-over button but says why, in words."""
    settings = make_settings(tmp_path, redis_url, **NO_LOGIN_LIMIT)
    record = await seed_intake(redis_url, settings, status="complete")
    app = create_app(settings, services_factory=services_factory(ScriptedModel(), _courses()))
    with serve(app) as gateway:
        context, page = await _phone(browser)
        await _operator_login(page, gateway.url)
        await page.goto(f"{gateway.url}/staff/intakes/{record.staff_id}")
        await page.locator("#takeover-note", has_text="finished").wait_for()
        assert await page.get_by_role("button", name="Take over").count() == 0
        await context.close()


async def test_acknowledge_and_a_broadcast_from_a_phone(
    browser: Any, redis_url: str, tmp_path: Path, screenshots: Path
) -> None:
    """On an escalated intake "I have seen this" clears the attention box (and the dashboard's group); the
    broadcast form emails the students booked in the window and says how many."""
    settings = make_settings(tmp_path, redis_url, **NO_LOGIN_LIMIT)
    alarm = await _seed(redis_url, settings, "Ari Alarm", 20.5, status="escalated")
    alarm.interview.flags = Flags(distress=True, escalated_to_human=True)
    await save(redis_url, settings, alarm)
    app = create_app(settings, services_factory=services_factory(ScriptedModel(), _courses()))
    with serve(app) as gateway:
        context, page = await _phone(browser)
        await _operator_login(page, gateway.url)
        await page.goto(f"{gateway.url}/staff/intakes/{alarm.staff_id}")
        box = page.locator("#attention")
        await box.get_by_text("Escalated").wait_for()
        await page.get_by_role("button", name="I have seen this").click()
        await box.wait_for(state="hidden")
        assert "seen by" in await page.locator("#meta").inner_text()

        await page.goto(f"{gateway.url}/staff/intakes")
        await page.locator("#rows-upcoming li", has_text="Ari Alarm").wait_for()
        await page.get_by_text("Email the students booked in a time window").click()
        start = (dt.datetime.now() + dt.timedelta(days=20)).strftime("%Y-%m-%dT%H:%M")
        end = (dt.datetime.now() + dt.timedelta(days=21)).strftime("%Y-%m-%dT%H:%M")
        await page.locator("#broadcast-course").select_option("stat150")
        await page.locator("#broadcast-start").fill(start)
        await page.locator("#broadcast-end").fill(end)
        await page.locator("#broadcast-message").fill("We moved to room 204 today.")
        await page.get_by_role("button", name="Send email").click()
        await page.locator("#broadcast-status", has_text="Sent to 1 student").wait_for()
        assert await no_horizontal_scroll(page)
        await page.screenshot(path=str(screenshots / "staff-broadcast-phone.png"), full_page=True)
        await context.close()
