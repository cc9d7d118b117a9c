"""The assess job in the queue: queued once the final summary is kept, run by the worker's runner, never
for an intake with nothing to judge (real Redis, scripted model)."""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as aioredis

from finetune.rubric import RUBRIC_VERSION
from services.coursepack import Catalog
from services.gateway.container import build_services
from services.gateway.delivery import jobs
from services.gateway.delivery.queue import JobArgs
from tests.gateway.intake.scripted import ScriptedModel, make_course
from tests.gateway.quality.test_assess import GOOD, finished
from tests.gateway.staff.harness import make_settings, save, seed_intake


async def test_a_kept_summary_queues_one_assessment_and_the_runner_stores_it(
    tmp_path: Path, redis_url: str, redis: aioredis.Redis
) -> None:
    """summarize -> ``assess.<booking uid>.<rubric version>`` pending -> the runner stores the records under
    the intake's model; a second run is a no-op; a no-intake summary queues no assessment."""
    settings = make_settings(tmp_path, redis_url, model_id="model-a")
    course = make_course()
    services = build_services(
        settings,
        catalog=Catalog(courses={course.slug: course}, problems=[]),
        retriever=None,
        model=ScriptedModel(),
    )
    try:
        record = finished(GOOD)
        record.token, record.model = "tok-assess-job", ""
        record.booking = (await seed_intake(redis_url, settings)).booking
        await save(redis_url, settings, record)
        assert (
            await jobs.summarize(services, JobArgs(token=record.token, status="complete"))
            == "summary complete"
        )
        queued = await services.jobs.get(f"assess.{record.booking.uid}.{RUBRIC_VERSION}")
        assert queued is not None and queued.state == "pending" and queued.queue == "intake"
        assert await jobs.assess(services, JobArgs(token=record.token)) == "assessed: 7 records"
        assert await jobs.assess(services, JobArgs(token=record.token)) == "skipped: already assessed"
        [verdict] = await services.assessments.for_intake(record.token)
        assert verdict.model == services.model_id_of(record) == "model-a"

        untouched = await seed_intake(redis_url, settings)
        assert await jobs.partial_summary(services, JobArgs(token=untouched.token)) == "summary no_intake"
        assert await services.jobs.get(f"assess.{untouched.booking.uid}.{RUBRIC_VERSION}") is None
        assert await jobs.assess(services, JobArgs(token=untouched.token)) == "skipped: no finished intake"
    finally:
        await services.aclose()
