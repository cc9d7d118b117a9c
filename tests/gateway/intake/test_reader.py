"""The embedding reader on a real course pack (the shipped MiniLM weights, no model server)."""

from __future__ import annotations

from pathlib import Path

from services.coursepack import load_catalog
from services.gateway.intake.reader import EmbeddingReader

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "corpus"


def test_similarity_ranks_a_course_whose_topics_carry_keywords() -> None:
    """Topics and assignments hold lists (keywords): the course map is still built, cached, and the stuck
    point about limiting reagents is closest to the stoichiometry topic and the lab-3 assignment."""
    course = load_catalog(CORPUS).courses["chem110"]
    assert course.topics[0].keywords  # the case that once raised TypeError: unhashable type: 'list'
    reader = EmbeddingReader()
    seen = reader.similarity(course, "I can't find the limiting reagent in my lab data")
    assert max(seen.topics, key=lambda t: seen.topics[t]) == "stoichiometry"
    assert max(seen.assignments, key=lambda a: seen.assignments[a]) == "lab-3"
    reader.similarity(course, "gas pressure")
    assert len(reader._maps) == 1
