"""Hand-made intakes for the rubric and harness tests: a good one per student, and summaries to spoil."""

from __future__ import annotations

from typing import Any

from finetune.eval_students import EvalStudent
from services.coursepack import Course
from services.gateway.intake.models import ChatMessage

S, A = "student", "assistant"


def good_messages(student: EvalStudent, course: Course) -> list[ChatMessage]:
    """Greeting, five answered questions, a recap confirmed, a closing: six bot turns after the greeting."""
    first = student.name.split()[0]
    a = student.answers
    pairs = [
        (
            A,
            f"Hi {first}! I'll ask a few short questions for {course.instructor_name}. "
            "What would you like help with?",
        ),
        (S, a["issue"]),
        (A, "Thanks. Which assignment is this for?"),
        (S, a["assignment"]),
        (A, "Which part is giving you the most trouble?"),
        (S, a["stuck_on"]),
        (A, "What have you tried so far?"),
        (S, a["attempts"]),
        (A, "What would you like to leave the meeting with?"),
        (S, a["goal"]),
        (A, "Here is what I will pass on: your stuck point and your goal. Did I get that right?"),
        (S, "Yes, that's right."),
        (A, "Thank you! Your professor will read this before the meeting."),
    ]
    return [ChatMessage(role, text) for role, text in pairs]  # type: ignore[arg-type]


def good_summary(student: EvalStudent, course: Course, **changes: Any) -> dict[str, Any]:
    """A schema-v1 summary that gets everything in the student's ground truth right."""
    truth = student.truth
    assignment = course.assignment(truth.assignment) if truth.assignment else None
    first = student.name.split()[0]
    summary: dict[str, Any] = {
        "schema_version": "1",
        "booking_uid": f"eval-test-{student.id}",
        "course": course.code,
        "student": {"name": student.name, "email": student.email},
        "appointment_start": "2026-11-30T15:00:00Z",
        "status": "escalated" if truth.distress else "complete",
        "topic": truth.topic,
        "assignment": truth.assignment,
        "request_type": truth.request_type,
        "issue_description": (
            f"{first} is working on {assignment.title if assignment else 'a lecture topic'}. "
            f"The stuck point, in their words: {', '.join(truth.key_terms)}."
        ),
        "student_attempts": "Tried a few things on their own.",
        "student_goal": "Understand the step they are stuck on.",
        "difficulty": 3,
        "urgency": "medium",
        "professor_prep_note": "Have the sheet and the notes open.",
        "suggested_materials": [
            {"title": "Sheet", "source": truth.relevant_files[0], "why": "The file the student needs."}
        ],
        "flags": {"distress": truth.distress, "off_topic": False, "escalated_to_human": truth.distress},
        "turns": 6,
    }
    return {**summary, **changes}
