"""Simulated students: the persona matrix in ``personas.toml`` crossed with the course packs.

A persona is one student with one need in one course, plus the ground truth an ideal summary of their
intake contains. Generation is deterministic (fixed seed), so the held-out test personas that the
evaluation harness replays are the same ones the split kept out of training.

The courses are the packs under ``corpus/`` except the held-out evaluation courses (``HELD_OUT``: never
in training data, so ``make eval`` measures a course the model has not seen) plus the synthetic skeletons
of ``finetune/skeletons/`` (``training_catalog``).
"""

from __future__ import annotations

import datetime as dt
import random
import tomllib
from pathlib import Path
from typing import Literal

import msgspec

from finetune.skeletons import course_of, load_skeletons
from services.coursepack import Assignment, Catalog, Course, Topic
from services.gateway.intake.models import RequestType, SummaryStatus, Urgency

Style = Literal["terse", "rambling", "anxious", "confused", "off_topic", "homework", "injection", "distress"]
STYLES: tuple[Style, ...] = (
    "terse",
    "rambling",
    "anxious",
    "confused",
    "off_topic",
    "homework",
    "injection",
    "distress",
)
# Course packs kept out of every training step: the evaluation's unseen course.
HELD_OUT: frozenset[str] = frozenset({"phil210"})
MATRIX_PATH = Path(__file__).with_name("personas.toml")
PHRASES_PATH = Path(__file__).with_name("phrases.toml")
# Used when an assignment has no due date (or there is no assignment) to place the appointment.
REFERENCE_DATE = dt.date(2026, 10, 15)
_FIRST = [
    "Sam",
    "Lina",
    "Kenji",
    "Ana",
    "Omar",
    "Priya",
    "Jonas",
    "Mei",
    "Diego",
    "Fatima",
    "Lukas",
    "Aisha",
    "Tran",
    "Sofia",
    "Yusuf",
    "Hana",
    "Mateo",
    "Zara",
    "Ivan",
    "Nia",
]
_LAST = [
    "Lee",
    "Kim",
    "Tanaka",
    "Silva",
    "Haddad",
    "Patel",
    "Berg",
    "Chen",
    "Ramos",
    "Ali",
    "Novak",
    "Okafor",
    "Nguyen",
    "Rossi",
    "Demir",
    "Sato",
    "Lopez",
    "Khan",
    "Petrov",
    "Mensah",
]


class Phrase(msgspec.Struct, frozen=True):
    say: str
    summary: str


class RequestSpec(msgspec.Struct, frozen=True):
    weight: int
    needs_assignment: bool
    stuck: list[Phrase]
    attempts: list[Phrase]
    goals: list[Phrase]


class StyleSpec(msgspec.Struct, frozen=True):
    description: str
    status: SummaryStatus = "complete"
    flags: dict[str, bool] = {}
    homework_request: bool = False
    injection: bool = False


class DifficultySpec(msgspec.Struct, frozen=True):
    weights: list[int]
    hints: list[str]


class DeadlineSpec(msgspec.Struct, frozen=True):
    days_before_due: list[int]


class Matrix(msgspec.Struct, frozen=True):
    """``personas.toml`` as typed data."""

    seed: int
    personas: int
    conversations_per_persona: int
    split: dict[str, float]
    styles: dict[str, StyleSpec]
    request_types: dict[str, RequestSpec]
    difficulty: DifficultySpec
    deadline: DeadlineSpec


class Truth(msgspec.Struct, frozen=True, kw_only=True):
    """What an ideal summary of this student's intake says (the fields the eval compares)."""

    topic: str
    assignment: str | None
    request_type: RequestType
    stuck_on: str  # third person, e.g. "does not know how to start Essay 2"
    attempts: str  # summary wording
    goal: str  # summary wording
    deadline: str | None  # ISO date of the relevant due date, or None
    days_to_deadline: int | None
    urgency: Urgency
    difficulty: int
    status: SummaryStatus
    distress: bool = False
    off_topic: bool = False
    injection: bool = False
    homework_request: bool = False


class Persona(msgspec.Struct, frozen=True, kw_only=True):
    """One simulated student. ``say_*`` are their own words for the facts in ``truth``."""

    id: str
    course_slug: str
    course_code: str
    name: str
    email: str
    style: Style
    appointment_start: str  # RFC 3339
    booking_note: str
    assignment_word: str | None  # how the student names the assignment ("essay 2")
    topic_word: str  # how the student names the topic ("thesis")
    hint: str  # difficulty hint in their words
    say_stuck: str
    say_attempts: str
    say_goal: str
    truth: Truth


def load_matrix(path: Path = MATRIX_PATH) -> Matrix:
    return msgspec.convert(tomllib.loads(path.read_text(encoding="utf-8")), Matrix)


def training_catalog(catalog: Catalog) -> Catalog:
    """The courses training data is made from: the packs minus ``HELD_OUT``, plus the skeletons."""
    courses = {slug: c for slug, c in catalog.courses.items() if slug not in HELD_OUT}
    for skeleton in load_skeletons():
        if skeleton.slug in courses or skeleton.slug in HELD_OUT:
            raise ValueError(
                f"skeleton slug {skeleton.slug!r} clashes with a course pack or a held-out course"
            )
        courses[skeleton.slug] = course_of(skeleton)
    return Catalog(courses=courses, problems=list(catalog.problems))


def urgency_for(days_to_deadline: int | None) -> Urgency:
    """Deadline proximity as the gateway's policy judges it (services/gateway/intake/policy.py ``urgency``):
    from 3 days overdue to 2 days ahead is high, within a week medium, anything else low."""
    if days_to_deadline is None:
        return "low"
    if -3 <= days_to_deadline <= 2:
        return "high"
    return "medium" if 2 < days_to_deadline <= 7 else "low"


def build_personas(catalog: Catalog, matrix: Matrix, count: int | None = None) -> list[Persona]:
    """The persona list: styles round-robin, courses round-robin, everything else drawn from the seed."""
    courses = [c for c in catalog.courses.values() if c.topics and c.slug not in HELD_OUT]
    if not courses:
        raise ValueError("no course with topics in the catalog: add a course pack under corpus/")
    rng = random.Random(matrix.seed)
    total = matrix.personas if count is None else count
    return [
        _persona(i, courses[i % len(courses)], STYLES[i % len(STYLES)], matrix, rng) for i in range(total)
    ]


def _persona(index: int, course: Course, style: Style, matrix: Matrix, rng: random.Random) -> Persona:
    names = list(matrix.request_types)
    kind = rng.choices(names, weights=[matrix.request_types[n].weight for n in names])[0]
    spec = matrix.request_types[kind]
    assignment = _pick_assignment(course, spec.needs_assignment, rng)
    topic = _pick_topic(course, assignment, rng)
    slots = _slots(course, assignment, topic, rng)
    stuck, attempts, goal = rng.choice(spec.stuck), rng.choice(spec.attempts), rng.choice(spec.goals)
    difficulty = rng.choices(range(1, 6), weights=matrix.difficulty.weights)[0]
    appointment, deadline, days = _schedule(assignment, kind, matrix, rng)
    style_spec = matrix.styles[style]
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    return Persona(
        id=f"p{index:04d}",
        course_slug=course.slug,
        course_code=course.code,
        name=f"{first} {last}",
        email=f"{first.lower()}.{last.lower()}{index}@student.example.edu",
        style=style,
        appointment_start=appointment.isoformat().replace("+00:00", "Z"),
        booking_note=_booking_note(slots, rng),
        assignment_word=slots["assignment"] if assignment else None,
        topic_word=slots["topic"],
        hint=matrix.difficulty.hints[difficulty - 1],
        say_stuck=stuck.say.format(**slots),
        say_attempts=attempts.say.format(**slots),
        say_goal=goal.say.format(**slots),
        truth=Truth(
            topic=topic.id,
            assignment=assignment.id if assignment else None,
            request_type=kind,  # type: ignore[arg-type]
            stuck_on=stuck.summary.format(**slots),
            attempts=attempts.summary.format(**slots),
            goal=goal.summary.format(**slots),
            deadline=deadline.isoformat() if deadline else None,
            days_to_deadline=days,
            urgency=urgency_for(days),
            difficulty=difficulty,
            status=style_spec.status,
            distress=style_spec.flags.get("distress", False),
            off_topic=style_spec.flags.get("off_topic", False),
            injection=style_spec.injection,
            homework_request=style_spec.homework_request,
        ),
    )


def _pick_assignment(course: Course, needs: bool, rng: random.Random) -> Assignment | None:
    if not course.assignments:
        return None
    if needs or rng.random() < 0.3:
        return rng.choice(course.assignments)
    return None


def _pick_topic(course: Course, assignment: Assignment | None, rng: random.Random) -> Topic:
    ids = assignment.topics if assignment and assignment.topics else [t.id for t in course.topics]
    return course.topic(rng.choice(ids)) or course.topics[0]


def _slots(course: Course, assignment: Assignment | None, topic: Topic, rng: random.Random) -> dict[str, str]:
    """Words for the placeholders: students use keywords, summaries use titles."""
    topic_word = _pick_word(topic.keywords, topic.title, rng)
    if assignment:
        word = _pick_word(assignment.keywords, assignment.title, rng)
        title = assignment.title
    else:
        word, title = f"{topic_word} practice", f"{topic.title} practice"
    return {
        "assignment": word,
        "assignment_title": title,
        "topic": topic_word,
        "topic_title": topic.title,
        "course": course.code,
    }


def _pick_word(keywords: list[str], title: str, rng: random.Random) -> str:
    """A keyword a student would type: multi-letter, not an abbreviation like 'SV' or a bare article."""
    usable = [k for k in keywords if len(k) > 3 and not k.isupper()]
    return rng.choice(usable) if usable else title.lower()


def _schedule(
    assignment: Assignment | None, kind: str, matrix: Matrix, rng: random.Random
) -> tuple[dt.datetime, dt.date | None, int | None]:
    """Appointment time and the deadline that matters, placed relative to the assignment's due date."""
    hour = rng.choice([9, 10, 11, 13, 14, 15, 16])
    due = assignment.due_date if assignment else None
    if due is None:
        day = REFERENCE_DATE + dt.timedelta(days=rng.randint(0, 20))
        days = rng.choice([None, 3, 7, 12]) if kind == "exam_prep" else None
        deadline = day + dt.timedelta(days=days) if days is not None else None
    else:
        days = -rng.randint(3, 10) if kind == "grade" else rng.choice(matrix.deadline.days_before_due)
        day, deadline = due - dt.timedelta(days=days), due
    start = dt.datetime.combine(day, dt.time(hour, 0), tzinfo=dt.UTC)
    return start, deadline, days


def _booking_note(slots: dict[str, str], rng: random.Random) -> str:
    """What the student typed into Cal.com's notes box: often nothing, sometimes a hint."""
    return rng.choice(["", "", "", f"{slots['assignment']}", f"help with {slots['topic']}", "questions"])
