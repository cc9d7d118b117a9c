"""The embedding reader on a real course pack (the shipped MiniLM weights, no model server)."""

from __future__ import annotations

from pathlib import Path

import msgspec

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


def test_a_topic_is_also_known_by_the_sections_of_its_notes(tmp_path: Path) -> None:
    """A stuck point in the course's own words ("90.0 must be an A") matches the topic whose notes file
    says it, though the words are in no topic's title or keywords; without the notes it would not."""
    pack = _programming_pack(tmp_path)
    (pack / "notes" / "branching.md").write_text(
        "# Branching\n\n## Boundary values\n\nWhen a grade of exactly 90.0 must be an A but comes out as a "
        "B, the comparison is wrong at the boundary: `score >= 90` includes 90, `score > 90` does not. "
        "Check the largest cut-off first and test the boundary values themselves.\n"
    )
    course = load_catalog(tmp_path).courses["prog101"]
    seen = EmbeddingReader().similarity(course, "letter grade test: expected A for 90.0 but got B")
    assert max(seen.topics, key=lambda t: seen.topics[t]) == "branching", seen.topics
    without = EmbeddingReader().similarity(
        msgspec.structs.replace(course, path=str(tmp_path / "missing")),
        "letter grade test: expected A for 90.0 but got B",
    )
    assert max(without.topics, key=lambda t: without.topics[t]) == "testing", without.topics


def test_an_edited_notes_file_refreshes_the_course_map(tmp_path: Path) -> None:
    """A professor who adds a section to a notes file sees the running gateway use it on the next message
    (the map is keyed on the course's files too), and the old map is not kept beside the new one."""
    pack = _programming_pack(tmp_path)
    notes = pack / "notes" / "branching.md"
    notes.write_text("# Branching\n\n## Chains\n\nAn elif chain checks each condition in order, top down.\n")
    course = load_catalog(tmp_path).courses["prog101"]
    reader = EmbeddingReader()
    said = "letter grade test: expected A for 90.0 but got B"
    before = reader.similarity(course, said)
    notes.write_text(
        notes.read_text() + "\n## Boundary values\n\nWhen a grade of exactly 90.0 must be an A but comes out "
        "as a B, the comparison is wrong at the boundary: `score >= 90` includes 90, `score > 90` does not. "
        "Check the largest cut-off first and test the boundary values themselves.\n"
    )
    after = reader.similarity(course, said)
    assert after.topics["branching"] > before.topics["branching"] + 0.1, (before.topics, after.topics)
    assert len(reader._maps) == 1


def _programming_pack(root: Path) -> Path:
    """A two-topic pack whose topics' keywords say nothing of grade boundaries; notes are up to the test."""
    pack = root / "prog101"
    (pack / "notes").mkdir(parents=True)
    (pack / "course.toml").write_text(
        'code = "PROG 101"\ntitle = "Programming"\ninstructor_name = "Dr. A"\n'
        'instructor_email = "a@univ.example.edu"\ntimezone = "UTC"\n'
        '[calcom]\nevent_type_ids = [1]\n[tone]\nnotes = "Plain."\n'
        '[[topics]]\nid = "branching"\ntitle = "Branching"\nkeywords = ["elif"]\n'
        '[[topics]]\nid = "testing"\ntitle = "Testing and the autograder"\n'
        'keywords = ["test", "autograder", "expected output"]\n'
    )
    return pack
