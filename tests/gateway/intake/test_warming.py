"""Start-up warm-up: every course's map is built before the first student's turn needs it."""

from __future__ import annotations

from types import SimpleNamespace

from services.coursepack import Catalog
from services.gateway.intake.warming import keep_courses_warm
from services.gateway.ports import CourseSimilarity
from tests.gateway.intake.scripted import make_course


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
