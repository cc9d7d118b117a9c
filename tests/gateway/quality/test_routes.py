"""The staff read-outs of quality through the real app on a real Redis: shapes, login, bad input."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import redis.asyncio as aioredis
from litestar import Litestar

from finetune.rubric import RUBRIC_VERSION
from services.gateway.container import Services
from services.gateway.intake.models import IntakeRecord
from services.gateway.quality.assess import judge
from services.gateway.quality.calls import CallRecord
from tests.gateway.intake.scripted import ScriptedModel, make_course
from tests.gateway.live import client, running_app, services_of
from tests.gateway.quality.test_assess import GOOD, finished
from tests.gateway.staff.harness import STAFF_PASSWORD, csrf_ready, make_settings, save, services_factory


@asynccontextmanager
async def staff_app(tmp_path: Path, redis_url: str) -> AsyncIterator[tuple[Litestar, httpx.AsyncClient]]:
    """The real app in the test's own event loop, and a client logged in as the operator (the app runs
    in the test's task: a fixture's set-up and tear-down would run in different tasks)."""
    settings = make_settings(tmp_path, redis_url, model_id="model-a")
    async with running_app(settings, services_factory(ScriptedModel())) as app, client(app) as http:
        token = await csrf_ready(http)
        login = await http.post("/staff/login", data={"password": STAFF_PASSWORD, "_csrf_token": token})
        assert login.status_code == 303, login.text
        yield app, http


async def assessed_intake(services: Services, redis_url: str) -> IntakeRecord:
    """A finished intake with its assessment and two model calls, as the jobs would leave them."""
    record = finished(GOOD)
    record.token = "tok-routes-" + dt.datetime.now(dt.UTC).strftime("%H%M%S%f")
    record.booking = msgspec.structs.replace(record.booking, start_time=_soon())
    await save(redis_url, services.settings, record)
    await services.assessments.save(record.token, judge(record, make_course(), "model-a", "p1"))
    for n, purpose in enumerate(("interview_question", "summary_draft")):
        await services.calls.record(
            call_record(f"c{n}-model-a", record.token, purpose, "model-a", total_s=1.0 + n)
        )
    await services.calls.record(call_record("c9-model-b", "", "interview_question", "model-b", total_s=4.0))
    return record


def call_record(
    call_id: str, intake: str, purpose: str, model: str, *, course: str = "", total_s: float = 1.0
) -> CallRecord:
    """One logged model call: 100 prompt tokens (50 from the cache), 20 completion tokens."""
    return CallRecord(
        id=call_id,
        request_id=f"r-{call_id}",
        intake=intake,
        course=course,
        purpose=purpose,
        model=model,
        prompt_version="p1",
        prompt_tokens=100,
        completion_tokens=20,
        cached_tokens=50,
        first_token_s=total_s / 2,
        total_s=total_s,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    )


def _soon() -> str:
    return (
        (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status and problem["detail"]
    return problem


async def test_an_intakes_assessments_and_calls_without_its_token(
    tmp_path: Path, redis_url: str, redis: aioredis.Redis
) -> None:
    """The intake page's read-out: the brief's assessment fields, the model, and its calls without the
    student's token anywhere in the answer."""
    async with staff_app(tmp_path, redis_url) as (app, staff):
        record = await assessed_intake(services_of(app), redis_url)
        response = await staff.get(f"/staff/api/intakes/{record.staff_id}/assessments")
    assert response.status_code == 200, response.text
    body = response.json()
    assert record.token not in response.text
    assert (body["staff_id"], body["model"], body["rubric_version"]) == (
        record.staff_id,
        "model-a",
        RUBRIC_VERSION,
    )
    assert body["means"] == {"interaction": 1.0, "multi_turn": 1.0, "session_summary": 1.0}
    first = body["assessments"][0]
    fields = {"kind", "category", "score", "explanation", "errors", "rubric_version", "created_at", "model"}
    assert fields <= set(first)
    assert [c["purpose"] for c in body["calls"]] == ["interview_question", "summary_draft"]
    assert "intake" not in body["calls"][0] and body["calls"][0]["prompt_tokens"] == 100


async def test_an_unknown_intake_no_session_and_a_bad_window_are_problems(
    tmp_path: Path, redis_url: str, redis: aioredis.Redis
) -> None:
    """An unknown staff link is a 404 problem; ``days`` must be a whole number from 1 to 90 (else 400);
    without a session the API is a 401 problem and the page sends the browser to the login."""
    async with staff_app(tmp_path, redis_url) as (app, staff):
        assert_problem(await staff.get("/staff/api/intakes/no-such-intake/assessments"), 404)
        for days in ("0", "91", "abc"):
            assert_problem(await staff.get("/staff/api/quality", params={"days": days}), 400)
        assert (await staff.get("/staff/api/quality", params={"days": "90"})).status_code == 200
        async with client(app) as anonymous:
            assert_problem(await anonymous.get("/staff/api/quality"), 401)
            page = await anonymous.get("/staff/quality")
    assert page.status_code == 303 and page.headers["location"].startswith("/staff/login")


async def test_models_side_by_side_on_known_records(
    tmp_path: Path, redis_url: str, redis: aioredis.Redis
) -> None:
    """Model A: one assessed intake, two calls; model B: one call, nothing assessed yet. The page shows the
    same figures."""
    async with staff_app(tmp_path, redis_url) as (app, staff):
        await assessed_intake(services_of(app), redis_url)
        response = await staff.get("/staff/api/quality", params={"days": 1})
        page = await staff.get("/staff/quality")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rubric_version"] == RUBRIC_VERSION
    models = {m["model"]: m for m in body["models"]}
    a, b = models["model-a"], models["model-b"]
    assert (a["intakes"], a["calls"], a["prompt_tokens"], a["cached_share"]) == (1, 2, 200, 0.5)
    assert a["scores"] == {"interaction": 1.0, "multi_turn": 1.0, "session_summary": 1.0}
    assert (a["question_first_token_p95_s"], a["summary_total_p95_s"]) == (0.5, 2.0)
    assert (b["intakes"], b["calls"], b["scores"]["interaction"], b["question_first_token_p95_s"]) == (
        0,
        1,
        None,
        2.0,
    )
    assert [(g["model"], g["prompt_version"], g["intakes"]) for g in body["assessments"]] == [
        ("model-a", "p1", 1)
    ]
    assert {(d["model"], d["purpose"], d["calls"]) for d in body["calls"]["days"]} == {
        ("model-a", "interview_question", 1),
        ("model-a", "summary_draft", 1),
        ("model-b", "interview_question", 1),
    }
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Models side by side" in page.text and "model-b" in page.text and "50%" in page.text


async def test_metrics_export_the_call_log_and_the_scores(
    tmp_path: Path, redis_url: str, redis: aioredis.Redis
) -> None:
    """``/metrics`` carries calls and tokens by model and purpose, latency percentiles and mean scores."""
    async with staff_app(tmp_path, redis_url) as (app, _):
        await assessed_intake(services_of(app), redis_url)
        async with client(app) as local:
            text = (await local.get("/metrics")).text
    calls = 'intake_model_call_records_total{model="model-a",purpose="summary_draft",status="ok"} 1.0'
    tokens = (
        'intake_model_call_tokens_total{kind="prompt",model="model-b",purpose="interview_question"} 100.0'
    )
    p95 = 'intake_model_call_latency_seconds{kind="total",model="model-a",purpose="summary_draft",'
    p95 += 'quantile="0.95"}'
    score = (
        f'intake_assessment_score{{kind="multi_turn",model="model-a",rubric_version="{RUBRIC_VERSION}"}} 1.0'
    )
    assert calls in text and tokens in text and f"{p95} 2.0" in text and score in text
