"""The staff analytics page in Chromium at phone size (360x740), with the demo semester loaded: the host the
demo makes reschedule too often carries the flag, the instructor (well below the threshold) does not; the
charts load, the tables hold the same hosts, nothing scrolls sideways. Screenshot in test-output/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.analytics import semester
from services.analytics.consumer import Consumer
from services.coursepack import load_catalog
from services.gateway.app import create_app
from services.settings import REPO_ROOT
from tests.analytics.conftest import fold_all
from tests.browser.conftest import no_horizontal_scroll, serve
from tests.gateway.intake.scripted import ScriptedModel
from tests.gateway.staff.harness import STAFF_PASSWORD, make_settings, services_factory

pytestmark = pytest.mark.browser


async def test_the_flag_shows_for_a_host_above_the_threshold_and_not_below(
    phone: Any, redis_url: str, tmp_path: Path, screenshots: Path
) -> None:
    """Log in from the analytics link (back on the page), open 15 weeks of STAT 200: the flagged TA's row
    says so, the instructor's says OK, and both rates sit on the right side of the threshold."""
    catalog = load_catalog(REPO_ROOT / "corpus")
    stat200 = catalog.courses["stat200"]
    settings = make_settings(tmp_path, redis_url)
    redis = aioredis.from_url(redis_url)
    try:
        await redis.flushdb()
        assert await semester.load(redis, settings, [stat200]) > 1000
        await fold_all(Consumer(redis, settings, "browser"))
    finally:
        await redis.aclose()
    flagged, instructor = semester.flagged_host(stat200), stat200.instructor_email
    app = create_app(settings, services_factory=services_factory(ScriptedModel(), [stat200]))
    with serve(app) as gateway:
        await phone.goto(f"{gateway.url}/staff/analytics?course=stat200&weeks=15")
        await phone.get_by_text("Operator login (password)").click()
        await phone.get_by_label("Staff password").fill(STAFF_PASSWORD)
        await phone.get_by_role("button", name="Log in").click()
        await phone.get_by_role("heading", name="STAT 200 analytics").wait_for()
        await phone.goto(f"{gateway.url}/staff/analytics?course=stat200&weeks=15")
        await phone.get_by_text("Meetings in the weeks from").wait_for()
        assert await phone.get_by_label("Period").input_value() == "15"

        hosts = phone.locator("#hosts tbody tr")
        flagged_row = hosts.filter(has_text=flagged)
        instructor_row = hosts.filter(has_text=instructor)
        await flagged_row.wait_for()
        assert "Flagged: over 15%" in await flagged_row.inner_text()
        assert "Flagged" not in await instructor_row.inner_text()
        assert "OK" in await instructor_row.locator(".badge").inner_text()
        flagged_rate = float((await flagged_row.locator("td").nth(4).inner_text()).rstrip("%"))
        instructor_rate = float((await instructor_row.locator("td").nth(4).inner_text()).rstrip("%"))
        assert flagged_rate > 15 >= instructor_rate

        for chart in ("hosts", "intakes", "topics"):
            image = phone.locator(f"#chart-{chart}")
            await image.scroll_into_view_if_needed()
            await phone.wait_for_function(
                "(id) => { const i = document.getElementById(id); return i.complete && i.naturalWidth > 0; }",
                arg=f"chart-{chart}",
                timeout=30_000,
            )
            assert "table" in (await image.get_attribute("alt") or "")
        assert await phone.locator("#topics tbody tr").count() >= 3
        assert "students this week on the same section" in await phone.locator("#stuck").inner_text()
        assert await no_horizontal_scroll(phone)
        await phone.screenshot(path=str(screenshots / "staff-analytics-phone.png"), full_page=True)
