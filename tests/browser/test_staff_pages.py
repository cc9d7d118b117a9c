"""The staff pages in a real browser: log in, find the intake, watch it live, take over and answer;
the student's phone shows the staff message. Screenshots go to test-output/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.gateway.app import create_app
from tests.browser.conftest import no_horizontal_scroll, serve
from tests.gateway.intake.scripted import ScriptedModel
from tests.gateway.staff.harness import STAFF_PASSWORD, make_settings, seed_intake, services_factory

pytestmark = pytest.mark.browser


async def test_staff_take_over_reaches_the_students_phone(
    browser: Any, phone: Any, redis_url: str, tmp_path: Path, screenshots: Path
) -> None:
    """Login, list, live detail, take over, a staff message in the student's chat; nothing overflows."""
    settings = make_settings(tmp_path, redis_url)
    record = await seed_intake(redis_url, settings)
    with serve(create_app(settings, services_factory=services_factory(ScriptedModel()))) as gateway:
        await phone.goto(f"{gateway.url}/i/{record.token}")
        await phone.get_by_role("button", name="I agree, start the chat").click()
        await phone.locator("#messages li.assistant").first.wait_for()

        desk = await browser.new_context(viewport={"width": 1100, "height": 800})
        staff = await desk.new_page()
        await staff.goto(f"{gateway.url}/staff/intakes")
        await staff.get_by_text("Operator login (password)").click()
        await staff.get_by_label("Staff password").fill("wrong password")
        await staff.get_by_role("button", name="Log in").click()
        await staff.get_by_text("That password is not right.").wait_for()
        await staff.get_by_label("Staff password").fill(STAFF_PASSWORD)
        await staff.get_by_role("button", name="Log in").click()
        await staff.get_by_role("heading", name="Intakes").wait_for()
        await staff.get_by_role("link", name="Mina Park").first.wait_for()
        await staff.screenshot(path=str(screenshots / "staff-1-list.png"))

        await staff.goto(f"{gateway.url}/staff/intakes/{record.staff_id}")
        await staff.locator("#transcript summary").click()  # the transcript is folded below the summary
        await staff.locator("#messages li.assistant").first.wait_for()
        await staff.get_by_role("button", name="Take over").click()
        await staff.get_by_label("Your message to the student").fill(
            "Hi Mina, Dr. Okafor here. Bring your problem set 3 draft on Monday."
        )
        await staff.get_by_role("button", name="Send").click()
        await staff.locator("#messages li.staff").wait_for()
        await staff.screenshot(path=str(screenshots / "staff-2-detail.png"), full_page=True)

        await phone.locator("#messages li.staff").wait_for(timeout=15_000)  # pushed to the page
        assert "Dr. Okafor here" in await phone.locator("#messages li.staff").inner_text()
        assert await phone.locator("#counter").is_hidden()
        assert await no_horizontal_scroll(phone)
        await phone.screenshot(path=str(screenshots / "chat-staff-message.png"))

        await phone.get_by_label("Your answer").fill("Thank you! I will bring it.")
        await phone.get_by_role("button", name="Send").click()
        await staff.locator("#messages li.student", has_text="I will bring it").wait_for(
            timeout=10_000
        )  # pushed

        small = await desk.new_page()
        await small.set_viewport_size({"width": 360, "height": 740})
        await small.goto(f"{gateway.url}/staff/intakes/{record.staff_id}")
        await small.locator("#messages li.staff").wait_for()
        assert await no_horizontal_scroll(small)
        await desk.close()
