"""The student chat API and page through the real app, on a real Redis; the model is scripted.

The interview logic itself is pinned in test_interview.py; here we pin what the HTTP contract promises
(the README's "Contracts" section): status codes, the event stream's shape, replay of a retried turn, and what is stored.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis.asyncio as aioredis
from litestar import Litestar
from litestar.testing import AsyncTestClient

from services.gateway.app import create_app
from services.gateway.intake.store import IntakeStore
from services.gateway.ports import PromptMessage
from services.settings import Settings
from tests.gateway.intake.scripted import ScriptedModel
from tests.gateway.staff.harness import (
    load,
    make_settings,
    parse_sse,
    reply_text,
    seed_intake,
    services_factory,
)

ANSWERS = [
    "I am stuck on problem set 3, the t-test questions.",
    "I don't understand when to reject the null hypothesis with the p-value.",
    "I re-read the lecture notes and tried problem 2 twice but got a different answer than my friend.",
    "I want to understand how to interpret the p-value so I can finish the problem set.",
    "It is due this Friday.",
    "Nothing else, thanks.",
    "That's all.",
    "Ok.",
]


class GatedModel(ScriptedModel):
    """Scripted model whose streams wait for ``gate``: holds a turn open so a second send can collide."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.started = asyncio.Event()

    async def stream(
        self, messages: Sequence[PromptMessage], *, max_tokens: int, stop: Sequence[str] = (), **kw: Any
    ) -> AsyncIterator[str]:
        self.started.set()
        await self.gate.wait()
        async for piece in super().stream(messages, max_tokens=max_tokens, stop=stop, **kw):
            yield piece


@pytest.fixture
def settings(tmp_path: Path, redis_url: str) -> Settings:
    return make_settings(tmp_path, redis_url)


@pytest.fixture
def model() -> ScriptedModel:
    return ScriptedModel()


@pytest.fixture
async def client(settings: Settings, model: ScriptedModel) -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = create_app(settings, services_factory=services_factory(model))
    async with AsyncTestClient(app) as test_client:
        yield test_client


async def consented(redis_url: str, settings: Settings, client: AsyncTestClient[Litestar]) -> str:
    record = await seed_intake(redis_url, settings)
    response = await client.post(f"/api/intakes/{record.token}/consent")
    assert response.status_code == 200, response.text
    return record.token


async def send(
    client: AsyncTestClient[Litestar], token: str, text: str, turn_id: str | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"text": text}
    if turn_id:
        body["client_turn_id"] = turn_id
    return await client.post(f"/api/intakes/{token}/messages", json=body)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status and problem["detail"]
    return problem


# --- the page ---------------------------------------------------------------------------------------


async def test_page_for_unknown_token_is_a_readable_404(client: AsyncTestClient[Litestar]) -> None:
    """A mistyped or expired link gets a human page, not JSON."""
    response = await client.get("/i/not-a-real-token")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "could not find this chat" in response.text


async def test_page_never_contains_the_token(
    client: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """The token is a capability: the page reads it from its address and tells browsers not to leak it."""
    record = await seed_intake(redis_url, settings)
    response = await client.get(f"/i/{record.token}")
    assert response.status_code == 200
    assert record.token not in response.text
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"


async def test_page_for_cancelled_booking_is_kind(
    client: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """A cancelled booking's link explains itself instead of opening a chat."""
    record = await seed_intake(redis_url, settings, status="cancelled")
    response = await client.get(f"/i/{record.token}")
    assert response.status_code == 410
    assert "This booking was cancelled" in response.text


# --- state and consent ------------------------------------------------------------------------------


async def test_state_for_unknown_token_is_404_problem(client: AsyncTestClient[Litestar]) -> None:
    """Unknown tokens are problem JSON with a readable detail."""
    assert_problem(await client.get("/api/intakes/nope"), 404)


async def test_state_before_consent_shows_what_the_intro_needs(
    client: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """An invited intake: no messages yet, and the course, instructor and retention for the consent text."""
    record = await seed_intake(redis_url, settings)
    view = (await client.get(f"/api/intakes/{record.token}")).json()
    assert view["status"] == "invited" and view["consented"] is False
    assert view["messages"] == [] and view["turn"] == 0 and view["max_turns"] == settings.max_turns
    assert view["course"] == "STAT 150" and view["instructor_name"] == "Dr. Lee Okafor"
    assert view["retention_days"] == 30 and view["summary"] is None


async def test_consent_opens_the_chat_once(
    client: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """Consent records the time and opens the chat with one question; repeating it is harmless."""
    record = await seed_intake(redis_url, settings)
    first = (await client.post(f"/api/intakes/{record.token}/consent")).json()
    again = (await client.post(f"/api/intakes/{record.token}/consent")).json()
    assert first["status"] == "active" and first["consented"] is True
    assert [m["role"] for m in first["messages"]] == ["assistant"]
    assert again["messages"] == first["messages"]
    stored = await load(redis_url, settings, record.token)
    assert stored and stored.consented_at and stored.interview.prompt[0]["role"] == "system"


# --- messages: refusals before the stream -----------------------------------------------------------


async def test_consent_waits_for_the_worker_preparing_the_interview(
    settings: Settings, model: ScriptedModel, redis_url: str
) -> None:
    """A student who agrees while the worker still holds the intake (preparing it) waits, never sees 409."""
    app = create_app(settings, services_factory=services_factory(model))
    record = await seed_intake(redis_url, settings)
    redis = aioredis.from_url(redis_url)
    store = IntakeStore(redis, settings.retention_days)

    async def worker_holds_lock() -> None:
        async with store.turn_lock(record.token):
            await asyncio.sleep(1.0)

    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            holder = asyncio.create_task(worker_holds_lock())
            await asyncio.sleep(0.1)
            response = await http.post(f"/api/intakes/{record.token}/consent")
            await holder
    await redis.aclose()
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "active"


async def test_message_to_unknown_token_is_404(client: AsyncTestClient[Litestar]) -> None:
    assert_problem(await send(client, "nope", "hello"), 404)


async def test_message_before_consent_is_409(
    client: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """Nobody chats before agreeing to the notice."""
    record = await seed_intake(redis_url, settings)
    assert_problem(await send(client, record.token, "hello"), 409)


async def test_empty_message_is_422(
    client: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """Whitespace only is not an answer, and nothing is stored."""
    token = await consented(redis_url, settings, client)
    assert_problem(await send(client, token, "  \n\t "), 422)
    stored = await load(redis_url, settings, token)
    assert stored and stored.interview.turn == 0


async def test_message_over_the_character_cap_is_413(
    client: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """Over INTAKE_MAX_MESSAGE_CHARS: 413 with the limit in the problem, so the page can say it."""
    token = await consented(redis_url, settings, client)
    problem = assert_problem(await send(client, token, "x" * (settings.max_message_chars + 1)), 413)
    assert problem["max_chars"] == settings.max_message_chars
    assert str(settings.max_message_chars) in problem["detail"]


async def test_body_over_the_byte_cap_is_413(
    client: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """A huge body is refused before it is read (and decoded)."""
    token = await consented(redis_url, settings, client)
    body = json.dumps({"text": "y" * 50_000})
    response = await client.post(
        f"/api/intakes/{token}/messages", content=body, headers={"content-type": "application/json"}
    )
    assert_problem(response, 413)


async def test_malformed_body_is_422(
    client: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """Not JSON, a missing field, or a malformed client_turn_id: 422 with a readable detail."""
    token = await consented(redis_url, settings, client)
    url = f"/api/intakes/{token}/messages"
    assert_problem(
        await client.post(url, content=b"{nope", headers={"content-type": "application/json"}), 422
    )
    assert_problem(await client.post(url, json={"words": "hi"}), 422)
    assert_problem(await client.post(url, json={"text": "hi", "client_turn_id": "bad id!"}), 422)


# --- messages: the stream ---------------------------------------------------------------------------


async def test_a_turn_streams_tokens_then_done(
    client: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """token events whose text is the stored reply, then one done with the new turn; the store agrees."""
    token = await consented(redis_url, settings, client)
    response = await send(client, token, ANSWERS[0], str(uuid.uuid4()))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    assert events[-1] == ("done", {"status": "active", "turn": 1})
    assert {name for name, _ in events[:-1]} == {"token"}
    view = (await client.get(f"/api/intakes/{token}")).json()
    assert [m["role"] for m in view["messages"]] == ["assistant", "student", "assistant"]
    assert view["messages"][1]["text"] == ANSWERS[0]
    assert view["messages"][2]["text"] == reply_text(events)


async def test_interview_completes_with_summary_and_delivery(
    client: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """The last done says complete; the state already has the summary; delivery is queued in the outbox."""
    token = await consented(redis_url, settings, client)
    last: tuple[str, dict[str, Any]] | None = None
    for answer in ANSWERS:
        last = parse_sse((await send(client, token, answer, str(uuid.uuid4()))).text)[-1]
        if last[1]["status"] != "active":
            break
    assert last and last[0] == "done" and last[1]["status"] == "complete"
    assert 3 <= last[1]["turn"] <= settings.max_turns
    view = (await client.get(f"/api/intakes/{token}")).json()
    assert view["status"] == "complete" and view["turn"] == last[1]["turn"]
    summary = view["summary"]
    assert summary["status"] == "complete" and summary["course"] == "STAT 150"
    assert not {"transcript_url", "professor_prep_note", "difficulty", "urgency"} & set(
        summary
    )  # student view
    # in the app's own event loop: its Redis connections belong there (the test client runs it in another)
    jobs = client.blocking_portal.call(client.app.state.services.jobs.jobs_for, token)
    assert [j.kind for j in jobs] == ["summarize"]


async def test_message_after_completion_is_409(
    client: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """A finished chat takes no more messages (and says so kindly)."""
    token = await consented(redis_url, settings, client)
    record = await load(redis_url, settings, token)
    assert record
    record.status = "complete"
    await _save(redis_url, settings, record)
    problem = assert_problem(await send(client, token, "one more thing"), 409)
    assert "finished" in problem["detail"]


async def test_message_to_cancelled_intake_is_410(
    client: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    token = await consented(redis_url, settings, client)
    record = await load(redis_url, settings, token)
    assert record
    record.status = "cancelled"
    await _save(redis_url, settings, record)
    assert_problem(await send(client, token, "hello?"), 410)


async def test_retried_client_turn_id_replays_instead_of_running_again(
    client: AsyncTestClient[Litestar], model: ScriptedModel, redis_url: str, settings: Settings
) -> None:
    """A retry after a dropped stream gets the stored reply: no second turn, no second model call."""
    token = await consented(redis_url, settings, client)
    turn_id = str(uuid.uuid4())
    first = parse_sse((await send(client, token, ANSWERS[0], turn_id)).text)
    calls = len(model.calls)
    again = parse_sse((await send(client, token, ANSWERS[0], turn_id)).text)
    assert reply_text(again) == reply_text(first)
    assert again[-1] == first[-1] == ("done", {"status": "active", "turn": 1})
    assert len(model.calls) == calls
    stored = await load(redis_url, settings, token)
    assert stored and stored.interview.turn == 1 and len(stored.interview.messages) == 3


async def test_inference_down_still_answers_with_the_policy_question(
    client: AsyncTestClient[Litestar], model: ScriptedModel, redis_url: str, settings: Settings
) -> None:
    """With the model unreachable the interviewer falls back to its own question: the chat goes on."""
    token = await consented(redis_url, settings, client)
    model.fail_with = openai.APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1:9/v1"))
    events = parse_sse((await send(client, token, ANSWERS[0], str(uuid.uuid4()))).text)
    assert events[-1] == ("done", {"status": "active", "turn": 1})
    assert reply_text(events).strip().endswith("?")
    assert not [e for e in events if e[0] == "error"]


async def test_failure_mid_stream_is_error_then_done_and_keeps_nothing(
    client: AsyncTestClient[Litestar], model: ScriptedModel, redis_url: str, settings: Settings
) -> None:
    """Storage failing mid-turn: an error event, then done with the unchanged status; a retry then works."""
    token = await consented(redis_url, settings, client)

    class BreakingModel(ScriptedModel):
        async def stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[str]:
            admin = aioredis.from_url(redis_url)  # on the app's own event loop
            await admin.config_set("maxmemory", "1")  # every write now fails with OOM
            await admin.aclose()
            async for piece in super().stream(*args, **kwargs):
                yield piece

    breaking = BreakingModel(*model.replies)
    admin = aioredis.from_url(redis_url)
    services = client.app.state.services
    services.model = breaking
    try:
        events = parse_sse((await send(client, token, ANSWERS[0], "turn-one-id")).text)
    finally:
        await admin.config_set("maxmemory", "0")
        await admin.aclose()
        services.model = model
    assert [name for name, _ in events][-2:] == ["error", "done"]
    error = next(d for name, d in events if name == "error")
    assert error["code"] == "storage_unavailable" and "still here" in error["message"]
    assert events[-1] == ("done", {"status": "active", "turn": 0})
    stored = await load(redis_url, settings, token)
    assert stored and stored.interview.turn == 0 and "turn-one-id" not in stored.replies
    retry = parse_sse((await send(client, token, ANSWERS[0], "turn-one-id")).text)
    assert retry[-1] == ("done", {"status": "active", "turn": 1})


async def test_two_tabs_sending_at_once_one_gets_409(
    settings: Settings, redis_url: str, tmp_path: Path
) -> None:
    """Two concurrent sends: one streams the turn, the other gets a clear 409; the turn is stored once."""
    model = GatedModel()
    app = create_app(settings, services_factory=services_factory(model))
    record = await seed_intake(redis_url, settings)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            await http.post(f"/api/intakes/{record.token}/consent")
            url = f"/api/intakes/{record.token}/messages"
            first = asyncio.create_task(
                http.post(url, json={"text": ANSWERS[0], "client_turn_id": "tab-one-1"})
            )
            await asyncio.wait_for(model.started.wait(), 10)
            second = await http.post(url, json={"text": ANSWERS[0], "client_turn_id": "tab-two-1"})
            model.gate.set()
            winner = await asyncio.wait_for(first, 10)
    problem = assert_problem(second, 409)
    assert "already being written" in problem["detail"]
    assert parse_sse(winner.text)[-1] == ("done", {"status": "active", "turn": 1})
    stored = await load(redis_url, settings, record.token)
    assert stored and stored.interview.turn == 1


async def test_taken_over_chat_stores_the_message_without_a_model_reply(
    client: AsyncTestClient[Litestar], model: ScriptedModel, redis_url: str, settings: Settings
) -> None:
    """When staff took over, the student's message is kept (marked as written to staff, no interview turn)
    and the model stays quiet."""
    token = await consented(redis_url, settings, client)
    record = await load(redis_url, settings, token)
    assert record
    record.taken_over = True
    await _save(redis_url, settings, record)
    calls = len(model.calls)
    events = parse_sse((await send(client, token, "Are you a person now?", str(uuid.uuid4()))).text)
    assert events == [("done", {"status": "active", "turn": 0})]
    assert len(model.calls) == calls
    view = (await client.get(f"/api/intakes/{token}")).json()
    assert view["taken_over"] is True
    assert view["messages"][-1] == {"role": "student", "text": "Are you a person now?", "to_staff": True}


async def test_distress_escalates_at_once(
    client: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """A message in distress ends the chat as escalated, with an escalated summary queued for delivery."""
    token = await consented(redis_url, settings, client)
    events = parse_sse((await send(client, token, "I want to kill myself, I can't do this anymore.")).text)
    assert events[-1][0] == "done" and events[-1][1]["status"] == "escalated"
    view = (await client.get(f"/api/intakes/{token}")).json()
    assert view["status"] == "escalated" and view["summary"]["status"] == "escalated"
    assert view["summary"]["flags"]["distress"] is True


# --- recap ------------------------------------------------------------------------------------------


async def _chat_until_recap(client: AsyncTestClient[Litestar], token: str, answers: list[str]) -> str:
    """Answer in order until the bot's message is the recap; returns the recap text."""
    for answer in answers:
        events = parse_sse((await send(client, token, answer, str(uuid.uuid4()))).text)
        assert events[-1][1]["status"] == "active", events
        if "Did I get that right" in reply_text(events):
            return reply_text(events)
    raise AssertionError("no recap before the answers ran out")


RECAP_ANSWERS = [
    "I'm stuck on problem set 3, I can't tell when to reject the null hypothesis with the p-value.",
    "I re-read the lecture notes and redid problem 2 twice.",
    "I want to understand the decision rule so I can finish on my own.",
    "It's due Friday.",
    "Nothing else.",
    "Really nothing.",
    "ok",
]


async def test_the_student_confirms_the_recap_and_the_chat_completes(
    client: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """The recap names the assignment and the student's stuck point; "yes" completes the intake."""
    token = await consented(redis_url, settings, client)
    recap = await _chat_until_recap(client, token, RECAP_ANSWERS)
    assert "Problem Set 3: Hypothesis Tests" in recap and "reject the null hypothesis" in recap
    assert recap.count("?") == 1 and "prep" not in recap.lower()
    events = parse_sse((await send(client, token, "Yes, that's right.", str(uuid.uuid4()))).text)
    assert events[-1][1]["status"] == "complete"
    view = (await client.get(f"/api/intakes/{token}")).json()
    assert view["summary"]["assignment"] == "ps3"


async def test_a_recap_correction_updates_the_summary(
    client: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """Correcting the recap ("it's problem set 4, not 3") moves the summary's assignment and is acknowledged."""
    token = await consented(redis_url, settings, client)
    await _chat_until_recap(client, token, RECAP_ANSWERS)
    fix = "Not quite, it's actually for problem set 4, not problem set 3."
    events = parse_sse((await send(client, token, fix, str(uuid.uuid4()))).text)
    assert events[-1][1]["status"] == "complete"
    assert "updated the summary with your correction" in reply_text(events)
    view = (await client.get(f"/api/intakes/{token}")).json()
    assert view["summary"]["assignment"] == "ps4"
    record = await load(redis_url, settings, token)
    assert record and record.summary and record.summary.assignment == "ps4"
    assert "Problem Set 4" in record.summary.professor_prep_note


# --- rating -----------------------------------------------------------------------------------------


async def test_rating_only_after_the_chat_and_only_up_or_down(
    client: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """409 while the chat runs; afterwards up/down is stored (and can be changed); anything else is 422."""
    token = await consented(redis_url, settings, client)
    url = f"/api/intakes/{token}/rating"
    assert_problem(await client.post(url, json={"value": "up"}), 409)
    record = await load(redis_url, settings, token)
    assert record
    record.status = "complete"
    await _save(redis_url, settings, record)
    assert_problem(await client.post(url, json={"value": "meh"}), 422)
    assert (await client.post(url, json={"value": "down"})).status_code == 200
    assert (await client.post(url, json={"value": "up"})).status_code == 200
    stored = await load(redis_url, settings, token)
    assert stored and stored.student_rating == "up"


async def _save(redis_url: str, settings: Settings, record: Any) -> None:
    redis = aioredis.from_url(redis_url)
    try:
        await IntakeStore(redis, settings.retention_days).save(record)
    finally:
        await redis.aclose()


# --- the real model ---------------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_turn_with_the_real_model(inference_server: str, redis_url: str, tmp_path: Path) -> None:
    """With the embedded model behind mlx_lm.server, a turn streams a question and stores it."""
    base_url = inference_server
    settings = make_settings(tmp_path, redis_url, inference_url=base_url, inference_timeout_s=120.0)
    app = create_app(settings, services_factory=_real_model_factory())
    async with AsyncTestClient(app, timeout=300) as client:
        token = await consented(redis_url, settings, client)
        events = parse_sse((await send(client, token, ANSWERS[0], str(uuid.uuid4()))).text)
    assert events[-1] == ("done", {"status": "active", "turn": 1})
    assert reply_text(events).strip().endswith("?")


def _real_model_factory() -> Any:
    return services_factory(None)  # no scripted model: the real OpenAI client


async def test_a_cancellation_while_the_interview_is_prepared_is_not_undone(
    redis_url: str, settings: Settings, client: AsyncTestClient[Litestar], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cal.com's cancellation lands while consent prepares the interview (retrieval takes a moment): the
    student gets 410 and the record stays cancelled, with no consent and no transcript written over it."""
    from services.gateway.intake.interview import Interviewer

    record = await seed_intake(redis_url, settings)
    prepare = Interviewer.prepare

    async def cancelled_meanwhile(self: Interviewer, *args: Any) -> None:
        redis = aioredis.from_url(redis_url)
        try:
            await IntakeStore(redis, settings.retention_days).update(
                record.token, lambda r: setattr(r, "status", "cancelled")
            )
        finally:
            await redis.aclose()
        await prepare(self, *args)

    monkeypatch.setattr(Interviewer, "prepare", cancelled_meanwhile)
    assert_problem(await client.post(f"/api/intakes/{record.token}/consent"), 410)
    stored = await load(redis_url, settings, record.token)
    assert stored is not None and stored.status == "cancelled"
    assert stored.consented_at is None and not stored.interview.messages
