"""Personas: deterministic, balanced across styles, ground truth that names real course ids."""

from __future__ import annotations

from collections import Counter

import msgspec
import pytest

from finetune.personas import HELD_OUT, STYLES, Matrix, build_personas, urgency_for
from finetune.retrieval import LocalRetriever
from finetune.skeletons import Skeleton, course_of, load_skeletons, passages_of
from services.coursepack import Catalog


def test_same_seed_same_personas(catalog: Catalog, matrix: Matrix) -> None:
    """The persona list is a pure function of the matrix and the course packs (the eval relies on it)."""
    assert build_personas(catalog, matrix, 40) == build_personas(catalog, matrix, 40)


def test_every_style_equally_represented(catalog: Catalog, matrix: Matrix) -> None:
    """Styles are drawn round-robin, so per-style results compare like with like."""
    counts = Counter(p.style for p in build_personas(catalog, matrix, 80))
    assert set(counts) == set(STYLES)
    assert max(counts.values()) - min(counts.values()) <= 1


def test_ground_truth_names_real_course_ids(training: Catalog, matrix: Matrix) -> None:
    """Topic and assignment ids come from the persona's own course; distress personas expect an escalation."""
    for persona in build_personas(training, matrix):
        course = training.courses[persona.course_slug]
        assert persona.course_code == course.code
        assert course.topic(persona.truth.topic) is not None
        assert persona.truth.assignment is None or course.assignment(persona.truth.assignment) is not None
        assert (
            (persona.truth.status == "escalated") == (persona.style == "distress") == persona.truth.distress
        )


def test_urgency_follows_the_gateway_thresholds() -> None:
    """Up to 2 days (or just overdue) is high, up to a week medium, else or unknown low."""
    assert [urgency_for(d) for d in (None, -10, -3, 0, 2, 3, 7, 8)] == [
        "low",
        "low",
        "high",
        "high",
        "high",
        "medium",
        "medium",
        "low",
    ]


def test_held_out_course_never_reaches_training(catalog: Catalog, training: Catalog, matrix: Matrix) -> None:
    """corpus/phil210 is the evaluation's unseen course: it is a loadable pack, but no training course,
    persona or retrieved passage comes from it (generate, curate and split all build on these)."""
    assert "phil210" in HELD_OUT and "phil210" in catalog.courses
    assert not set(training.courses) & HELD_OUT
    personas = build_personas(training, matrix)
    assert not {p.course_slug for p in personas} & HELD_OUT
    assert not {p.course_slug for p in build_personas(catalog, matrix, 40)} & HELD_OUT
    assert LocalRetriever(training).retrieve("phil210", "utilitarianism essay argument", 3) == []


def test_training_courses_are_the_packs_plus_many_skeletons(catalog: Catalog, training: Catalog) -> None:
    """stat200, writ101, cs150 and chem110 plus at least 8 synthetic subjects, each a valid course with
    topics, assignments with due dates that name known topics, and passages for the retriever."""
    assert {"stat200", "writ101", "cs150", "chem110"} <= set(training.courses)
    skeletons = load_skeletons()
    assert len(skeletons) >= 8
    for skeleton in skeletons:
        course = training.courses[skeleton.slug]
        assert course.topics and course.assignments
        assert all(a.due_date and set(a.topics) <= {t.id for t in course.topics} for a in course.assignments)
        sources = {p.source for p in passages_of(skeleton)}
        assert {f"assignments/{a.id}.md" for a in course.assignments} <= sources
        assert LocalRetriever(training).retrieve(skeleton.slug, course.topics[0].keywords[0], 3)


def test_personas_cover_every_training_course(training: Catalog, matrix: Matrix) -> None:
    """Courses are drawn round-robin, so every subject gets students (and their facts) of its own."""
    personas = build_personas(training, matrix)
    assert {p.course_slug for p in personas} == set(training.courses)


def test_a_skeleton_with_an_unknown_topic_is_refused() -> None:
    """A typo in courses.toml fails loudly instead of producing personas with dangling ids."""
    good = load_skeletons()[0]
    bad = Skeleton(
        slug="bad",
        code="BAD 1",
        title="Bad",
        instructor_name="Dr. X Y",
        topics=good.topics,
        assignments=[msgspec.structs.replace(good.assignments[0], topics=["no-such-topic"])],
    )
    with pytest.raises(ValueError, match="no-such-topic"):
        course_of(bad)
