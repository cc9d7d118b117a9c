"""The evaluation harness against the whole running stack, through the public HTTP API only."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from finetune.evaluate import Harness, held_out_personas, reschedule, token_in_message
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

    def summary_sent(self, booking_uid: str) -> bool:
        return any(booking_uid in m.as_string() for m in self.smtp.to(self.organizer))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_one_simulated_student_end_to_end(stack: Stack) -> None:
    """A held-out persona books (signed webhook), gets the link by email, consents, chats over SSE until
    the interview ends, and the result is scored on every criterion."""
    catalog = load_catalog(TEST_CORPUS)
    persona = held_out_personas(catalog, 1)[0]
    course = catalog.courses[persona.course_slug]
    persona = reschedule(persona, course, dt.datetime.now(dt.UTC))
    harness = Harness(stack.url, WEBHOOK_SECRET, SmtpInbox(stack, course.instructor_email), catalog, 180.0)
    harness.summary_timeout = 30.0  # the model summary is a refinement; the facts summary is there at once
    try:
        chat = harness.converse(persona, "test", stack.settings.max_turns, random.Random(0))
        result = harness.score(chat, stack.settings.max_turns)
    finally:
        harness.close()
    assert chat.status in {"complete", "escalated"}, chat
    assert result.summary is not None and set(result.scores) == set(CRITERIA)
    assert result.scores["summary_valid"] == 3 and result.scores["turns"] >= 2
