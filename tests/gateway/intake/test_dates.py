"""Dates: deadlines named in student text, and urgency against the appointment."""

from __future__ import annotations

import pytest

from services.gateway.intake import dates
from services.gateway.intake.models import Facts
from tests.gateway.intake.scripted import TODAY, make_booking, make_course


@pytest.mark.parametrize(
    ("text", "answering", "expected"),
    [
        ("it is due friday", False, "2026-03-06"),
        ("the deadline is tomorrow", False, "2026-03-03"),
        ("due Oct 30", False, "2026-10-30"),
        ("I have to submit it by 3/10", False, "2026-03-10"),
        ("due in 3 days", False, "2026-03-05"),
        ("next week", True, "2026-03-09"),
        ("I talked to my friend on friday", False, None),
        ("not sure", True, None),
    ],
)
def test_deadline_is_read_only_where_a_deadline_is_talked_about(
    text: str, answering: bool, expected: str | None
) -> None:
    """Dates become ISO deadlines when the sentence is about a deadline (or answers the deadline question)."""
    assert dates.extract_deadline(text, TODAY, answering) == expected


def test_urgency_compares_the_deadline_with_the_appointment() -> None:
    """Due within 2 days of the meeting is high, within a week medium, otherwise (or unknown) low."""
    course, booking = make_course(), make_booking(start="2026-03-05T15:00:00Z")
    assert dates.urgency(Facts(assignment="ps3"), course, booking) == "high"  # due 03-06
    assert dates.urgency(Facts(deadline="2026-03-10"), course, booking) == "medium"
    assert dates.urgency(Facts(assignment="ps4"), course, booking) == "low"
    assert dates.urgency(Facts(), course, booking) == "low"
