"""What the staff dashboard and intake page show, in words a professor reads on a phone. No I/O.

The list is grouped: intakes that need a person (escalated, a distress signal or a request for a person
not yet acknowledged, a chat staff have taken over, a delivery that failed), then upcoming meetings soonest
first, then past meetings most recent first. Rows and the intake page carry titles and labels, never the
course pack's ids or the summary's codes; times are in the course's time zone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from services.coursepack import Course
from services.gateway.intake.models import Facts, IntakeRecord, IntakeStatus, SuggestedMaterial, Summary
from services.gateway.intake.store import parse_time

Group = Literal["attention", "upcoming", "past"]
Attention = Literal["escalated", "distress", "person", "taken_over", "failed_delivery"]
GROUP_TITLES: dict[Group, str] = {
    "attention": "Needs attention",
    "upcoming": "Upcoming meetings",
    "past": "Past meetings",
}
STATUS_LABELS: dict[str, str] = {
    "invited": "Not started",
    "active": "In progress",
    "complete": "Complete",
    "partial": "Partial (did not finish)",
    "escalated": "Escalated",
    "cancelled": "Cancelled",
    "no_intake": "No intake",
}
ATTENTION_LABELS: dict[Attention, str] = {
    "escalated": "Escalated",
    "distress": "Distress signal",
    "person": "Asked for a person",
    "taken_over": "Staff answering",
    "failed_delivery": "Delivery failed",
}
REQUEST_LABELS: dict[str, str] = {
    "concept": "Understanding a concept",
    "assignment": "Help with an assignment",
    "exam_prep": "Exam preparation",
    "grade": "A question about a grade",
    "draft_feedback": "Feedback on a draft",
    "logistics": "Logistics (deadlines, absences, enrolment)",
    "other": "Something else",
}
DIFFICULTY_LABELS = {1: "Quick question", 2: "Fairly easy", 3: "Moderate", 4: "Hard", 5: "Very hard"}
URGENCY_LABELS = {"low": "Not urgent", "medium": "Due within a week or so", "high": "Due very soon"}
# the status filter: a record status, or "attention" for the whole first group
STATUS_FILTERS = ("attention", "invited", "active", "complete", "partial", "escalated", "cancelled")


class DashboardRow(msgspec.Struct, frozen=True, kw_only=True):
    """One intake in the staff list: enough to decide whether to open it, no transcript text."""

    staff_id: str  # what the staff link carries (never the student's token)
    group: Group
    attention: list[Attention]
    attention_labels: list[str]
    course: str  # the course's slug (the filter's value)
    course_code: str
    student_name: str
    appointment_start: str  # RFC 3339
    meeting_time: str  # in the course's time zone, e.g. "Tue 3 Dec, 10:00 EST"
    status: IntakeStatus
    status_label: str
    topic: str | None  # titles, not ids
    assignment: str | None
    turn: int
    max_turns: int
    taken_over: bool
    updated_at: str


class Field(msgspec.Struct, frozen=True):
    label: str
    value: str


class MatchedSection(msgspec.Struct, frozen=True, kw_only=True):
    """A part of the course materials the student's words matched, as a professor would look it up."""

    title: str
    section: str | None = None
    source: str
    why: str = ""


class SummaryView(msgspec.Struct, frozen=True, kw_only=True):
    """The intake page's first card: the summary (or what is known so far) with labels and titles."""

    final: bool  # a delivered-kind summary exists; False: facts gathered so far in a running chat
    headline: str
    fields: list[Field]
    sections: list[MatchedSection]
    flags: list[str]


def needs(
    record: IntakeRecord, failed: Collection[str] = (), *, acknowledged: bool | None = None
) -> list[Attention]:
    """Why an intake needs a person right now (empty: it does not). ``failed``: tokens with a dead job."""
    ack = record.acknowledged_at is not None if acknowledged is None else acknowledged
    flags = record.interview.flags
    out: list[Attention] = []
    if record.status == "cancelled":
        return out
    if record.status == "escalated" and not ack:
        out.append("escalated")
    if flags.distress and not ack and "escalated" not in out:
        out.append("distress")
    if flags.escalated_to_human and not flags.distress and not ack:
        out.append("person")
    if record.taken_over and record.status in ("invited", "active"):
        out.append("taken_over")
    if record.token in failed:
        out.append("failed_delivery")
    return out


def group_of(record: IntakeRecord, attention: Sequence[Attention], now: dt.datetime) -> Group:
    if attention:
        return "attention"
    end = parse_time(record.booking.end_time or record.booking.start_time)
    return "upcoming" if end >= now else "past"


def row(
    record: IntakeRecord,
    course: Course | None,
    *,
    staff_id: str,
    max_turns: int,
    failed: Collection[str] = (),
    now: dt.datetime | None = None,
) -> DashboardRow:
    now = now or dt.datetime.now(dt.UTC)
    attention = needs(record, failed)
    topic, assignment = _focus(record)
    return DashboardRow(
        staff_id=staff_id,
        group=group_of(record, attention, now),
        attention=attention,
        attention_labels=[ATTENTION_LABELS[a] for a in attention],
        course=record.course_slug,
        course_code=course.code if course else record.course_slug,
        student_name=record.booking.student.name or "(no name)",
        appointment_start=record.booking.start_time,
        meeting_time=meeting_time(record.booking.start_time, course.timezone if course else "UTC"),
        status=record.status,
        status_label=STATUS_LABELS.get(record.status, record.status),
        topic=topic_title(course, topic),
        assignment=assignment_title(course, assignment),
        turn=record.interview.turn,
        max_turns=max_turns,
        taken_over=record.taken_over,
        updated_at=record.updated_at,
    )


def ordered(rows: Iterable[DashboardRow]) -> list[DashboardRow]:
    """Needs attention (soonest meeting first), upcoming (soonest first), past (most recent first)."""
    by_group: dict[Group, list[DashboardRow]] = {"attention": [], "upcoming": [], "past": []}
    for r in rows:
        by_group[r.group].append(r)
    for name in ("attention", "upcoming"):
        by_group[name].sort(key=lambda r: (_epoch(r.appointment_start), r.staff_id))  # type: ignore[index]
    by_group["past"].sort(key=lambda r: (-_epoch(r.appointment_start), r.staff_id))
    return [*by_group["attention"], *by_group["upcoming"], *by_group["past"]]


def matches(r: DashboardRow, course: str | None, status: str | None) -> bool:
    """The list's filters: a course slug, and a record status or ``attention``."""
    if course and r.course != course:
        return False
    if status == "attention":
        return r.group == "attention"
    return not status or r.status == status


def meeting_time(iso: str, timezone: str) -> str:
    """``Tue 3 Dec, 10:00 EST`` in the course's zone; the raw value if it cannot be read."""
    try:
        moment = parse_time(iso).astimezone(ZoneInfo(timezone))
    except (ValueError, ZoneInfoNotFoundError):
        return iso
    return f"{moment:%a} {moment.day} {moment:%b}, {moment:%H:%M} {moment.tzname() or timezone}"


def topic_title(course: Course | None, topic_id: str | None) -> str | None:
    if not topic_id or topic_id == "other":
        return "Other" if topic_id == "other" else None
    found = course.topic(topic_id) if course else None
    return found.title if found else _humane(topic_id)


def assignment_title(course: Course | None, assignment_id: str | None) -> str | None:
    if not assignment_id:
        return None
    found = course.assignment(assignment_id) if course else None
    return found.title if found else _humane(assignment_id)


def summary_view(record: IntakeRecord, course: Course | None) -> SummaryView | None:
    """The summary in labels and titles; for a running chat, the facts so far (None before any)."""
    summary = record.summary
    if summary is not None:
        return _final(summary, course, record.interview.facts)
    facts = record.interview.facts
    topic, assignment = facts.topic, facts.assignment
    fields = [
        Field("Topic", topic_title(course, topic) or ""),
        Field("Assignment", assignment_title(course, assignment) or ""),
        Field("Request", REQUEST_LABELS.get(facts.request_type or "", "")),
        Field("Stuck on", facts.stuck_on or ""),
        Field("Tried so far", facts.attempts or ""),
        Field("Goal for the meeting", facts.goal or ""),
        Field("Deadline", facts.deadline or ""),
    ]
    fields = [f for f in fields if f.value]
    sections = _sections(facts, [])
    if not fields and not sections:
        return None
    return SummaryView(
        final=False, headline="What we know so far", fields=fields, sections=sections, flags=_flags(record)
    )


def _final(summary: Summary, course: Course | None, facts: Facts) -> SummaryView:
    fields = [
        Field("Status", STATUS_LABELS.get(summary.status, summary.status)),
        Field("Topic", topic_title(course, summary.topic) or "Not identified"),
        Field("Assignment", assignment_title(course, summary.assignment) or "Not for an assignment"),
        Field("Request", REQUEST_LABELS.get(summary.request_type, summary.request_type)),
        Field("The problem", summary.issue_description),
        Field("Tried so far", summary.student_attempts),
        Field("Goal for the meeting", summary.student_goal),
        Field("Difficulty", f"{DIFFICULTY_LABELS[summary.difficulty]} ({summary.difficulty} of 5)"),
        Field("Urgency", URGENCY_LABELS[summary.urgency]),
        Field("Before the meeting", summary.professor_prep_note),
    ]
    flags = [label for name, label in _FLAG_LABELS if getattr(summary.flags, name)]
    return SummaryView(
        final=True,
        headline="Summary",
        fields=[f for f in fields if f.value],
        sections=_sections(facts, summary.suggested_materials),
        flags=flags,
    )


_FLAG_LABELS = (
    ("distress", "Distress signal"),
    ("escalated_to_human", "Asked for a person"),
    ("off_topic", "Went off topic"),
)


def _flags(record: IntakeRecord) -> list[str]:
    return [label for name, label in _FLAG_LABELS if getattr(record.interview.flags, name)]


def _sections(facts: Facts, materials: Sequence[SuggestedMaterial]) -> list[MatchedSection]:
    """The matched section first, then the suggested materials (each place once)."""
    out: list[MatchedSection] = []
    if facts.section is not None:
        s = facts.section
        out.append(
            MatchedSection(title=s.title, section=s.heading, source=s.source, why="Where they are stuck")
        )
    for m in materials:
        if not any(o.source == m.source and o.section == m.section for o in out):
            out.append(MatchedSection(title=m.title, section=m.section, source=m.source, why=m.why))
    return out


def _focus(record: IntakeRecord) -> tuple[str | None, str | None]:
    if record.summary is not None:
        return record.summary.topic, record.summary.assignment
    facts = record.interview.facts
    return facts.topic, facts.assignment


def _humane(identifier: str) -> str:
    """An id the course pack no longer knows, at least readable: ``essay-2`` -> ``Essay 2``."""
    return identifier.replace("-", " ").replace("_", " ").strip().capitalize()


def _epoch(iso: str) -> float:
    try:
        return parse_time(iso).timestamp()
    except ValueError:
        return 0.0
