"""A whole intake with the real model (mlx_lm.server with the embedded model): every call it made is in the
call log with tokens and timings from the server, and the finished intake is assessed (slow)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import structlog

from finetune.rubric import RUBRIC_VERSION
from services.gateway.container import Services
from services.gateway.delivery import jobs
from services.gateway.delivery.queue import JobArgs
from services.gateway.quality.assignment import default_model_id
from tests.gateway.intake.test_routes import ANSWERS
from tests.gateway.live import client, running_app, services_of
from tests.gateway.staff.harness import make_settings, parse_sse, seed_intake, services_factory


@pytest.mark.slow
async def test_a_real_intake_leaves_call_records_and_an_assessment(
    inference_server: str, redis_url: str, redis: aioredis.Redis, tmp_path: Path
) -> None:
    """Consent (warm-up), the turns (questions), the summary job (draft), the assess job and a readiness
    check: each model call is recorded with the server's token counts, and the intake's assessment is
    stored and counted under the model that ran it."""
    settings = make_settings(
        tmp_path,
        redis_url,
        inference_url=inference_server,
        inference_timeout_s=120.0,
        model_id="smollm2-test",
    )
    async with running_app(settings, services_factory(None)) as app, client(app) as http:
        http.timeout = 600
        services = services_of(app)
        record = await seed_intake(redis_url, settings)
        assert (await http.post(f"/api/intakes/{record.token}/consent")).status_code == 200
        status = "active"
        for answer in ANSWERS:
            events = parse_sse(
                (
                    await http.post(
                        f"/api/intakes/{record.token}/messages",
                        json={"text": answer, "client_turn_id": str(uuid.uuid4())},
                    )
                ).text
            )
            status = events[-1][1]["status"]
            if status != "active":
                break
        assert status == "complete"
        with structlog.contextvars.bound_contextvars(request_id="job-summarize"):  # as the worker does
            summarized = await jobs.summarize(services, JobArgs(token=record.token, status="complete"))
        assert summarized == "summary complete"
        assess_job = await services.jobs.get(f"assess.{record.booking.uid}.{RUBRIC_VERSION}")
        assert assess_job is not None and assess_job.state == "pending"
        assert (await jobs.assess(services, JobArgs(token=record.token))).startswith("assessed")
        assert await jobs.assess(services, JobArgs(token=record.token)) == "skipped: already assessed"
        await http.get("/readyz")
        await services.calls.drain()
        calls = await services.calls.for_intake(record.token)
        verdicts = await services.assessments.for_intake(record.token)
        averages = await services.assessments.averages()
        probes = [c for c in await services.calls.recent(limit=20) if c.purpose == "readiness_probe"]
    purposes = [c.purpose for c in calls]
    assert "warm_up" in purposes and "interview_question" in purposes and "summary_draft" in purposes
    seen = [(c.purpose, c.status, c.prompt_tokens, c.completion_tokens, c.cached_tokens) for c in calls]
    assert all(c.status == "ok" and c.completion_tokens > 0 for c in calls), seen
    assert all(c.first_token_s is not None and c.total_s >= c.first_token_s for c in calls), seen
    # the server reports usage at the end of a stream: the warm-up and the draft always get there; a
    # question closed at its question mark may not (then its prompt tokens are unknown, never 0)
    finished = [c for c in calls if c.purpose in ("warm_up", "summary_draft")]
    assert all(c.prompt_tokens and c.cached_tokens is not None for c in finished), seen
    assert all(c.prompt_tokens is None or c.prompt_tokens > 0 for c in calls), seen
    assert {c.model for c in calls} == {"smollm2-test"} == {default_model_id(settings)}
    assert all(c.request_id for c in calls), [(c.purpose, c.request_id) for c in calls]
    assert {c.request_id for c in calls if c.purpose.startswith("summary")} == {"job-summarize"}
    [verdict] = verdicts
    assert verdict.model == "smollm2-test" and verdict.rubric_version == RUBRIC_VERSION
    kinds = [a.kind for a in verdict.assessments]
    assert kinds.count("multi_turn") == 1 and kinds.count("session_summary") == 1
    assert kinds.count("interaction") == sum(
        1 for m in (await _messages(services, record.token)) if m == "assistant"
    )
    assert [(g.model, g.intakes) for g in averages] == [("smollm2-test", 1)]
    assert probes and probes[0].model == "smollm2-test"


async def _messages(services: Services, token: str) -> list[str]:
    stored = await services.intakes.get(token)
    assert stored is not None
    return [m.role for m in stored.interview.messages]
