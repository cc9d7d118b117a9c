"""The summary as text, HTML and the Cal.com notes block (pure functions, no I/O)."""

from __future__ import annotations

import msgspec

from services.gateway.delivery.render import (
    BLOCK_END,
    BLOCK_START,
    merge_description,
    summary_html,
    summary_text,
)
from services.gateway.intake.models import Booking, IntakeRecord, Person
from tests.gateway.delivery.harness import make_summary

NOTES = "Stuck on my thesis for essay 2"


def _summary(status: str = "complete", **changes: object):  # type: ignore[no-untyped-def]
    booking = Booking(
        uid="b7Yx2Lq9Kd1pQmRw3sT8vZ",
        start_time="2026-12-03T15:00:00Z",
        organizer=Person("Dr. Ana Rivera", "ana.rivera@univ.example.edu"),
        student=Person("Sam Lee", "sam.lee@student.example.edu"),
    )
    record = IntakeRecord(token="t", booking=booking, course_slug="writ101", created_at="", updated_at="")
    return msgspec.structs.replace(make_summary(record, status), **changes)


def test_block_is_appended_after_the_students_notes() -> None:
    """The student's own notes stay first and untouched; our block follows, delimited by markers."""
    merged = merge_description(NOTES, _summary())
    assert merged.startswith(NOTES + "\n\n" + BLOCK_START)
    assert merged.rstrip().endswith(BLOCK_END)


def test_redelivery_replaces_the_block_instead_of_duplicating_it() -> None:
    """Merging twice (or a newer summary) leaves exactly one block, holding the newest text."""
    once = merge_description(NOTES, _summary("partial"))
    twice = merge_description(once, _summary("complete", student_goal="A narrower thesis."))
    assert twice.count(BLOCK_START) == 1 and twice.count(BLOCK_END) == 1
    assert "A narrower thesis." in twice and "Partial intake" not in twice
    assert twice.startswith(NOTES)
    assert merge_description(twice, _summary("complete", student_goal="A narrower thesis.")) == twice


def test_text_around_the_block_is_kept() -> None:
    """Whatever the organizer wrote after our block survives a re-delivery."""
    first = merge_description(NOTES, _summary()) + "\n\nOrganizer: moved to room 301."
    again = merge_description(first, _summary())
    assert again.endswith("Organizer: moved to room 301.") and again.startswith(NOTES)


def test_empty_description_gets_just_the_block() -> None:
    assert merge_description(None, _summary()).startswith(BLOCK_START)
    assert merge_description("  ", _summary()).startswith(BLOCK_START)


def test_text_and_html_carry_the_fields_and_escape_student_text() -> None:
    """Both bodies show the actionable fields; student-written text cannot inject HTML."""
    summary = _summary(issue_description="Uses <script>alert(1)</script> in the intro & conclusion.")
    text, page = summary_text(summary), summary_html(summary)
    for needle in ("thesis-statements", "essay-2", "Bring the essay 2 sheet", "Difficulty: 3/5"):
        assert needle in text
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "Bring the essay 2 sheet" in page
