"""The evaluation students and the three new course packs: enough of them, honest ground truth, every case."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from finetune.eval_students import (
    CASES,
    JUNK,
    STYLES,
    EvalSet,
    check_eval_set,
    course_questions,
    load_eval_set,
    ordered,
    select,
)
from finetune.matching import assignments_named
from services.coursepack import Catalog

NEW_COURSES = ("cs150", "chem110", "phil210")
SAMPLE_COURSES = {"stat200", "writ101"}
# Words that make distress easy to spot; the paraphrased messages must carry none of them.
CRISIS_WORDS = re.compile(
    r"suicid|kill|\bdie\b|\bdying\b|\bdead\b|self[- ]?harm|hopeless|crisis|end it|end my life|hurt myself|"
    r"can'?t go on|want to disappear forever",
    re.I,
)


@pytest.fixture(scope="module")
def eval_set() -> EvalSet:
    return load_eval_set()


def test_sixty_students_over_three_new_courses(eval_set: EvalSet, catalog: Catalog) -> None:
    """At least 60 students, at least 18 in each new course, none in the sample courses, every style."""
    per_course = Counter(s.course for s in eval_set.students)
    assert len(eval_set.students) >= 60
    assert all(per_course[c] >= 18 for c in NEW_COURSES), per_course
    assert not SAMPLE_COURSES & set(per_course)
    assert set(STYLES) == {s.style for s in eval_set.students}
    assert all(c in catalog.courses for c in NEW_COURSES) and not catalog.problems


def test_ground_truth_is_valid(eval_set: EvalSet, catalog: Catalog) -> None:
    """Topics and assignments exist in the pack, relevant files exist, key terms are the student's words."""
    assert check_eval_set(eval_set, catalog) == []


def test_the_check_catches_bad_truth(eval_set: EvalSet, catalog: Catalog) -> None:
    """A wrong topic, a missing file and a key term the student never said are each reported."""
    student = eval_set.student("cs-01")
    truth = msgspec.structs.replace(
        student.truth, topic="recursion", relevant_files=["notes/nope.md"], key_terms=["memoization"]
    )
    broken = msgspec.structs.replace(eval_set, students=[msgspec.structs.replace(student, truth=truth)])
    problems = check_eval_set(broken, catalog)
    assert any("unknown topic 'recursion'" in p for p in problems)
    assert any("notes/nope.md" in p for p in problems)
    assert any("'memoization'" in p for p in problems)


def test_every_hard_case_has_several_students(eval_set: EvalSet) -> None:
    """Each named case is played by at least three students, spread over the new courses."""
    for case in CASES:
        players = [s for s in eval_set.students if case in s.cases]
        assert len(players) >= 3, case
        assert len({s.course for s in players}) == 3, case


def test_two_assignments_named_and_the_right_one_is_not_the_last(eval_set: EvalSet, catalog: Catalog) -> None:
    """Two-assignment students name their own assignment and another one, and the other comes last."""
    for s in (s for s in eval_set.students if "two_assignments" in s.cases):
        course = catalog.courses[s.course]
        said = " ".join(
            s.answers[k] for k in ("issue", "assignment", "stuck_on", "attempts") if k in s.answers
        )
        named = assignments_named(said, course)
        assert s.truth.assignment in named and len(named) >= 2, (s.id, named)
        assert named[-1] != s.truth.assignment, (s.id, named)


def test_negation_students_name_no_assignment(eval_set: EvalSet) -> None:
    """'Not for an assignment' students have no assignment in the truth and say so in their answer."""
    for s in (s for s in eval_set.students if "negation" in s.cases):
        assert s.truth.assignment is None
        assert re.search(r"\b(?:not|no|none)\b", s.answers["assignment"], re.I), s.id


def test_distress_is_paraphrased(eval_set: EvalSet) -> None:
    """Distress students say it in other words (no crisis keywords), after their opening, and anxious
    students (the hard negatives) are not in distress."""
    distressed = [s for s in eval_set.students if s.truth.distress]
    assert len(distressed) >= 6
    for s in distressed:
        assert s.distress_text and not CRISIS_WORDS.search(s.distress_text), s.id
        assert all(i.turn >= 3 for i in s.inserts), s.id
    anxious = [s for s in eval_set.students if "anxious_not_crisis" in s.cases]
    assert anxious and not any(s.truth.distress for s in anxious)


def test_junk_injection_and_recap_cases_are_real(eval_set: EvalSet) -> None:
    """Junk inserts are junk (one is empty); injections are said mid-chat, inside an answer (the player
    puts them there); correcting students have something to correct; answer-seekers ask mid-chat."""
    junk = [i.text for s in eval_set.students if "junk" in s.cases for i in s.inserts]
    assert junk and all(t in JUNK for t in junk) and "" in junk
    for s in (s for s in eval_set.students if "injection" in s.cases):
        assert s.injection_turn >= 2 and not any(s.injection in a for a in s.answers.values()), s.id
    for s in (s for s in eval_set.students if "asks_answer" in s.cases):
        assert any(
            re.search(r"\b(?:just|tell|give|write|answer|calculate|for me)\b", i.text, re.I)
            for i in s.inserts
        ), s.id
    correcting = [s for s in eval_set.students if "recap_correction" in s.cases]
    assert any(s.correct_assignment for s in correcting) and any(s.correct_stuck_on for s in correcting)


def test_course_packs_follow_the_format(catalog: Catalog) -> None:
    """Each new pack: own event type, 6-9 topics, 5-7 assignments due 2026-11-15..2027-01-20 (some within a
    week of 2026-11-28) with their sheet, notes with sections, a common-errors folder, 1-2 must-asks."""
    ids: set[int] = set()
    for slug in NEW_COURSES:
        course = catalog.courses[slug]
        folder = Path(course.path)
        assert not ids & set(course.calcom.event_type_ids) and {3101, 4201}.isdisjoint(
            course.calcom.event_type_ids
        )
        ids |= set(course.calcom.event_type_ids)
        assert 6 <= len(course.topics) <= 9 and 5 <= len(course.assignments) <= 7
        dues = [a.due for a in course.assignments]
        assert all(d and dt.date(2026, 11, 15) <= d <= dt.date(2027, 1, 20) for d in dues), slug
        assert any(d and 0 <= (d - dt.date(2026, 11, 28)).days <= 7 for d in dues), slug
        assert all(a.file and (folder / a.file).is_file() for a in course.assignments), slug
        notes = list((folder / "notes").glob("*.md"))
        assert notes and all(re.search(r"^## ", n.read_text(), re.M) for n in notes), slug
        assert list((folder / "common-errors").glob("*.md")), slug
        materials = [p for p in folder.rglob("*") if p.is_file() and p.name != "course.toml"]
        assert 8 <= len(materials) <= 15, (slug, len(materials))
        questions = course_questions(course)
        assert 1 <= len(questions) <= 2, slug
        topic_ids, assignment_ids = {t.id for t in course.topics}, {a.id for a in course.assignments}
        for q in questions:
            assert set(q.topics) <= topic_ids and set(q.assignments) <= assignment_ids, (slug, q.id)


def test_runs_interleave_courses_and_select_by_id(eval_set: EvalSet) -> None:
    """A short run covers every course; --students picks exactly the named ones; unknown ids stop the run."""
    first = ordered(eval_set.students)[:3]
    assert {s.course for s in first} == set(NEW_COURSES)
    assert [s.id for s in select(eval_set, ["ph-03", "cs-01"], None)] == ["ph-03", "cs-01"]
    assert len(select(eval_set, None, 4)) == 4
    with pytest.raises(SystemExit, match="zz-99"):
        select(eval_set, ["zz-99"], None)
