"""Summary v1: built from the policy's facts (always valid), optionally improved by model-drafted text.

Structured fields (topic, assignment, request_type, urgency, difficulty) always come from the policy:
a 135M model cannot be trusted with ids. The model may only draft the four free-text fields; each
draft field is checked (length, no junk, no solution, grounded in what the student actually said)
and a bad field is replaced by the facts-based text. No function here raises on bad model output.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence

import msgspec

from services.coursepack import Course
from services.gateway.intake import guardrails, policy
from services.gateway.intake.models import (
    Booking,
    Flags,
    InterviewState,
    Person,
    RequestType,
    SuggestedMaterial,
    Summary,
    SummaryStatus,
)

FREE_FIELDS = ("issue_description", "student_attempts", "student_goal", "professor_prep_note")
_LIMITS = {
    "issue_description": 1200,
    "student_attempts": 800,
    "student_goal": 600,
    "professor_prep_note": 800,
}
_MIN_CHARS = {"issue_description": 40, "student_attempts": 8, "student_goal": 8, "professor_prep_note": 30}
_NOT_STATED = "Not stated in the intake."
_REQUEST_WORDS: dict[RequestType, str] = {
    "concept": "understanding a concept",
    "assignment": "an assignment",
    "exam_prep": "exam preparation",
    "grade": "a grade",
    "draft_feedback": "feedback on a draft",
    "logistics": "course logistics",
    "other": "a question",
}


class DraftText(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """The only part of the summary the model writes: plain-text fields, all optional."""

    issue_description: str = ""
    student_attempts: str = ""
    student_goal: str = ""
    professor_prep_note: str = ""


# ---------------------------------------------------------------- facts-only summary


def build_summary(
    state: InterviewState,
    course: Course,
    booking: Booking,
    status: SummaryStatus,
    transcript_url: str,
) -> Summary:
    """The deterministic summary from facts alone: instant, never wrong about ids, always valid."""
    facts = state.facts
    topic = facts.topic if facts.topic and course.topic(facts.topic) else "other"
    assignment = facts.assignment if facts.assignment and course.assignment(facts.assignment) else None
    request: RequestType = facts.request_type or ("assignment" if assignment else "other")
    flags = Flags(
        distress=state.flags.distress,
        off_topic=state.flags.off_topic,
        escalated_to_human=state.flags.escalated_to_human or status == "escalated",
    )
    return Summary(
        booking_uid=booking.uid,
        course=course.code,
        student=Person(booking.student.name, booking.student.email),
        appointment_start=booking.start_time,
        status=status,
        topic=topic,
        assignment=assignment,
        request_type=request,
        issue_description=_fit(issue_text(state, course, booking, status), "issue_description"),
        student_attempts=_fit(facts.attempts or _NOT_STATED, "student_attempts"),
        student_goal=_fit(facts.goal or _NOT_STATED, "student_goal"),
        difficulty=policy.difficulty(facts, state, course, booking),
        urgency=policy.urgency(facts, course, booking),
        professor_prep_note=_fit(prep_note(state, course, booking, status), "professor_prep_note"),
        suggested_materials=materials(state, course),
        flags=flags,
        turns=state.turn,
        transcript_url=transcript_url,
    )


def issue_text(state: InterviewState, course: Course, booking: Booking, status: SummaryStatus) -> str:
    """2–4 plain sentences: what it is about, then the student's own words."""
    facts = state.facts
    name = policy.first_name(booking.student.name) or "The student"
    if status == "no_intake" or (not state.turn and not facts.stuck_on):
        notes = (
            f' Their booking note says: "{policy.clip(booking.notes, 200)}".' if booking.notes.strip() else ""
        )
        return f"{name} did not complete the intake chat before the meeting.{notes}"
    about = policy.subject(facts, course)
    kind = _REQUEST_WORDS[facts.request_type or "other"]
    first = f"{name} wants help with {kind}" + (f": {about}." if about != "this" else ".")
    parts = [first]
    if facts.stuck_on:
        parts.append(f'In their words: "{policy.clip(facts.stuck_on, 400)}"')
    else:
        parts.append("They did not say exactly where they are stuck.")
    if status == "escalated":
        parts.append("The chat was stopped early because the student seemed to be in distress.")
    elif status == "partial":
        parts.append(f"The intake chat was not finished ({state.turn} answers).")
    return " ".join(parts)


def prep_note(state: InterviewState, course: Course, booking: Booking, status: SummaryStatus) -> str:
    """Actionable: what to open, what to ask the student to bring, and how soon it is due."""
    facts = state.facts
    notes: list[str] = []
    if status == "escalated" or state.flags.distress:
        notes.append(
            "The student expressed distress and was shown the support resources; consider checking in "
            "with them before the meeting."
        )
    assignment = course.assignment(facts.assignment) if facts.assignment else None
    topic = course.topic(facts.topic) if facts.topic else None
    if assignment:
        sheet = f" ({assignment.file})" if assignment.file else ""
        notes.append(f"Review the {assignment.title} sheet{sheet}.")
    if topic:
        notes.append(f"Have your notes on {topic.title.lower()} ready.")
    if facts.request_type in {"draft_feedback", "assignment"} or assignment:
        notes.append("Ask the student to bring their current draft or work.")
    if facts.request_type == "grade":
        notes.append("Have the graded work and the rubric at hand.")
    due = policy.due_date(facts, course)
    if due:
        notes.append(f"Due {due.isoformat()}: urgency {policy.urgency(facts, course, booking)}.")
    if not notes:
        notes.append(
            "Little is known yet: start by asking what the student needs, and check their booking note."
        )
    return " ".join(notes)


def materials(state: InterviewState, course: Course) -> list[SuggestedMaterial]:
    """Sources actually retrieved into the interview, most relevant first, titled for a person."""
    facts = state.facts
    assignment = course.assignment(facts.assignment) if facts.assignment else None
    topic = course.topic(facts.topic) if facts.topic else None
    focus = policy.content_words(
        " ".join(
            x
            for x in (
                assignment.title if assignment else "",
                topic.title if topic else "",
                topic.id if topic else "",
            )
            if x
        )
    )
    ranked: list[tuple[int, SuggestedMaterial]] = []
    for source in dict.fromkeys(state.context_sources):
        title, why, rank = _describe(source, course, focus, assignment.file if assignment else None)
        ranked.append((rank, SuggestedMaterial(title=title, source=source, why=why)))
    ranked.sort(key=lambda r: r[0])
    if ranked and ranked[0][0] < 3:
        ranked = [r for r in ranked if r[0] < 3]  # unrelated context is noise once something related exists
    return [m for _, m in ranked[:3]]


def _describe(
    source: str, course: Course, focus: set[str], assignment_file: str | None
) -> tuple[str, str, int]:
    owner = next((a for a in course.assignments if a.file == source), None)
    if owner:
        rank = 0 if source == assignment_file else 2
        return (
            owner.title,
            "The assignment sheet the student is working on." if rank == 0 else "Related assignment sheet.",
            rank,
        )
    stem = source.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    title = re.sub(r"[-_]+", " ", stem).strip().capitalize() or source
    overlap = bool(policy.content_words(stem.replace("-", " ")) & focus)
    return (
        title,
        "Course notes on the topic the student raised."
        if overlap
        else "Retrieved as context for the interview.",
        1 if overlap else 3,
    )


def _fit(text: str, field: str) -> str:
    """Respect the Summary's max_length (a hard schema limit) without cutting mid-word."""
    text = " ".join(text.split()) or _NOT_STATED
    return policy.clip(text, _LIMITS[field])


# ---------------------------------------------------------------- model drafts


def extract_json(text: str) -> dict[str, object] | None:
    """The first balanced JSON object in ``text`` (small models wrap JSON in prose or code fences)."""
    start = text.find("{")
    while start != -1:
        depth, in_string, escape = 0, False, False
        for i in range(start, len(text)):
            ch = text[i]
            if in_string:
                escape = ch == "\\" and not escape
                if ch == '"' and not escape:
                    in_string = False
                continue
            if ch == '"':
                in_string = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    try:
                        value = json.loads(text[start : i + 1])
                    except ValueError:
                        break
                    return value if isinstance(value, dict) else None
        start = text.find("{", start + 1)
    return None


def parse_draft(text: str) -> DraftText:
    """Model output -> ``DraftText`` (empty fields when unusable); never raises."""
    raw = extract_json(text) or {}
    clean = {
        k: " ".join(str(v).split())
        for k, v in raw.items()
        if k in FREE_FIELDS and isinstance(v, (str, int, float))
    }
    try:
        return msgspec.convert(clean, DraftText)
    except msgspec.ValidationError:
        return DraftText()


def bad_fields(draft: DraftText, evidence: str, system_prompt: str) -> list[str]:
    """Fields that must not be used: too short, junk, solution content, leaks, or not grounded in evidence."""
    known = policy.content_words(evidence)
    bad = []
    for field in FREE_FIELDS:
        value: str = getattr(draft, field)
        words = policy.content_words(value)
        grounded = len(words & known) / max(1, len(words))
        problems = guardrails.check_partial(value[: guardrails.MAX_REPLY_CHARS], system_prompt=system_prompt)
        if (
            len(value) < _MIN_CHARS[field]
            or problems
            or grounded < (0.3 if field == "professor_prep_note" else 0.5)
            or re.search(r"\b(?:json|key|field|issue_description|student_\w+)\b", value, re.I)
        ):
            bad.append(field)
    return bad


def evidence_text(state: InterviewState, course: Course, booking: Booking) -> str:
    """What a draft may talk about: the student's words, the booking note, the course's names."""
    said = " ".join(m.text for m in state.messages if m.role == "student")
    names = " ".join(
        [
            course.title,
            course.instructor_name,
            *(a.title for a in course.assignments),
            *(t.title for t in course.topics),
            *state.context_sources,
        ]
    )
    prep = "review bring draft notes meeting student work sheet ready look check ask prepare example"
    return f"{said} {booking.notes} {names} {prep}"


def merge(summary: Summary, draft: DraftText, usable: Sequence[str]) -> Summary:
    """The facts summary with the usable drafted fields swapped in (issue text kept to 2–4 sentences)."""
    changes: dict[str, str] = {}
    for field in usable:
        value = getattr(draft, field)
        if field == "issue_description":
            value = _sentences_2_to_4(value, summary.issue_description)
        changes[field] = _fit(value, field)
    return msgspec.structs.replace(summary, **changes)


def _sentences_2_to_4(text: str, fallback: str) -> str:
    parts = policy.sentences(text)
    if len(parts) < 2:
        parts += policy.sentences(fallback)[1:2]
    return " ".join(parts[:4])


def today_for(course: Course) -> dt.date:
    """Today in the course's timezone (relative deadlines like "Friday" are the student's Friday)."""
    try:
        from zoneinfo import ZoneInfo

        return dt.datetime.now(ZoneInfo(course.timezone)).date()
    except Exception:
        return dt.date.today()
