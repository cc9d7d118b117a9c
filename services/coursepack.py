"""Course packs: ``corpus/<slug>/course.toml`` plus materials. The format is documented in corpus/README.md.

Loading never raises for one bad course: a ``Catalog`` carries the good courses and a readable problem
(file, line, what is wrong) for each bad one, so the other courses keep working.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Slug = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]


class Topic(msgspec.Struct, frozen=True):
    id: Slug
    title: str
    keywords: list[str] = []


class Assignment(msgspec.Struct, frozen=True):
    id: Slug
    title: str
    due: dt.date | None = None  # a date-time in course.toml is cut to its date by load_course
    topics: list[str] = []
    keywords: list[str] = []
    file: str | None = None

    @property
    def due_date(self) -> dt.date | None:
        return self.due


class Question(msgspec.Struct, frozen=True):
    """A course's own must-ask question: the interview treats it like one of its slots."""

    id: Slug
    ask: Annotated[str, Meta(min_length=5, max_length=200)]
    topics: list[str] = []  # only when the intake is about one of these topic ids (empty: any)
    assignments: list[str] = []  # only for these assignment ids (empty: any)

    def applies(self, topic: str | None, assignment: str | None) -> bool:
        if not self.topics and not self.assignments:
            return True
        return (topic in self.topics) or (assignment in self.assignments)


class CalcomMapping(msgspec.Struct, frozen=True):
    event_type_ids: list[int] = []
    event_type_slugs: list[str] = []


class Tone(msgspec.Struct, frozen=True):
    notes: str = "Warm, patient and brief."


class SupportResource(msgspec.Struct, frozen=True):
    name: str
    contact: str


DEFAULT_SUPPORT_MESSAGE = (
    "Thank you for telling me. What you are feeling matters more than any assignment, and you do not have "
    "to handle it alone. I have let your professor know. If you are in danger or thinking about hurting "
    "yourself, please reach out right now:"
)
DEFAULT_RESOURCES = [
    SupportResource("Campus counseling or health services", "see your student services website"),
    SupportResource("988 Suicide & Crisis Lifeline (US)", "call or text 988"),
    SupportResource("Emergency services", "call 911 (US) or your local emergency number"),
]


class Support(msgspec.Struct, frozen=True):
    message: str = DEFAULT_SUPPORT_MESSAGE
    resources: list[SupportResource] = msgspec.field(default_factory=lambda: list(DEFAULT_RESOURCES))


Email = Annotated[str, Meta(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)]


class StaffMember(msgspec.Struct, frozen=True):
    """Someone besides the instructor who may open this course's intakes (``[[staff]]``)."""

    email: Email
    name: str = ""
    role: Literal["ta", "instructor"] = "ta"


class Course(msgspec.Struct, frozen=True, kw_only=True):
    """One course as its ``course.toml`` declares it; ``slug`` is the folder name."""

    slug: str = ""
    path: str = ""
    code: Annotated[str, Meta(min_length=1, max_length=40)]
    title: Annotated[str, Meta(min_length=1, max_length=200)]
    instructor_name: str
    instructor_email: Email
    timezone: str = "UTC"
    calcom: CalcomMapping = CalcomMapping()
    tone: Tone = Tone()
    topics: list[Topic] = []
    assignments: list[Assignment] = []
    support: Support = Support()
    questions: list[Question] = []
    staff: list[StaffMember] = []

    def staff_emails(self) -> set[str]:
        """Who may open this course's intakes: the instructor and every ``[[staff]]`` entry (lower case)."""
        return {self.instructor_email.lower(), *(m.email.lower() for m in self.staff)}

    def staff_name(self, email: str) -> str:
        """The display name of one of the course's staff ("" when not one of them)."""
        email = email.lower()
        if email == self.instructor_email.lower():
            return self.instructor_name
        return next((m.name for m in self.staff if m.email.lower() == email), "")

    def topic(self, topic_id: str) -> Topic | None:
        return next((t for t in self.topics if t.id == topic_id), None)

    def assignment(self, assignment_id: str) -> Assignment | None:
        return next((a for a in self.assignments if a.id == assignment_id), None)


class CourseProblem(msgspec.Struct, frozen=True):
    """Why a course pack could not be loaded, in words a professor can act on."""

    slug: str
    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


class CoursePackError(ValueError):
    def __init__(self, problem: CourseProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class Catalog(msgspec.Struct, frozen=True):
    courses: dict[str, Course]
    problems: list[CourseProblem]

    def for_event_type(self, event_type_id: int | None, slug: str | None) -> Course | None:
        """The course a Cal.com event type belongs to (by id first, then by slug)."""
        for course in self.courses.values():
            if event_type_id is not None and event_type_id in course.calcom.event_type_ids:
                return course
        for course in self.courses.values():
            if slug and slug in course.calcom.event_type_slugs:
                return course
        return None

    def courses_staffed_by(self, email: str) -> list[str]:
        """The slugs of every course that lists ``email`` as instructor or staff (case-insensitive)."""
        email = email.strip().lower()
        return sorted(slug for slug, c in self.courses.items() if email and email in c.staff_emails())


def load_course(folder: Path) -> Course:
    """Parse and check one ``course.toml``; raise ``CoursePackError`` naming file and line."""
    toml_path = folder / "course.toml"
    if not toml_path.is_file():
        raise CoursePackError(CourseProblem(folder.name, str(toml_path), None, "course.toml is missing"))
    text = toml_path.read_text(encoding="utf-8", errors="replace")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None) or _line_from_message(str(exc))
        raise CoursePackError(CourseProblem(folder.name, str(toml_path), line, str(exc))) from None
    _dates_only(data)
    try:
        course = msgspec.convert(data, Course, strict=False)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at ")
        line = _line_of_field(text, where.strip("`"))
        raise CoursePackError(
            CourseProblem(folder.name, str(toml_path), line, f"{where.strip('`') or 'file'}: {message}")
        ) from None
    course = msgspec.structs.replace(course, slug=folder.name, path=str(folder))
    _check_references(course, text, toml_path)
    return course


def load_catalog(corpus_dir: Path) -> Catalog:
    """Every course under ``corpus_dir``; bad packs and event-type collisions become problems."""
    courses: dict[str, Course] = {}
    problems: list[CourseProblem] = []
    owners: dict[str, str] = {}
    for folder in sorted(p for p in corpus_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            course = load_course(folder)
        except CoursePackError as exc:
            problems.append(exc.problem)
            continue
        keys = [f"id {i}" for i in course.calcom.event_type_ids]
        keys += [f"slug {s}" for s in course.calcom.event_type_slugs]
        clash = next((k for k in keys if k in owners), None)
        if clash:
            problems.append(
                CourseProblem(
                    course.slug,
                    str(folder / "course.toml"),
                    None,
                    f"Cal.com event type {clash} is already used by course '{owners[clash]}'; "
                    "this course is not loaded until the collision is fixed",
                )
            )
            continue
        owners.update(dict.fromkeys(keys, course.slug))
        courses[course.slug] = course
    return Catalog(courses=courses, problems=problems)


def _dates_only(data: dict) -> None:
    """msgspec cannot decode a ``date | datetime`` union: keep the date of an RFC 3339 date-time due."""
    for item in data.get("assignments", []) if isinstance(data.get("assignments"), list) else []:
        due = item.get("due") if isinstance(item, dict) else None
        if isinstance(due, dt.datetime):
            item["due"] = due.date()
        elif isinstance(due, str) and "T" in due:
            with contextlib.suppress(ValueError):  # left as is: msgspec reports the bad value with its line
                item["due"] = dt.datetime.fromisoformat(due.replace("Z", "+00:00")).date()


def _check_references(course: Course, text: str, toml_path: Path) -> None:
    def fail(message: str, needle: str) -> None:
        raise CoursePackError(CourseProblem(course.slug, str(toml_path), _line_of(text, needle), message))

    if not course.calcom.event_type_ids and not course.calcom.event_type_slugs:
        fail("[calcom] needs at least one event_type_ids or event_type_slugs entry", "[calcom]")
    topic_ids = {t.id for t in course.topics}
    for assignment in course.assignments:
        for topic_id in assignment.topics:
            if topic_id not in topic_ids:
                fail(f"assignment '{assignment.id}' names unknown topic '{topic_id}'", f'"{topic_id}"')
        if assignment.file and not (Path(course.path) / assignment.file).is_file():
            fail(f"assignment '{assignment.id}': file '{assignment.file}' does not exist", assignment.file)
    assignment_ids = {a.id for a in course.assignments}
    for question in course.questions:
        for topic_id in question.topics:
            if topic_id not in topic_ids:
                fail(f"question '{question.id}' names unknown topic '{topic_id}'", f'"{topic_id}"')
        for assignment_id in question.assignments:
            if assignment_id not in assignment_ids:
                fail(
                    f"question '{question.id}' names unknown assignment '{assignment_id}'",
                    f'"{assignment_id}"',
                )


def _line_from_message(message: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None


def _line_of(text: str, needle: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    return None


def _line_of_field(text: str, where: str) -> int | None:
    """Best-effort line of ``$.assignments[2].due``: the n-th table, then the key inside it."""
    match = re.match(r"\$\.(\w+)(?:\[(\d+)\])?(?:\.(\w+))?", where)
    if not match:
        return None
    table, index, key = match.group(1), match.group(2), match.group(3)
    lines = text.splitlines()
    start = 0
    if index is not None:
        headers = [i for i, line in enumerate(lines) if line.strip() == f"[[{table}]]"]
        if int(index) < len(headers):
            start = headers[int(index)]
        key = key or None
    else:
        key = key or table
    for number in range(start, len(lines)):
        if key and re.match(rf"\s*{re.escape(key)}\s*=", lines[number]):
            return number + 1
    return start + 1 if index is not None else None
