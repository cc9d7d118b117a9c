"""FAKE MODEL for logic tests: a ``ChatModel`` that replays scripted replies (like simonw/llm's MockModel).

It is not a stand-in for the real model's behaviour; it lets a test pin what the interviewer does with
a given reply (good, junk, leaking, slow). The one real-model test lives in test_interview.py (slow).
Also here: a course and booking built in code, so tests never depend on the sample corpus.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Sequence

from services.coursepack import Assignment, CalcomMapping, Course, Support, SupportResource, Tone, Topic
from services.gateway.intake.models import Booking, Person
from services.gateway.ports import Passage, PromptMessage

TODAY = dt.date(2026, 3, 2)  # a Monday


class ScriptedModel:
    """Fake ``ChatModel``: ``enqueue`` replies; each call pops one (default: a generic good question)."""

    def __init__(self, *replies: str, default: str = "Thanks. What part is hardest for you?") -> None:
        self.replies = list(replies)
        self.default = default
        self.calls: list[list[PromptMessage]] = []
        self.kwargs: list[dict[str, object]] = []
        self.fail_with: BaseException | None = None

    def enqueue(self, *replies: str) -> None:
        self.replies.extend(replies)

    def _next(self, messages: Sequence[PromptMessage], kwargs: dict[str, object]) -> str:
        self.calls.append(list(messages))
        self.kwargs.append(kwargs)
        if self.fail_with is not None:
            raise self.fail_with
        return self.replies.pop(0) if self.replies else self.default

    async def stream(
        self,
        messages: Sequence[PromptMessage],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        temperature: float | None = None,
    ) -> AsyncIterator[str]:
        text = self._next(
            messages, {"max_tokens": max_tokens, "stop": tuple(stop), "temperature": temperature}
        )
        for word in text.split(" "):
            await asyncio.sleep(0)
            yield word + " "

    async def complete(
        self, messages: Sequence[PromptMessage], *, max_tokens: int, stop: Sequence[str] = ()
    ) -> str:
        return self._next(messages, {"max_tokens": max_tokens, "stop": tuple(stop)})


class ListRetriever:
    """A ``CourseRetriever`` over a fixed list of passages (word-overlap ranking), for logic tests."""

    def __init__(self, passages: list[Passage]) -> None:
        self.passages = passages
        self.queries: list[str] = []

    def retrieve(self, course_slug: str, query: str, k: int = 3) -> list[Passage]:
        self.queries.append(query)
        words = set(query.lower().split())
        ranked = sorted(
            self.passages, key=lambda p: -len(words & set((p.title + " " + p.text).lower().split()))
        )
        return ranked[:k]


def make_course() -> Course:
    """An invented statistics course: not the sample corpus, so the policy cannot be tuned to it."""
    return Course(
        slug="stat150",
        path="/nonexistent/stat150",
        code="STAT 150",
        title="Introduction to Data Analysis",
        instructor_name="Dr. Lee Okafor",
        instructor_email="okafor@example.edu",
        timezone="UTC",
        calcom=CalcomMapping(event_type_ids=[99]),
        tone=Tone(
            notes="Friendly and calm. Use short sentences. Encourage students to show their work. "
            "Never make a student feel slow."
        ),
        topics=[
            Topic(
                "hypothesis-testing",
                "Hypothesis testing and p-values",
                ["p-value", "p value", "null hypothesis", "significance", "t-test", "reject the null"],
            ),
            Topic(
                "regression",
                "Linear regression",
                ["regression", "slope", "least squares", "residual", "r squared"],
            ),
            Topic(
                "probability",
                "Probability rules",
                ["probability", "conditional", "bayes", "independent events"],
            ),
            Topic(
                "r-programming", "Working in R", ["R code", "RStudio", "ggplot", "dataframe", "error message"]
            ),
        ],
        assignments=[
            Assignment(
                "ps3",
                "Problem Set 3: Hypothesis Tests",
                dt.date(2026, 3, 6),
                ["hypothesis-testing"],
                ["t-test homework"],
                "assignments/ps3.md",
            ),
            Assignment(
                "ps4",
                "Problem Set 4: Regression",
                dt.date(2026, 3, 20),
                ["regression"],
                [],
                "assignments/ps4.md",
            ),
            Assignment(
                "project",
                "Final Project: Data Report",
                dt.date(2026, 5, 1),
                ["regression", "r-programming"],
                ["data report", "final project"],
                None,
            ),
        ],
        support=Support(
            message="You matter more than any problem set. Please reach out now:",
            resources=[
                SupportResource("Campus Counseling", "555-0199 (24/7)"),
                SupportResource("988 Lifeline", "call or text 988"),
            ],
        ),
    )


def make_booking(notes: str = "", start: str = "2026-03-05T15:00:00Z") -> Booking:
    return Booking(
        uid="bk-1",
        title="Office hours",
        start_time=start,
        organizer=Person("Lee Okafor", "okafor@example.edu"),
        student=Person("Mina Park", "mina@example.edu"),
        notes=notes,
    )


def make_passages() -> list[Passage]:
    return [
        Passage(
            text="Problem Set 3 asks you to run one- and two-sample t-tests and interpret p-values in context.",
            source="assignments/ps3.md",
            title="Problem Set 3: Hypothesis Tests",
            assignment_id="ps3",
        ),
        Passage(
            text="A p-value is the probability of data at least this extreme if the null hypothesis is true.",
            source="notes/p-values.md",
            title="P-values",
        ),
        Passage(
            text="Regression: the slope is the expected change in y for a one-unit change in x.",
            source="notes/regression.md",
            title="Linear regression",
        ),
        Passage(
            text="Common R errors: object not found usually means a typo or an unloaded dataframe.",
            source="notes/r-errors.md",
            title="Common R errors",
        ),
    ]
