"""The evaluation harness against the whole running stack, through the public HTTP API only."""

from __future__ import annotations

import random
from typing import Any

import pytest

from finetune.eval_students import EvalSet, EvalStudent, EvalTruth
from finetune.evaluate import Harness, summary_in_message, token_in_message
from finetune.rubric import CRITERIA
from services.coursepack import load_catalog
from tests.fixtures.stack import TEST_CORPUS, WEBHOOK_SECRET, Stack


class SmtpInbox:
    """The stack fixture delivers mail to a capturing SMTP server instead of ``.eml`` files."""

    def __init__(self, stack: Stack, organizer: str) -> None:
        self.smtp = stack.smtp
        self.organizer = organizer

    def token_for(self, address: str) -> str | None:
        return next((t for m in self.smtp.to(address) if (t := token_in_message(m))), None)

    def summary_for(self, booking_uid: str) -> dict[str, Any] | None:
        found = [s for m in self.smtp.to(self.organizer) if (s := summary_in_message(m))]
        return next((s for s in reversed(found) if s.get("booking_uid") == booking_uid), None)


# A student of the small test course (tests/fixtures/corpus/chem110), written like eval_students.toml.
STUDENT = EvalStudent(
    id="fx-01",
    course="chem110",
    name="Sam Lee",
    style="plain",
    notes="Problem set 5",
    answers={
        "issue": "I'm stuck on Problem Set 5, the gas problems.",
        "assignment": "Problem Set 5.",
        "stuck_on": "I don't know when to convert the temperature to kelvin in PV=nRT.",
        "attempts": "I redid problem 2 with Celsius and got a negative pressure.",
        "goal": "Know which units go into the ideal gas law.",
        "deadline": "December 10.",
    },
    truth=EvalTruth(
        topic="gas-laws",
        assignment="ps-5",
        request_type="assignment",
        key_terms=["kelvin"],
        relevant_files=["assignments/ps-5.md", "notes/ideal-gas-law.md"],
    ),
)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_one_simulated_student_end_to_end(stack: Stack) -> None:
    """A scripted student books (signed webhook), gets the link by email, consents, chats over SSE until
    the interview ends, and the professor's summary from the summary email is scored on every point."""
    catalog = load_catalog(TEST_CORPUS)
    course = catalog.courses[STUDENT.course]
    eval_set = EvalSet(seed=1, students=[STUDENT])
    inbox = SmtpInbox(stack, course.instructor_email)
    harness = Harness(stack.url, WEBHOOK_SECRET, inbox, catalog, eval_set, 180.0)
    harness.summary_timeout = (
        300.0  # the worker drafts the summary with the model first: slow on 2 busy cores
    )
    try:
        chat = harness.converse(STUDENT, "test", stack.settings.max_turns, random.Random(0))
        result = harness.score(chat)
    finally:
        harness.close()
    assert chat.status in {"complete", "escalated"}, chat
    assert result.summary is not None and result.summary_source == "email"
    assert set(result.scores) == set(CRITERIA) and result.checks["schema_valid"]
