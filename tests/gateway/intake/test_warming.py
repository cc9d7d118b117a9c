"""Start-up warm-up: every course's map is built before the first student's turn needs it, and each
course's system prompt is put in the prompt cache of the default model and of the second one, if set."""

from __future__ import annotations

import gc
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from services.coursepack import Catalog
from services.gateway.container import build_services
from services.gateway.intake.warming import keep_courses_warm, warm_course_once
from services.gateway.ports import CourseSimilarity
from tests.gateway.intake.scripted import ScriptedModel, make_course
from tests.gateway.staff.harness import make_settings


class CountingReader:
    def __init__(self) -> None:
        self.courses: list[str] = []

    def similarity(self, course: object, text: str) -> CourseSimilarity:
        self.courses.append(course.slug)  # type: ignore[attr-defined]
        return CourseSimilarity(topics={}, assignments={})


async def test_each_course_map_is_built_at_start_up() -> None:
    course = make_course()
    reader = CountingReader()
    services = SimpleNamespace(
        reader=reader, retriever=None, catalog=Catalog(courses={course.slug: course}, problems=[])
    )
    await keep_courses_warm(services)  # type: ignore[arg-type]  # without a retriever it returns after the maps
    assert reader.courses == [course.slug]


async def test_what_start_up_built_is_kept_out_of_the_collectors_way() -> None:
    course = make_course()
    services = SimpleNamespace(
        reader=CountingReader(), retriever=None, catalog=Catalog(courses={course.slug: course}, problems=[])
    )
    gc.unfreeze()
    try:
        await keep_courses_warm(services)  # type: ignore[arg-type]
        assert gc.get_freeze_count() > 0  # a full collection no longer walks them
    finally:
        gc.unfreeze()


async def _warm_twice(tmp_path: Path, redis_url: str, **settings: Any) -> tuple[ScriptedModel, ScriptedModel]:
    """``warm_course_once`` twice (the second within ``REFRESH_S``: nothing to do) with scripted models."""
    course = make_course()
    a, b = ScriptedModel(), ScriptedModel()
    services = build_services(
        make_settings(tmp_path, redis_url, model_id="model-a", **settings),
        catalog=Catalog(courses={course.slug: course}, problems=[]),
        retriever=None,
        model=a,
        model_b=b,
    )
    try:
        stale = [k async for k in services.redis.scan_iter("intake:gen:warm:*")] + [b"quality:calls"]
        if stale:
            await services.redis.delete(*stale)
        assert await warm_course_once(services, course.slug)
        assert not await warm_course_once(services, course.slug)
        await services.calls.drain()
        warm_ups = [c for c in await services.calls.recent() if c.purpose == "warm_up"]
        assert sorted(c.model for c in warm_ups) == sorted(["model-a"] + (["model-b"] if b.calls else []))
    finally:
        await services.aclose()
    return a, b


async def test_the_second_model_is_warmed_like_the_first(tmp_path: Path, redis_url: str) -> None:
    """With ``INTAKE_MODEL_B_*`` set, its server gets each course's system prompt too (once per refresh)."""
    a, b = await _warm_twice(tmp_path, redis_url, model_b_url="http://127.0.0.1:9/v1", model_b_id="model-b")
    assert len(a.calls) == len(b.calls) == 1
    assert b.calls[0] == a.calls[0] and a.calls[0][0].role == "system"
    assert b.kwargs[0]["max_tokens"] == 1


async def test_without_a_second_model_only_the_default_is_warmed(tmp_path: Path, redis_url: str) -> None:
    a, b = await _warm_twice(tmp_path, redis_url)
    assert (len(a.calls), len(b.calls)) == (1, 0)
