"""Browser tests: Debian's Chromium driven by Playwright against a real gateway served by uvicorn.

Never ``playwright install``: the browser is ``/usr/bin/chromium`` (``apt-get install -y chromium``).
Screenshots go to ``test-output/`` (git-ignored) so a person can look at the pages.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from litestar import Litestar

from services.settings import REPO_ROOT
from tests.fixtures.ports import free_port, port_open, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 360, "height": 740}
OUTPUT = REPO_ROOT / "test-output"


@dataclass
class LiveGateway:
    """A gateway app served by uvicorn in a thread (its own event loop), on a free port."""

    app: Litestar
    port: int

    def __post_init__(self) -> None:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_config=None, access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="gateway", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveGateway:
        self.thread.start()
        wait_until(lambda: port_open(self.port) and self.server.started, 20, "gateway")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def serve(app: Litestar) -> LiveGateway:
    return LiveGateway(app, free_port())


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    return CHROMIUM


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def phone(browser: Any) -> AsyncIterator[Any]:
    """A 360x740 phone-sized page with touch, as most students will open the link."""
    context = await browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="en-US"
    )
    page = await context.new_page()
    try:
        yield page
    finally:
        await context.close()


@pytest.fixture(scope="session")
def screenshots() -> Iterator[Path]:
    OUTPUT.mkdir(exist_ok=True)
    yield OUTPUT


async def no_horizontal_scroll(page: Any) -> bool:
    return bool(await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 0.5"))


async def settle() -> None:
    await asyncio.sleep(0.05)
