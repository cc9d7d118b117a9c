"""Summary v1 from facts (always valid) and the repair of model drafts (never trusted blindly)."""

from __future__ import annotations

import msgspec
import pytest

from services.gateway.intake import summary
from services.gateway.intake.models import ChatMessage, Facts, Flags, InterviewState, Summary
from tests.gateway.intake.scripted import make_booking, make_course


def _valid(s: Summary) -> Summary:
    """Round-trip through JSON with the schema's constraints, as the delivery worker would."""
    return msgspec.json.decode(msgspec.json.encode(s), type=Summary)


def _state(**facts: str) -> InterviewState:
    state = InterviewState(facts=Facts(**facts))  # type: ignore[arg-type]
    state.messages = [
        ChatMessage("assistant", "What would you like help with?"),
        ChatMessage("student", "p-values on ps3, I read the notes and want to understand the rule"),
    ]
    state.context_sources = ["notes/regression.md", "assignments/ps3.md", "notes/p-values.md"]
    return state


@pytest.mark.parametrize("status", ["complete", "partial", "no_intake", "escalated"])
def test_facts_summary_is_valid_for_every_status_even_when_nothing_is_known(status: str) -> None:
    """An empty interview still gives a schema-valid summary (topic "other", assignment null)."""
    s = _valid(summary.build_summary(InterviewState(), make_course(), make_booking(), status, "http://t"))  # type: ignore[arg-type]
    assert s.topic == "other" and s.assignment is None and 1 <= s.difficulty <= 5
    assert s.status == status and s.turns == 0 and s.transcript_url == "http://t"


def test_facts_summary_uses_course_ids_the_students_words_and_retrieved_materials() -> None:
    """Structured fields are course ids; the prep note is actionable; materials are the retrieved sources."""
    state = _state(
        topic="hypothesis-testing",
        assignment="ps3",
        request_type="assignment",
        stuck_on="I don't get when to reject the null.",
        attempts="Read the notes.",
        goal="Understand the rule.",
    )
    s = _valid(summary.build_summary(state, make_course(), make_booking(), "complete", ""))
    assert (s.topic, s.assignment, s.request_type, s.urgency) == (
        "hypothesis-testing",
        "ps3",
        "assignment",
        "high",
    )
    assert "reject the null" in s.issue_description and 2 <= len(s.issue_description.split(". ")) <= 4
    assert "Problem Set 3" in s.professor_prep_note and "assignments/ps3.md" in s.professor_prep_note
    assert [m.source for m in s.suggested_materials] == ["assignments/ps3.md", "notes/p-values.md"]
    assert s.suggested_materials[0].title == "Problem Set 3: Hypothesis Tests"
    assert s.student_attempts == "Read the notes." and s.turns == 1


def test_unknown_ids_never_reach_the_summary() -> None:
    """A topic or assignment id that is not in the course pack becomes "other" / null."""
    s = summary.build_summary(
        _state(topic="made-up", assignment="ps99"), make_course(), make_booking(), "partial", ""
    )
    assert s.topic == "other" and s.assignment is None


def test_escalated_summary_flags_distress_and_says_what_to_do() -> None:
    """Distress is flagged, escalated_to_human set, and the prep note suggests checking in first."""
    state = _state()
    state.flags = Flags(distress=True)
    s = summary.build_summary(state, make_course(), make_booking(), "escalated", "")
    assert s.flags.distress and s.flags.escalated_to_human
    assert "distress" in s.professor_prep_note


def test_very_long_answers_are_cut_to_the_schema_limits() -> None:
    """Rambling answers cannot break max_length constraints."""
    state = _state(stuck_on="word " * 2000, attempts="tried " * 2000, goal="goal " * 2000)
    _valid(summary.build_summary(state, make_course(), make_booking(), "complete", ""))


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ('Sure! Here it is: {"student_goal": "x"} hope that helps', True),
        ('```json\n{"issue_description": "a {b} c"}\n```', True),
        ('{"broken": ', False),
        ("no json at all", False),
        ('{"a": "1"} and {"b": 2}', True),
    ],
)
def test_extract_json_finds_the_first_object_in_prose(text: str, ok: bool) -> None:
    """Small models wrap JSON in prose and fences; the first balanced object is used, else nothing."""
    assert (summary.extract_json(text) is not None) == ok


def test_drafts_are_used_only_when_grounded_in_what_the_student_said() -> None:
    """A hallucinated field is rejected; a grounded one is accepted and merged in."""
    state = _state(topic="hypothesis-testing", assignment="ps3")
    evidence = summary.evidence_text(state, make_course(), make_booking())
    draft = summary.parse_draft(
        '{"issue_description": "Mina is confused about p-values on ps3. She wants to understand the rule.",'
        ' "student_attempts": "She baked bread and flew to Paris with her cat.",'
        ' "student_goal": "Understand the rule for p-values.",'
        ' "professor_prep_note": "The answer is 0.05."}'
    )
    bad = summary.bad_fields(draft, evidence, system_prompt="")
    assert bad == ["student_attempts", "professor_prep_note"]
    base = summary.build_summary(state, make_course(), make_booking(), "complete", "")
    merged = _valid(summary.merge(base, draft, ["issue_description", "student_goal"]))
    assert merged.issue_description.startswith("Mina is confused about p-values")
    assert merged.student_attempts == base.student_attempts


def test_parse_draft_never_raises_on_junk() -> None:
    """Wrong types, unknown keys and garbage give an empty draft (every field then falls back)."""
    for junk in ('{"issue_description": ["x"]}', '{"x": 1}', "}{", ""):
        assert summary.parse_draft(junk) == summary.DraftText()
