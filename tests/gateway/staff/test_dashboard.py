"""What the dashboard and the intake page say, without I/O: who needs attention, the order, the filters,
and a summary in words (titles and labels, never the course pack's ids or the schema's codes)."""

from __future__ import annotations

import datetime as dt

import msgspec

from services.gateway.intake.models import Booking, Flags, IntakeRecord, Person, Section, Summary
from services.gateway.staff import dashboard
from tests.gateway.intake.scripted import make_course

NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)


def _record(name: str, start: str, **fields: object) -> IntakeRecord:
    booking = Booking(
        uid="bk-" + name,
        start_time=start,
        organizer=Person("Lee Okafor", "okafor@example.edu"),
        student=Person(name, f"{name}@example.edu"),
    )
    return IntakeRecord(
        token="tok-" + name,
        booking=booking,
        course_slug="stat150",
        created_at="2026-03-01T00:00:00Z",
        updated_at="2026-03-01T00:00:00Z",
        **fields,  # type: ignore[arg-type]
    )


def _row(record: IntakeRecord, failed: set[str] | None = None) -> dashboard.DashboardRow:
    return dashboard.row(
        record, make_course(), staff_id="s-" + record.token, max_turns=8, failed=failed or set(), now=NOW
    )


def test_attention_first_then_upcoming_soonest_then_past_most_recent() -> None:
    """Each group has its own order; needing attention wins over the date."""
    rows = [
        _row(_record("past-old", "2026-02-20T10:00:00Z")),
        _row(_record("later", "2026-03-09T10:00:00Z")),
        _row(_record("flagged", "2026-03-20T10:00:00Z", status="escalated")),
        _row(_record("past-recent", "2026-03-01T10:00:00Z")),
        _row(_record("soon", "2026-03-03T10:00:00Z")),
    ]
    names = [r.student_name for r in dashboard.ordered(rows)]
    assert names == ["flagged", "soon", "later", "past-recent", "past-old"]


def test_what_needs_attention_and_when_it_stops() -> None:
    """Escalation, a request for a person, a take-over and a dead job need a person; acknowledging the
    flags clears them (a take-over and a failed delivery stay until they are over)."""
    person = _record("p", "2026-03-03T10:00:00Z", status="active")
    person.interview.flags = Flags(escalated_to_human=True)
    assert dashboard.needs(person) == ["person"]
    person.taken_over = True
    assert dashboard.needs(person, {"tok-p"}) == ["person", "taken_over", "failed_delivery"]
    person.acknowledged_at = "2026-03-02T12:00:00Z"
    assert dashboard.needs(person) == ["taken_over"]
    done = _record("d", "2026-03-03T10:00:00Z", status="escalated")
    done.interview.flags = Flags(distress=True, escalated_to_human=True)
    assert dashboard.needs(done) == ["escalated"]
    assert dashboard.needs(_record("c", "2026-03-03T10:00:00Z", status="cancelled", taken_over=True)) == []


def test_filters_by_course_and_status() -> None:
    flagged = _row(_record("f", "2026-03-03T10:00:00Z", status="escalated"))
    plain = _row(_record("q", "2026-03-03T10:00:00Z"))
    assert dashboard.matches(flagged, "stat150", "attention") and not dashboard.matches(
        plain, None, "attention"
    )
    assert dashboard.matches(plain, None, "invited") and not dashboard.matches(plain, "phil210", None)


def test_rows_use_titles_and_the_courses_time_zone() -> None:
    course = msgspec.structs.replace(make_course(), timezone="America/New_York")
    record = _record("t", "2026-03-03T15:00:00Z")
    record.interview.facts.topic, record.interview.facts.assignment = "hypothesis-testing", "ps3"
    row = dashboard.row(record, course, staff_id="s", max_turns=8, now=NOW)
    assert (row.topic, row.assignment) == (
        "Hypothesis testing and p-values",
        "Problem Set 3: Hypothesis Tests",
    )
    assert row.meeting_time == "Tue 3 Mar, 10:00 EST" and row.status_label == "Not started"


def test_the_summary_reads_in_words_with_the_matched_section() -> None:
    """No raw codes (``ps3``, ``draft_feedback``, a bare difficulty number) in the labelled summary."""
    record = _record("s", "2026-03-03T15:00:00Z", status="complete")
    record.interview.facts.section = Section(
        source="notes/p-values.md", title="P-values", heading="Reading a p-value"
    )
    record.summary = Summary(
        booking_uid="bk-s",
        course="STAT 150",
        student=record.booking.student,
        appointment_start=record.booking.start_time,
        status="complete",
        topic="hypothesis-testing",
        assignment="ps3",
        request_type="draft_feedback",
        issue_description="Unsure when to reject the null.",
        student_attempts="Re-read the slides.",
        student_goal="Interpret p-values.",
        difficulty=2,
        urgency="high",
        professor_prep_note="Bring a worked t-test example.",
    )
    view = dashboard.summary_view(record, make_course())
    assert view is not None and view.final
    text = " ".join(f"{f.label}: {f.value}" for f in view.fields)
    assert "Problem Set 3: Hypothesis Tests" in text and "Feedback on a draft" in text
    assert "Fairly easy (2 of 5)" in text and "Due very soon" in text
    assert "ps3" not in text and "draft_feedback" not in text and "hypothesis-testing" not in text
    assert view.sections[0].title == "P-values" and view.sections[0].section == "Reading a p-value"
    assert dashboard.summary_view(_record("n", "2026-03-03T15:00:00Z"), make_course()) is None
