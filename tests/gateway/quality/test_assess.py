"""The assessment of a finished intake: the rubric's records (pure) and how they are stored and averaged
(real Redis)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import redis.asyncio as aioredis

from finetune.rubric import RUBRIC_VERSION
from services.gateway.intake.models import (
    Booking,
    ChatMessage,
    Flags,
    IntakeRecord,
    InterviewState,
    Person,
    Summary,
)
from services.gateway.quality.assess import AssessmentStore, IntakeAssessment, judge
from tests.gateway.intake.scripted import make_course

COURSE = make_course()
NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
GOOD = [
    (
        "assistant",
        "Hi Mina! I'll ask a few short questions for Dr. Lee Okafor. What would you like help with?",
    ),
    ("student", "I am stuck on problem set 3, the t-test questions."),
    ("assistant", "Which part of Problem Set 3 is giving you the most trouble?"),
    ("student", "I don't understand when to reject the null hypothesis with the p-value."),
    ("assistant", "What have you tried so far?"),
    ("student", "I re-read the lecture notes and tried problem 2 twice."),
    ("assistant", "What would you like to leave the meeting with?"),
    ("student", "I want to understand how to interpret the p-value."),
    ("assistant", "Thank you! Dr. Lee Okafor will read this before the meeting."),
]


def finished(messages: list[tuple[str, str]], **summary: Any) -> IntakeRecord:
    booking = Booking(
        uid="bk-1",
        start_time="2026-12-01T15:00:00Z",
        organizer=Person("Lee Okafor", "okafor@example.edu"),
        student=Person("Mina Park", "mina@example.edu"),
    )
    fields: dict[str, Any] = {
        "booking_uid": "bk-1",
        "course": COURSE.code,
        "student": booking.student,
        "appointment_start": booking.start_time,
        "status": "complete",
        "topic": "hypothesis-testing",
        "assignment": "ps3",
        "request_type": "assignment",
        "issue_description": "Mina is stuck on problem set 3. She does not understand when to reject the "
        "null hypothesis with the p-value.",
        "student_attempts": "She re-read the lecture notes and tried problem 2 twice.",
        "student_goal": "She wants to understand how to interpret the p-value.",
        "difficulty": 3,
        "urgency": "medium",
        "professor_prep_note": "Have problem set 3 open.",
    }
    fields.update(summary)
    state = InterviewState(messages=[ChatMessage(role, text) for role, text in messages])  # type: ignore[arg-type]
    return IntakeRecord(
        token="tok-assess",
        booking=booking,
        course_slug=COURSE.slug,
        status=fields["status"],
        created_at="2026-11-27T10:00:00Z",
        updated_at="2026-11-27T10:10:00Z",
        interview=state,
        summary=Summary(**fields),
        model="model-a",
    )


def test_a_good_intake_is_progress_everywhere() -> None:
    """One record per bot message, one for the conversation, one for the summary; all progress, score 1."""
    result = judge(finished(GOOD), COURSE, "model-a", "p1", now=NOW)
    kinds = [a.kind for a in result.assessments]
    assert kinds == ["interaction"] * 5 + ["multi_turn", "session_summary"]
    assert [a.turn for a in result.assessments[:5]] == [0, 1, 2, 3, 4]
    assert {a.category for a in result.assessments} == {"progress"}, [
        a.explanation for a in result.assessments
    ]
    assert result.means == {"interaction": 1.0, "multi_turn": 1.0, "session_summary": 1.0}
    first = result.assessments[0]
    assert (first.rubric_version, first.model, first.prompt_version) == (RUBRIC_VERSION, "model-a", "p1")
    assert first.created_at == "2026-11-27T12:00:00.000Z"


def test_a_bad_intake_shows_each_error_with_its_key_and_severity() -> None:
    """Two questions in one message, a solved problem, a summary sentence the student never said, and a
    distress flag on a complete intake: each is an error record naming what went wrong."""
    messages = list(GOOD)
    messages[2] = ("assistant", "Which problem is it? And what did your friend get?")
    messages[4] = ("assistant", "The correct answer is to reject the null when p is below 0.05.")
    record = finished(
        messages,
        student_goal="She wants a worked derivation of Bayesian posterior conjugacy with gamma priors.",
        flags=Flags(distress=True),
    )
    result = judge(record, COURSE, "model-a", "p1", now=NOW)
    errors = {(a.kind, e.key, e.severity) for a in result.assessments for e in a.errors}
    assert ("interaction", "several_questions", "major") in errors
    assert ("interaction", "solved_homework", "critical") in errors
    assert ("multi_turn", "several_questions", "major") in errors
    assert ("session_summary", "ungrounded", "major") in errors
    assert ("session_summary", "flags_mismatch", "major") in errors
    by_turn = {a.turn: a for a in result.assessments if a.kind == "interaction"}
    assert by_turn[1].category == "error" and by_turn[2].score == 0.0 and by_turn[3].category == "progress"
    assert result.means["session_summary"] == 0.0
    stored = msgspec.json.encode(result).decode()  # names what went wrong, never quotes the chat
    assert not any(words in stored for words in ("your friend", "0.05", "Bayesian", "null hypothesis"))


async def test_an_intake_is_counted_once_per_rubric_version(redis: aioredis.Redis) -> None:
    """A retried job stores nothing new and counts nothing twice; the record expires with retention."""
    store = AssessmentStore(redis, retention_days=2)
    result = judge(finished(GOOD), COURSE, "model-a", "p1", now=NOW)
    assert await store.save("tok-assess", result) is True
    assert await store.save("tok-assess", result) is False
    [group] = await store.averages()
    assert group.intakes == 1 and group.kinds["interaction"].records == 5
    assert [a.rubric_version for a in await store.for_intake("tok-assess")] == [RUBRIC_VERSION]
    assert 0 < await redis.ttl("quality:assess:tok-assess") <= 2 * 86400
    assert await redis.ttl("quality:assess:agg") > 0


async def test_averages_per_rubric_version_model_and_prompt_on_known_records(redis: aioredis.Redis) -> None:
    """Model A: scores 1.0 and 0.5 -> mean 0.75, error share 0.5; model B alone in its row; another rubric
    version is another row."""
    store = AssessmentStore(redis, retention_days=30)
    base = judge(finished(GOOD), COURSE, "model-a", "p1", now=NOW)
    summary_only = [a for a in base.assessments if a.kind == "session_summary"]
    half = msgspec.structs.replace(summary_only[0], score=0.5, category="error")

    def variant(model: str, score_record: Any, rubric: str = RUBRIC_VERSION) -> IntakeAssessment:
        return msgspec.structs.replace(base, model=model, rubric_version=rubric, assessments=[score_record])

    await store.save("t1", variant("model-a", summary_only[0]))
    await store.save("t2", variant("model-a", half))
    await store.save("t3", variant("model-b", half))
    await store.save("t4", variant("model-a", half, rubric="live-0"))
    rows = {(g.rubric_version, g.model): g for g in await store.averages()}
    a = rows[(RUBRIC_VERSION, "model-a")].kinds["session_summary"]
    assert (rows[(RUBRIC_VERSION, "model-a")].intakes, a.records, a.mean_score, a.error_share) == (
        2,
        2,
        0.75,
        0.5,
    )
    assert rows[(RUBRIC_VERSION, "model-b")].kinds["session_summary"].mean_score == 0.5
    assert rows[("live-0", "model-a")].intakes == 1
    assert rows[(RUBRIC_VERSION, "model-a")].kinds["interaction"].mean_score is None


def test_a_partial_intake_is_not_faulted_for_stopping_early() -> None:
    """The student stopped after one answer (a partial summary before the meeting): no turn-count or
    coverage error; the same short chat marked complete has both."""
    short = GOOD[:3]
    partial = judge(
        finished(short, status="partial", student_goal="Not stated in the intake."), COURSE, "a", "p"
    )
    complete = judge(finished(short, student_goal="Not stated in the intake."), COURSE, "a", "p")

    def keys(result: IntakeAssessment) -> set[str]:
        return {e.key for a in result.assessments if a.kind == "multi_turn" for e in a.errors}

    assert keys(partial) == set()
    assert keys(complete) == {"turn_count", "coverage"}
