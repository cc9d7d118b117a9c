"""The quality read-outs in a real browser at phone size: the intake page's Quality section (assessment
records and model calls, drawn by quality.js) and the models side by side on /staff/quality."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from services.gateway.app import create_app
from services.gateway.quality.assess import AssessmentStore, judge
from services.gateway.quality.calls import CallLog, CallRecord
from tests.browser.conftest import PHONE, no_horizontal_scroll, serve
from tests.gateway.intake.scripted import ScriptedModel, make_course
from tests.gateway.quality.test_assess import GOOD, finished
from tests.gateway.staff.harness import STAFF_PASSWORD, future, make_settings, save, services_factory

pytestmark = pytest.mark.browser
# every table's box ends inside the screen and a wider table scrolls inside it (the body hides horizontal
# overflow, so a table spilling out of its card would never show as a page scroll)
_TABLES_FIT = """[...document.querySelectorAll('.quality-table')].every(e =>
  e.getBoundingClientRect().right <= window.innerWidth
  && (e.scrollWidth <= e.clientWidth || ['auto', 'scroll'].includes(getComputedStyle(e).overflowX)))"""


async def test_the_quality_section_and_page_on_a_phone(
    browser: Any, redis_url: str, tmp_path: Path, screenshots: Path
) -> None:
    """A finished, assessed intake: its page lists one row per assessment and its model call; the quality
    page shows the model; nothing overflows a 360 px screen."""
    settings = make_settings(tmp_path, redis_url, model_id="smollm2-live")
    record = finished(GOOD)
    record.token = "tok-browser-quality"
    record.booking = msgspec.structs.replace(record.booking, start_time=future(1))
    await save(redis_url, settings, record)
    redis = aioredis.from_url(redis_url)
    try:
        await redis.delete("quality:assess:agg", f"quality:assess:{record.token}")
        verdict = judge(record, make_course(), "smollm2-live", "p1")
        await AssessmentStore(redis, 30).save(record.token, verdict)
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        call = CallRecord(
            id="browser-call",
            request_id="r1",
            intake=record.token,
            purpose="interview_question",
            model="smollm2-live",
            prompt_version="p1",
            prompt_tokens=300,
            completion_tokens=12,
            cached_tokens=280,
            first_token_s=0.6,
            total_s=1.4,
            created_at=now,
        )
        await CallLog(redis, 30).record(call)
    finally:
        await redis.aclose()
    with serve(create_app(settings, services_factory=services_factory(ScriptedModel()))) as gateway:
        context = await browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
        page = await context.new_page()
        await page.goto(f"{gateway.url}/staff/intakes/{record.staff_id}")
        await page.get_by_text("Operator login (password)").click()
        await page.get_by_label("Staff password").fill(STAFF_PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        section = page.locator("#quality")
        await section.locator("table").first.wait_for(timeout=15_000)
        text = await section.inner_text()
        assert "smollm2-live" in text and "Bot turn 1" in text and "Summary" in text
        assert "interview_question" in text and "300 / 12 (280)" in text
        assert await section.locator("table").first.locator("tbody tr").count() == len(verdict.assessments)
        assert await no_horizontal_scroll(page)
        assert await page.evaluate(_TABLES_FIT)
        await page.locator("#quality-title").scroll_into_view_if_needed()
        await page.screenshot(path=str(screenshots / "staff-quality-section.png"), full_page=True)

        await page.goto(f"{gateway.url}/staff/quality")
        await page.get_by_role("heading", name="Models side by side").wait_for()
        assert "smollm2-live" in await page.locator("main").inner_text()
        assert await no_horizontal_scroll(page)
        assert await page.evaluate(_TABLES_FIT)
        await page.screenshot(path=str(screenshots / "staff-quality-page.png"), full_page=True)
        await context.close()
