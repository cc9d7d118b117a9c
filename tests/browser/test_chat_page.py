"""The student chat on a 360 px phone, end to end: consent, streamed replies, the question counter, a
reload that restores the conversation, the finished state and the thumbs rating.

The gateway is real (uvicorn, Redis); the model is the scripted fake, slowed to a believable pace so the
"thinking…" indicator and token-by-token streaming are exercised. The slow variant uses the real model.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from services.gateway.app import create_app
from services.gateway.ports import ChatModel, PromptMessage
from services.settings import Settings
from tests.browser.conftest import no_horizontal_scroll, serve
from tests.gateway.intake.scripted import ScriptedModel
from tests.gateway.staff.harness import load, make_settings, seed_intake, services_factory

pytestmark = pytest.mark.browser

ANSWERS = [
    "I'm working on problem set 3 and I get lost on the t-test questions.",
    "I don't get when to reject the null hypothesis. My p-value was 0.03 and I wasn't sure what that means.",
    "I re-read the lecture slides and tried problem 2 twice, but my answer is different from my friend's.",
    "I want to understand how to read a p-value so I can finish the rest by myself.",
    "It's due Friday.",
    "No, that's everything.",
    "Thanks!",
    "Ok.",
]
QUESTIONS = [
    "Thanks, that helps. Which part of the t-test questions is hardest for you?",
    "What have you already tried on problem 2?",
    "What would you like to be able to do after the meeting?",
    "When is problem set 3 due?",
    "Is there anything else you want your professor to know?",
]


class PacedModel(ScriptedModel):
    """The scripted fake with a pause before the first word and a short one between words."""

    def __init__(self, *replies: str, first_delay: float = 1.4, word_delay: float = 0.05) -> None:
        super().__init__(*replies)
        self.first_delay = first_delay
        self.word_delay = word_delay

    async def stream(
        self, messages: Sequence[PromptMessage], *, max_tokens: int, stop: Sequence[str] = (), **kw: Any
    ) -> AsyncIterator[str]:
        await asyncio.sleep(self.first_delay)
        async for piece in super().stream(messages, max_tokens=max_tokens, stop=stop, **kw):
            await asyncio.sleep(self.word_delay)
            yield piece


async def _run_intake(
    page: Any,
    url: str,
    settings: Settings,
    redis_url: str,
    token: str,
    shots: Path,
    prefix: str,
    *,
    real_model: bool = False,
) -> None:
    chat_url = f"{url}/i/{token}"
    await page.goto(chat_url)
    await page.get_by_role("button", name="I agree, start the chat").wait_for()
    assert await no_horizontal_scroll(page)
    intro = await page.locator("#intro").inner_text()
    assert "Dr. Lee Okafor" in intro and "STAT 150" in intro
    assert "30 days after your meeting" in intro and "will not do your homework" in intro
    await page.screenshot(path=str(shots / f"{prefix}-1-consent.png"), full_page=True)

    await page.get_by_role("button", name="I agree, start the chat").click()
    await page.locator("#messages li.assistant").first.wait_for()
    assert await page.evaluate("document.activeElement && document.activeElement.id") == "input"
    assert await page.locator("#counter").inner_text() == f"Question 1 of at most {settings.max_turns}"
    await page.screenshot(path=str(shots / f"{prefix}-2-opening.png"))

    status = "active"
    for number, answer in enumerate(ANSWERS, start=1):
        await page.get_by_label("Your answer").fill(answer)
        await page.get_by_role("button", name="Send").click()
        if number == 1:
            assert await page.locator("#thinking").is_hidden()  # not before the model is slow (~1 s)
            # the indicator shows once the model has been silent for a second; a warm real model can
            # answer sooner, and then the reply itself is what the student sees
            shown = await page.wait_for_function(
                "() => { const replies = [...document.querySelectorAll('#messages li.assistant')];"
                " return !document.getElementById('thinking').hidden ? 'thinking'"
                " : replies.length > 1 && replies.at(-1).querySelector('.bubble').textContent.trim()"
                " ? 'reply' : null; }",
                timeout=10_000,
            )
            seen = await shown.json_value()
            assert seen == "thinking" or real_model, seen
            if seen == "thinking":
                await page.screenshot(path=str(shots / f"{prefix}-3-thinking.png"))
        await page.wait_for_function(
            "n => !document.getElementById('send').disabled && "
            "document.querySelectorAll('#messages li.student').length === n",
            arg=number,
            timeout=120_000,
        )
        assert await page.locator("#error").is_hidden(), await page.locator("#error").inner_text()
        record = await load(redis_url, settings, token)
        assert record is not None
        status = record.status
        if status != "active":
            break
        counter = await page.locator("#counter").inner_text()
        assert counter == f"Question {number + 1} of at most {settings.max_turns}"
        if number == 2:
            before = await page.locator("#messages li").all_inner_texts()
            await page.screenshot(path=str(shots / f"{prefix}-4-chat.png"))
            await page.reload()
            await page.locator("#messages li.assistant").first.wait_for()
            assert await page.locator("#messages li").all_inner_texts() == before
            assert await page.locator("#counter").inner_text() == counter
            assert await no_horizontal_scroll(page)
    assert status == "complete"

    finished = page.locator("#finished")
    await finished.wait_for()
    assert await page.locator("#composer").is_hidden() and await page.locator("#counter").is_hidden()
    assert re.match(r"You're all set, Mina!", await page.locator("#finished-title").inner_text())
    assert await page.locator("#thinking").is_hidden()
    assert await no_horizontal_scroll(page)
    await page.screenshot(path=str(shots / f"{prefix}-5-finished.png"))

    await page.get_by_role("button", name="Yes").click()
    await page.get_by_text("Thanks for telling us.").wait_for()
    assert await page.get_by_role("button", name="Yes").get_attribute("aria-pressed") == "true"
    record = await load(redis_url, settings, token)
    assert record and record.student_rating == "up" and record.summary is not None
    await page.screenshot(path=str(shots / f"{prefix}-6-rated.png"))

    await page.reload()  # a finished chat reopens in its thank-you state
    await finished.wait_for()
    assert await page.locator("#composer").is_hidden()


async def test_student_completes_an_intake_on_a_phone(
    phone: Any, redis_url: str, tmp_path: Path, screenshots: Path
) -> None:
    """Consent, streamed replies with a thinking indicator, counter, reload, finish, thumbs up: at 360 px."""
    settings = make_settings(tmp_path, redis_url)
    model = PacedModel(*QUESTIONS)
    record = await seed_intake(redis_url, settings)
    with serve(create_app(settings, services_factory=services_factory(model))) as gateway:
        await _run_intake(phone, gateway.url, settings, redis_url, record.token, screenshots, "chat")


async def test_unknown_and_cancelled_links_explain_themselves(
    phone: Any, redis_url: str, tmp_path: Path, screenshots: Path
) -> None:
    """A bad link and a cancelled booking get calm, readable pages that fit the phone."""
    settings = make_settings(tmp_path, redis_url)
    record = await seed_intake(redis_url, settings, status="cancelled")
    with serve(create_app(settings, services_factory=services_factory(ScriptedModel()))) as gateway:
        response = await phone.goto(f"{gateway.url}/i/this-is-not-a-token")
        assert response.status == 404
        await phone.get_by_role("heading", name="We could not find this chat").wait_for()
        assert await no_horizontal_scroll(phone)
        await phone.screenshot(path=str(screenshots / "page-not-found.png"))
        response = await phone.goto(f"{gateway.url}/i/{record.token}")
        assert response.status == 410
        await phone.get_by_role("heading", name="This booking was cancelled").wait_for()
        await phone.screenshot(path=str(screenshots / "page-cancelled.png"))


@pytest.mark.slow
async def test_student_completes_an_intake_with_the_real_model(
    inference_server: str, phone: Any, redis_url: str, tmp_path: Path, screenshots: Path
) -> None:
    """The same journey with the embedded model behind mlx_lm.server (tests/fixtures/inference.py)."""
    base_url = inference_server
    from services.gateway.container import open_openai
    from services.gateway.intake.llm import OpenAIChatModel

    settings = make_settings(tmp_path, redis_url, inference_url=base_url, inference_timeout_s=120.0)
    model: ChatModel = OpenAIChatModel(open_openai(settings), settings.model_name)
    record = await seed_intake(redis_url, settings)
    with serve(create_app(settings, services_factory=services_factory(model))) as gateway:
        await _run_intake(
            phone, gateway.url, settings, redis_url, record.token, screenshots, "real-model", real_model=True
        )


async def test_a_dropped_reply_is_retried_without_a_second_turn(
    phone: Any, redis_url: str, tmp_path: Path, screenshots: Path
) -> None:
    """The connection dies after the server answered: the page retries with the same client_turn_id and
    shows the stored reply; the transcript holds the message once and the model ran once."""
    settings = make_settings(tmp_path, redis_url)
    model = PacedModel(*QUESTIONS, first_delay=0.1, word_delay=0.0)
    record = await seed_intake(redis_url, settings)
    dropped: list[str] = []

    async def drop_first_reply(route: Any) -> None:
        if dropped:
            await route.continue_()
            return
        response = await route.fetch()  # the server runs (and stores) the whole turn ...
        dropped.append(response.status)
        await route.abort("connectionreset")  # ... but the phone never sees the answer

    with serve(create_app(settings, services_factory=services_factory(model))) as gateway:
        await phone.goto(f"{gateway.url}/i/{record.token}")
        await phone.get_by_role("button", name="I agree, start the chat").click()
        await phone.locator("#messages li.assistant").first.wait_for()
        await phone.route("**/messages", drop_first_reply)
        await phone.get_by_label("Your answer").fill(ANSWERS[0])
        await phone.get_by_role("button", name="Send").click()
        await phone.wait_for_function(
            "() => !document.getElementById('send').disabled && "
            "document.querySelectorAll('#messages li.assistant').length === 2",
            timeout=30_000,
        )
        assert await phone.locator("#error").is_hidden()
        shown = await phone.locator("#messages li.assistant .bubble").last.inner_text()
        await phone.wait_for_function("() => document.getElementById('announcer').textContent.length > 0")
        announced = await phone.locator("#announcer").inner_text()  # what a screen reader hears
    stored = await load(redis_url, settings, record.token)
    assert stored is not None and dropped == [200]
    assert [m.text for m in stored.interview.messages if m.role == "student"] == [ANSWERS[0]]
    assert shown == stored.interview.messages[-1].text and shown in announced
    assert len([k for k in model.kwargs if k["max_tokens"] != 1]) == 1  # one turn (the other call: warm-up)


async def test_a_student_waiting_for_the_model_sees_a_steady_place_in_line(
    phone: Any, redis_url: str, tmp_path: Path, screenshots: Path
) -> None:
    """With the only generation slot taken (by another gateway, say), the page shows the student's place
    in line instead of "thinking…"; once the slot frees the reply streams in and the line goes away."""
    import redis.asyncio as aioredis

    from services.gateway.intake.queueing import GenerationLine

    settings = make_settings(tmp_path, redis_url, generation_slots=1)
    model = PacedModel(*QUESTIONS, first_delay=0.1, word_delay=0.02)
    record = await seed_intake(redis_url, settings)
    redis = aioredis.from_url(redis_url)
    other = GenerationLine(redis, limit=1, max_wait_s=60, lease_s=60)
    try:
        with serve(create_app(settings, services_factory=services_factory(model))) as gateway:
            await phone.goto(f"{gateway.url}/i/{record.token}")
            await phone.get_by_role("button", name="I agree, start the chat").click()
            await phone.locator("#messages li.assistant").first.wait_for()
            async with other.acquire() as positions:
                assert [p async for p in positions] == []  # the slot is ours: the student must wait
                await phone.get_by_label("Your answer").fill(ANSWERS[0])
                await phone.get_by_role("button", name="Send").click()
                await phone.locator("#queue").wait_for(state="visible", timeout=15_000)
                assert "You're next" in await phone.locator("#queue").inner_text()
                assert await phone.locator("#thinking").is_hidden()
                assert (
                    await phone.locator("#messages li.assistant .bubble").last.inner_text() == ""
                )  # no words
                assert await no_horizontal_scroll(phone)
                await phone.screenshot(path=str(screenshots / "chat-queue.png"))
            await phone.wait_for_function(
                "() => !document.getElementById('send').disabled && "
                "document.querySelectorAll('#messages li.assistant').length === 2",
                timeout=30_000,
            )
            assert await phone.locator("#queue").is_hidden()
            assert (await phone.locator("#messages li.assistant .bubble").last.inner_text()).endswith("?")
    finally:
        await redis.aclose()
