"""Which model serves an intake (A or B), and the record of every call it makes, on a real Redis.

The models are the scripted fake (``tests/gateway/intake/scripted.py``); what is pinned here is the choice
and the bookkeeping around them. The real model's calls are recorded in ``test_real_intake.py``.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.coursepack import Catalog
from services.gateway.container import Services, build_services
from services.gateway.delivery.queue import finish_setup
from services.gateway.errors import ModelUnavailable
from services.gateway.intake.models import ChatMessage
from services.gateway.ports import PromptMessage
from services.gateway.purpose import calling
from services.gateway.quality import assignment
from services.gateway.quality.assignment import assign_model, share_point
from services.gateway.quality.calls import PROMPT_VERSION
from services.settings import Settings
from tests.gateway.intake.scripted import ScriptedModel, make_course
from tests.gateway.staff.harness import make_settings, seed_intake

HELLO = [PromptMessage("user", "hello")]


def ab_settings(tmp_path: Path, redis_url: str, share: float) -> Settings:
    return make_settings(
        tmp_path,
        redis_url,
        model_id="model-a",
        model_b_url="http://127.0.0.1:9/v1",
        model_b_id="model-b",
        model_b_share=share,
    )


async def open_services(settings: Settings, a: ScriptedModel, b: ScriptedModel) -> Services:
    course = make_course()
    catalog = Catalog(courses={course.slug: course}, problems=[])
    return build_services(settings, catalog=catalog, retriever=None, model=a, model_b=b)


@pytest.fixture
async def services(tmp_path: Path, redis_url: str, redis: aioredis.Redis) -> AsyncIterator[Services]:
    built = await open_services(ab_settings(tmp_path, redis_url, 0.5), ScriptedModel(), ScriptedModel())
    yield built
    await built.aclose()


def test_the_share_of_model_b_is_respected_and_deterministic(tmp_path: Path, redis_url: str) -> None:
    """20,000 tokens at a share of 0.2: B gets 20% (±1.5 points); a token gets the same model every time;
    share 0 or no second model: everyone gets A."""
    settings = ab_settings(tmp_path, redis_url, 0.2)
    tokens = [secrets.token_urlsafe(24) for _ in range(20_000)]
    chosen = [assign_model(settings, t) for t in tokens]
    assert abs(chosen.count("model-b") / len(tokens) - 0.2) < 0.015
    assert chosen == [assign_model(settings, t) for t in tokens]
    assert {assign_model(ab_settings(tmp_path, redis_url, 0.0), t) for t in tokens[:500]} == {"model-a"}
    no_b = make_settings(tmp_path, redis_url, model_id="model-a", model_b_share=1.0)
    assert {assign_model(no_b, t) for t in tokens[:500]} == {"model-a"}
    assert all(0 <= share_point(t) < 1 for t in tokens[:100])


async def test_the_model_is_written_at_set_up_and_kept_when_the_share_changes(
    tmp_path: Path, redis_url: str, redis: aioredis.Redis
) -> None:
    """Set-up writes the assigned model on the record; later the operator sets the share to 0: that intake
    still talks to B (its calls go to B's model and are recorded as B), a new one gets A."""
    a, b = ScriptedModel("From A?"), ScriptedModel("From B?")
    first = await open_services(ab_settings(tmp_path, redis_url, 1.0), a, b)
    try:
        record = await seed_intake(redis_url, first.settings)
        await finish_setup(first.intakes, first.jobs, record.token)
        stored = await first.intakes.get(record.token)
        assert stored is not None and stored.model == "model-b"
    finally:
        await first.aclose()
    later = await open_services(ab_settings(tmp_path, redis_url, 0.0), a, b)
    try:
        stored = await later.intakes.get(record.token)
        assert stored is not None
        reply = await later.model_for(stored).complete(HELLO, max_tokens=5)
        assert reply == "From B?" and len(b.calls) == 1 and not a.calls
        fresh = await seed_intake(redis_url, later.settings)
        assert later.model_id_of(fresh) == "model-a"
        await later.calls.drain()
        calls = await later.calls.for_intake(record.token)
        assert [(c.model, c.intake, c.status) for c in calls] == [("model-b", record.token, "ok")]
    finally:
        await later.aclose()


async def test_every_call_is_recorded_with_its_purpose_and_outcome(services: Services) -> None:
    """Purpose from ``calling``, the intake from ``model_for``, status ok / error / rejected; a stream
    closed after its first piece still counts as answered; one closed before it started sent nothing and
    is not a call."""
    record = await seed_intake(str(services.settings.redis_url), services.settings)
    model = services.model_for(record)
    scripted: Any = services.model_b if record.model == "model-b" else services.model
    scripted.enqueue("Which part is hardest?", "Never read.")
    with calling("interview_question"):
        stream = model.stream(HELLO, max_tokens=10)
    first = await stream.__anext__()
    await stream.aclose()  # type: ignore[attr-defined]
    with calling("interview_retry"):
        abandoned = model.stream(HELLO, max_tokens=10)
    await abandoned.aclose()  # type: ignore[attr-defined]
    scripted.fail_with = RuntimeError("boom")
    with calling("summary_draft"), pytest.raises(RuntimeError):
        await model.complete(HELLO, max_tokens=10)
    scripted.fail_with = ModelUnavailable("resting")
    with calling("summary_retry"), pytest.raises(ModelUnavailable):
        await model.complete(HELLO, max_tokens=10)
    scripted.fail_with = None
    await services.model_for(None).complete(HELLO, max_tokens=1)  # no intake, no purpose
    await services.calls.drain()
    calls = await services.calls.for_intake(record.token)
    assert first == "Which "
    # records are written in the background, concurrently: their order in Redis is not the calls' order
    assert sorted((c.purpose, c.status) for c in calls) == [
        ("interview_question", "ok"),
        ("summary_draft", "error"),
        ("summary_retry", "rejected"),
    ]
    assert {c.model for c in calls} == {record.model} and {c.prompt_version for c in calls} == {
        PROMPT_VERSION
    }
    question = next(c for c in calls if c.purpose == "interview_question")
    assert question.completion_tokens == 1 and question.first_token_s is not None
    outside = [c for c in await services.calls.recent(limit=10) if not c.intake]
    assert [(c.purpose, c.model) for c in outside] == [("other", "model-a")]


async def test_an_intake_from_before_models_were_recorded_keeps_the_default(
    tmp_path: Path, redis_url: str, redis: aioredis.Redis
) -> None:
    """An intake with no model on its record: if it has not started, the hash decides (here: B at a share
    of 1); if its conversation has started, the default (it never changes model half-way)."""
    services = await open_services(ab_settings(tmp_path, redis_url, 1.0), ScriptedModel(), ScriptedModel())
    try:
        fresh = await seed_intake(redis_url, services.settings)
        started = await seed_intake(redis_url, services.settings)
        started.interview.messages.append(ChatMessage("assistant", "Hi! What would you like help with?"))
        assert (services.model_id_of(fresh), services.model_id_of(started)) == ("model-b", "model-a")
    finally:
        await services.aclose()


def test_the_default_model_id_is_looked_up_once_in_a_while_not_for_every_intake(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every new intake asks for it, and finding it checks the adapter's file: what was found stands for
    a few seconds, then is looked up again (a changed adapter shows)."""
    settings = make_settings(tmp_path, redis_url)
    lookups: list[str] = []
    adapter = "/adapters/one"

    def adapter_for(_: Settings) -> str:
        lookups.append(adapter)
        return adapter

    now = [1000.0]
    monkeypatch.setattr(assignment, "adapter_for", adapter_for)
    monkeypatch.setattr(assignment.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(assignment, "_found", {})
    first = assignment.default_model_id(settings)
    assert first.endswith("+one") and assignment.default_model_id(settings) == first
    assert len(lookups) == 1
    adapter, now[0] = "/adapters/two", now[0] + assignment._FOUND_FOR_S + 1
    assert assignment.default_model_id(settings).endswith("+two")
    assert len(lookups) == 2
