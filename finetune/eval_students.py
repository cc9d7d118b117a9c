"""The evaluation's simulated students (``eval_students.toml``): typed, checked against the course packs.

Unlike the training personas (``personas.py``), these are written by hand, one by one, for course packs the
interviewer was never tuned on, and each one exercises named hard cases (two assignments in one
conversation, negation, paraphrased distress, junk answers, an injection inside a normal answer, a recap
correction, a request for the answer). ``check_eval_set`` keeps the ground truth honest: every topic,
assignment and file exists in the pack and every key term is something the student actually says.
"""

from __future__ import annotations

import re
import tomllib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal, get_args

import msgspec
from msgspec import Meta

from finetune.matching import term_present
from services.coursepack import Catalog, Course
from services.gateway.intake.models import RequestType

EVAL_STUDENTS_PATH = Path(__file__).with_name("eval_students.toml")

Style = Literal["terse", "rambling", "texting", "non_native", "code_switching", "anxious", "plain"]
STYLES: tuple[Style, ...] = (
    "terse",
    "rambling",
    "texting",
    "non_native",
    "code_switching",
    "anxious",
    "plain",
)
Case = Literal[
    "two_assignments",
    "negation",
    "distress",
    "junk",
    "injection",
    "recap_correction",
    "asks_answer",
    "anxious_not_crisis",
]
CASES: tuple[Case, ...] = get_args(Case)
# The interview slots a student has scripted answers for; a course's [[questions]] ids come on top.
SLOTS = ("issue", "assignment", "stuck_on", "attempts", "goal", "deadline", "example", "anything_else")
REQUIRED_ANSWERS = ("issue", "assignment", "stuck_on", "attempts", "goal")
JUNK = frozenset({"", "idk", "asdf", "asdfgh", "?", ".", "..."})


class Insert(msgspec.Struct, frozen=True):
    """At student turn ``turn`` (1 = the opening message) say ``text`` instead of the answer, or after it."""

    turn: Annotated[int, Meta(ge=1)]
    text: str
    mode: Literal["replace", "append", "inside"] = "replace"  # inside: after the answer's first sentence


class EvalTruth(msgspec.Struct, frozen=True, kw_only=True):
    """What the professor's summary of this intake should say."""

    topic: str
    assignment: str | None  # None: not for an assignment
    request_type: RequestType
    distress: bool = False
    key_terms: Annotated[list[str], Meta(min_length=1, max_length=4)]
    relevant_files: Annotated[list[str], Meta(min_length=1)]


class EvalStudent(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    course: str  # course-pack folder
    name: str
    style: Style
    cases: list[Case] = []
    notes: str = ""  # Cal.com additionalNotes
    answers: dict[str, str]
    inserts: list[Insert] = []
    injection: str = ""  # a prompt injection, slipped into the middle of the answer at ``injection_turn``
    injection_turn: Annotated[int, Meta(ge=2)] = 2
    correct_assignment: bool = False  # at the recap, corrects a wrong assignment
    correct_stuck_on: str = ""  # at the recap, says what the stuck point really is
    truth: EvalTruth

    @property
    def email(self) -> str:
        local = re.sub(r"[^a-z]+", ".", self.name.lower()).strip(".")
        return f"{local}.{self.id}@student.example.edu"

    @property
    def distress_text(self) -> str:
        """The student's distress message (an insert), or empty for a student not in distress."""
        return next((i.text for i in self.inserts if self.truth.distress), "")

    def own_words(self) -> str:
        """Everything the student may say: answers, inserts, booking notes and the recap correction."""
        return "\n".join(
            [
                *self.answers.values(),
                *(i.text for i in self.turn_inserts()),
                self.notes,
                self.correct_stuck_on,
            ]
        )

    def turn_inserts(self) -> list[Insert]:
        """The inserts with the injection among them (said inside the answer of its turn)."""
        injected = [Insert(self.injection_turn, self.injection, "inside")] if self.injection else []
        return [*self.inserts, *injected]


class EvalSet(msgspec.Struct, frozen=True, kw_only=True):
    seed: int
    question_cues: dict[str, list[str]] = {}
    students: list[EvalStudent]

    def student(self, student_id: str) -> EvalStudent:
        return next(s for s in self.students if s.id == student_id)


class CourseQuestion(msgspec.Struct, frozen=True, kw_only=True):
    """A course's own must-ask question (``[[questions]]`` in course.toml)."""

    id: str
    ask: str
    topics: list[str] = []
    assignments: list[str] = []


def load_eval_set(path: Path = EVAL_STUDENTS_PATH) -> EvalSet:
    """The TOML as typed data; ``truth.assignment = ""`` (TOML has no null) becomes None."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    for student in data.get("students", []):
        truth = student.get("truth", {})
        if truth.get("assignment") == "":
            truth["assignment"] = None
    return msgspec.convert(data, EvalSet)


def course_questions(course: Course) -> list[CourseQuestion]:
    """The course's ``[[questions]]``: from the loaded Course, or read from its course.toml by an older
    loader that does not know them yet."""
    if hasattr(course, "questions"):
        return msgspec.convert(msgspec.to_builtins(course.questions), list[CourseQuestion])
    path = Path(course.path) / "course.toml"
    if not path.is_file():
        return []
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return msgspec.convert(data.get("questions", []), list[CourseQuestion])


def check_eval_set(eval_set: EvalSet, catalog: Catalog) -> list[str]:
    """Everything wrong with the set, one readable line each (empty: the ground truth is usable)."""
    problems: list[str] = []
    seen: set[str] = set()
    for s in eval_set.students:
        if s.id in seen:
            problems.append(f"{s.id}: duplicate id")
        seen.add(s.id)
        course = catalog.courses.get(s.course)
        if course is None:
            problems.append(f"{s.id}: no course pack {s.course!r}")
            continue
        problems += [f"{s.id}: {p}" for p in _student_problems(s, course)]
    return problems


def _student_problems(s: EvalStudent, course: Course) -> list[str]:
    truth, problems = s.truth, []
    if course.topic(truth.topic) is None:
        problems.append(f"unknown topic {truth.topic!r}")
    if truth.assignment is not None and course.assignment(truth.assignment) is None:
        problems.append(f"unknown assignment {truth.assignment!r}")
    missing_files = [f for f in truth.relevant_files if not (Path(course.path) / f).is_file()]
    problems += [f"relevant file not in the pack: {f}" for f in missing_files]
    problems += [f"no answer for {slot!r}" for slot in REQUIRED_ANSWERS if not s.answers.get(slot)]
    allowed = set(SLOTS) | {q.id for q in course_questions(course)}
    problems += [f"answer for unknown slot {k!r}" for k in s.answers if k not in allowed]
    said = s.own_words()
    problems += [f"key term never said: {t!r}" for t in truth.key_terms if not term_present(t, said)]
    turns = [i.turn for i in s.turn_inserts()]
    if len(turns) != len(set(turns)):
        problems.append("two inserts on one turn")
    if ("injection" in s.cases) != bool(s.injection):
        problems.append("'injection' case and injection text go together")
    if ("distress" in s.cases) != truth.distress or (truth.distress and not s.inserts):
        problems.append("'distress' case, truth.distress and a distress insert go together")
    if ("recap_correction" in s.cases) != (s.correct_assignment or bool(s.correct_stuck_on)):
        problems.append("'recap_correction' case needs correct_assignment or correct_stuck_on")
    if ("negation" in s.cases) != (truth.assignment is None):
        problems.append("'negation' students (only) have no assignment")
    return problems


def ordered(students: Sequence[EvalStudent]) -> list[EvalStudent]:
    """Courses interleaved (file order within a course), so a short ``--limit`` run covers every course."""
    by_course: dict[str, list[EvalStudent]] = defaultdict(list)
    for s in students:
        by_course[s.course].append(s)
    queues = list(by_course.values())
    result: list[EvalStudent] = []
    while any(queues):
        for queue in queues:
            if queue:
                result.append(queue.pop(0))
    return result


def select(eval_set: EvalSet, ids: Sequence[str] | None, limit: int | None) -> list[EvalStudent]:
    """The students a run plays: the named ones (in that order) or all interleaved, at most ``limit``."""
    if ids:
        known = {s.id: s for s in eval_set.students}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise SystemExit(f"unknown student ids: {unknown}")
        chosen = [known[i] for i in ids]
    else:
        chosen = ordered(eval_set.students)
    return chosen[:limit] if limit else chosen
