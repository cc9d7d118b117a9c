"""Synthetic course skeletons: many subjects for the training data, none of them served to students.

``courses.toml`` lists courses in fields unlike the sample packs (nursing, economics, music theory,
engineering, art history, Spanish, biology, linear algebra, history, psychology). Each becomes the same
``Course`` a ``course.toml`` decodes to, so the gateway's own interviewer runs on it unchanged, plus one
short passage per topic and per assignment that ``finetune.retrieval.LocalRetriever`` serves as if it
were the course's files. Varied titles and keywords teach the model to name the student's own work, not
to repeat a few courses' vocabulary.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from pathlib import Path

import msgspec

from services.coursepack import Assignment, Course, Question, Topic
from services.gateway.ports import Passage

SKELETONS_PATH = Path(__file__).with_name("courses.toml")


class _Topic(msgspec.Struct, frozen=True):
    id: str
    title: str
    keywords: list[str]
    note: str


class _Assignment(msgspec.Struct, frozen=True):
    id: str
    title: str
    due: dt.date
    topics: list[str]
    keywords: list[str]
    task: str


class Skeleton(msgspec.Struct, frozen=True):
    """One ``[[course]]`` of ``courses.toml``."""

    slug: str
    code: str
    title: str
    instructor_name: str
    topics: list[_Topic]
    assignments: list[_Assignment]
    questions: list[Question] = []


class _File(msgspec.Struct, frozen=True):
    course: list[Skeleton]


def load_skeletons(path: Path = SKELETONS_PATH) -> list[Skeleton]:
    return msgspec.convert(tomllib.loads(path.read_text(encoding="utf-8")), _File).course


def course_of(skeleton: Skeleton) -> Course:
    """The skeleton as a validated ``Course`` (strict: a typo in ``courses.toml`` fails here)."""
    handle = re.sub(r"[^a-z]", "", skeleton.instructor_name.split()[-1].lower())
    data = {
        "slug": skeleton.slug,
        "path": f"skeleton:{skeleton.slug}",
        "code": skeleton.code,
        "title": skeleton.title,
        "instructor_name": skeleton.instructor_name,
        "instructor_email": f"{handle}@univ.example.edu",
        "calcom": {"event_type_slugs": [f"{skeleton.slug}-office-hours"]},
        "topics": [msgspec.structs.asdict(Topic(t.id, t.title, t.keywords)) for t in skeleton.topics],
        "assignments": [
            msgspec.structs.asdict(
                Assignment(a.id, a.title, a.due, a.topics, a.keywords, f"assignments/{a.id}.md")
            )
            for a in skeleton.assignments
        ],
        "questions": [msgspec.structs.asdict(q) for q in skeleton.questions],
    }
    course = msgspec.convert(data, Course, from_attributes=True)
    _check(course)
    return course


def passages_of(skeleton: Skeleton) -> list[Passage]:
    """One passage per topic note and assignment sheet, shaped like the indexer's sections."""
    notes = [Passage(text=t.note, source=f"notes/{t.id}.md", title=t.title) for t in skeleton.topics]
    sheets = [
        Passage(
            text=f"{a.task} Due {a.due:%B} {a.due.day}.",
            source=f"assignments/{a.id}.md",
            title=a.title,
            assignment_id=a.id,
        )
        for a in skeleton.assignments
    ]
    return notes + sheets


def _check(course: Course) -> None:
    topic_ids = {t.id for t in course.topics}
    for assignment in course.assignments:
        unknown = set(assignment.topics) - topic_ids
        if unknown:
            raise ValueError(
                f"{course.slug}: assignment {assignment.id} names unknown topics {sorted(unknown)}"
            )
    for question in course.questions:
        if set(question.topics) - topic_ids or set(question.assignments) - {a.id for a in course.assignments}:
            raise ValueError(f"{course.slug}: question {question.id} names an unknown topic or assignment")
