"""Quality figures follow the staff member's courses: two staff of two courses each see only their own
course's assessments and model calls; another course by name is a 404 problem; the operator sees all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import msgspec
import redis.asyncio as aioredis

from services.coursepack import Course
from services.gateway.container import Services
from services.gateway.quality.assess import judge
from services.gateway.staff import auth
from tests.gateway.intake.scripted import ScriptedModel, make_course
from tests.gateway.live import client, running_app, services_of
from tests.gateway.quality.test_assess import GOOD, finished
from tests.gateway.quality.test_routes import assert_problem, call_record
from tests.gateway.staff.harness import (
    STAFF_PASSWORD,
    csrf_ready,
    make_settings,
    open_login_link,
    services_factory,
)

STAT_STAFF, BIO_STAFF = "okafor@example.edu", "bio@example.edu"


def bio() -> Course:
    return msgspec.structs.replace(make_course(), slug="bio110", code="BIO 110", instructor_email=BIO_STAFF)


async def _seed(services: Services) -> None:
    """stat150: one intake run by model-stat, assessed, with two calls; bio110: the same with model-bio;
    and a readiness probe of model-stat outside any intake."""
    for slug, model in (("stat150", "model-stat"), ("bio110", "model-bio")):
        record = finished(GOOD)
        record.token, record.course_slug, record.model = f"tok-{slug}", slug, model
        assert services.model_for(record).course == slug  # type: ignore[attr-defined]
        await services.assessments.save(record.token, judge(record, make_course(), model, "p1"), slug)
        for n in range(2):
            call = call_record(f"{slug}-{n}", record.token, "interview_question", model, course=slug)
            await services.calls.record(call)
    await services.calls.record(call_record("probe", "", "readiness_probe", "model-stat"))


async def _as_staff(http: httpx.AsyncClient, services: Services, email: str) -> None:
    await csrf_ready(http)
    token = await auth.issue_login_link(services, email, "")
    assert (await open_login_link(http, f"/staff/login/{token}")).status_code == 303


def _models(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    return {m["model"]: (m["intakes"], m["calls"]) for m in body["models"]} | {"courses": body["courses"]}


async def test_each_staff_member_sees_only_their_courses_quality(
    tmp_path: Path, redis_url: str, redis: aioredis.Redis
) -> None:
    settings = make_settings(tmp_path, redis_url)
    factory = services_factory(ScriptedModel(), [make_course(), bio()])
    async with running_app(settings, factory) as app:
        services = services_of(app)
        await _seed(services)
        async with client(app) as stat, client(app) as biology, client(app) as operator:
            await _as_staff(stat, services, STAT_STAFF)
            await _as_staff(biology, services, BIO_STAFF)
            token = await csrf_ready(operator)
            login = await operator.post(
                "/staff/login", data={"password": STAFF_PASSWORD, "_csrf_token": token}
            )
            assert login.status_code == 303

            assert _models(await stat.get("/staff/api/quality")) == {
                "model-stat": (1, 2),
                "courses": ["stat150"],
            }
            assert _models(await stat.get("/staff/api/quality", params={"course": "stat150"}))["courses"] == [
                "stat150"
            ]
            assert _models(await biology.get("/staff/api/quality")) == {
                "model-bio": (1, 2),
                "courses": ["bio110"],
            }
            for course in ("bio110", "no-such-course"):
                assert_problem(await stat.get("/staff/api/quality", params={"course": course}), 404)
            stat_page = await stat.get("/staff/quality")
            assert stat_page.status_code == 200 and "model-stat" in stat_page.text
            assert "model-bio" not in stat_page.text
            assert (await stat.get("/staff/quality", params={"course": "bio110"})).status_code == 404

            assert _models(await operator.get("/staff/api/quality")) == {
                "model-stat": (1, 3),  # the probe too
                "model-bio": (1, 2),
                "courses": None,
            }
            assert _models(await operator.get("/staff/api/quality", params={"course": "bio110"})) == {
                "model-bio": (1, 2),
                "courses": ["bio110"],
            }
