"""Logging in by an emailed link on a phone (Chromium at 360x740): the staff link from a summary, opened
logged out, asks for an address, the link arrives by real SMTP, and opening it lands on that intake.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from services.coursepack import StaffMember
from services.gateway.app import create_app
from tests.browser.conftest import no_horizontal_scroll, serve
from tests.fixtures.smtp import SmtpCapture
from tests.gateway.intake.scripted import ScriptedModel
from tests.gateway.staff.harness import course, make_settings, seed_intake, services_factory

pytestmark = pytest.mark.browser
TA = "sam.tan@example.edu"


async def _link(smtp: SmtpCapture) -> str:
    for _ in range(200):
        if smtp.to(TA):
            body = str(smtp.to(TA)[-1].get_content())
            return re.findall(r"https?://\S+(/staff/login/[A-Za-z0-9_-]+)", body)[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no login link arrived")


async def test_a_ta_logs_in_by_emailed_link_on_a_phone(
    phone: Any, redis_url: str, tmp_path: Path, smtp_server: SmtpCapture, screenshots: Path
) -> None:
    """Logged out, the staff link goes to the login; the TA asks for a link, opens it from the mail, and is
    on the intake they came for; nothing scrolls sideways at 360 px."""
    settings = make_settings(tmp_path, redis_url, smtp_host=smtp_server.host, smtp_port=smtp_server.port)
    record = await seed_intake(redis_url, settings)
    stat = msgspec.structs.replace(course(), staff=[StaffMember(TA, "Sam Tan")])
    app = create_app(settings, services_factory=services_factory(ScriptedModel(), [stat]))
    with serve(app) as gateway:
        await phone.goto(f"{gateway.url}/staff/intakes/{record.staff_id}")
        await phone.get_by_role("heading", name="Staff login").wait_for()
        assert "/staff/login?next=" in phone.url
        assert await no_horizontal_scroll(phone)
        await phone.get_by_label("Your course email").fill(TA)
        await phone.get_by_role("button", name="Email me a login link").click()
        await phone.get_by_text("a login link is on its way").wait_for()
        await phone.screenshot(path=str(screenshots / "staff-login-link-sent.png"))
        await phone.goto(gateway.url + await _link(smtp_server))
        await phone.get_by_text("Log in to the staff pages as Sam Tan").wait_for()  # the link is not used yet
        assert await no_horizontal_scroll(phone)
        await phone.screenshot(path=str(screenshots / "staff-login-link-confirm.png"))
        await phone.get_by_role("button", name="Log in").click()
        await phone.wait_for_url(re.compile(rf"/staff/intakes/{record.staff_id}$"))
        await phone.locator("#title").wait_for()
        assert await no_horizontal_scroll(phone)
        await phone.screenshot(path=str(screenshots / "staff-login-link-landed.png"))
        again = await phone.goto(gateway.url + await _link(smtp_server))
        assert again is not None and again.status == 410
        assert await phone.get_by_text("expired or was already used").is_visible()


async def test_the_booked_landing_page_on_a_phone(
    phone: Any, redis_url: str, tmp_path: Path, screenshots: Path
) -> None:
    """Cal.com's redirect lands on /booked: a masked address and a resend button, no link to the chat,
    nothing scrolls sideways; a resend answers in words."""
    settings = make_settings(tmp_path, redis_url)
    record = await seed_intake(redis_url, settings)
    app = create_app(settings, services_factory=services_factory(ScriptedModel()))
    with serve(app) as gateway:
        await phone.goto(f"{gateway.url}/booked?uid={record.booking.uid}")
        await phone.get_by_text("m***@example.edu").wait_for()
        assert record.token not in await phone.content()
        assert await no_horizontal_scroll(phone)
        await phone.screenshot(path=str(screenshots / "booked.png"))
        await phone.get_by_role("button", name="Email me the link again").click()
        await phone.get_by_text("on its way again").wait_for()
        assert record.token not in await phone.content()
