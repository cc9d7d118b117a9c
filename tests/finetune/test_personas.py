"""Personas: deterministic, balanced across styles, ground truth that names real course ids."""

from __future__ import annotations

from collections import Counter

from finetune.personas import STYLES, Matrix, build_personas, urgency_for
from services.coursepack import Catalog


def test_same_seed_same_personas(catalog: Catalog, matrix: Matrix) -> None:
    """The persona list is a pure function of the matrix and the course packs (the eval relies on it)."""
    assert build_personas(catalog, matrix, 40) == build_personas(catalog, matrix, 40)


def test_every_style_equally_represented(catalog: Catalog, matrix: Matrix) -> None:
    """Styles are drawn round-robin, so per-style results compare like with like."""
    counts = Counter(p.style for p in build_personas(catalog, matrix, 80))
    assert set(counts) == set(STYLES)
    assert max(counts.values()) - min(counts.values()) <= 1


def test_ground_truth_names_real_course_ids(catalog: Catalog, matrix: Matrix) -> None:
    """Topic and assignment ids come from the course pack; distress personas expect an escalation."""
    for persona in build_personas(catalog, matrix):
        course = catalog.courses[persona.course_slug]
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
