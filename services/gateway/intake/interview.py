"""The interviewer: glue between the dialogue policy, guardrails, prompt assembly and the model.

SKELETON: public API fixed so the routes, the delivery worker and the fine-tuning pipeline can code
against it; bodies are being filled in.

Lifecycle, as the routes drive it::

    iv = Interviewer(ChatModel, retriever, settings)
    await iv.prepare(state, course, booking)        # once, when the intake is created or first opened
    text = iv.opening(state, course, booking)       # first assistant message, instant, no model
    await iv.warm(state)                            # right after consent: fills the server's prompt cache
    async for item in iv.turn(state, course, booking, student_text):
        if isinstance(item, str): send SSE token     # may be cut short; TurnOutcome.reply is authoritative
        else: outcome = item                         # exactly one, last
    summary = draft_summary(...) / await iv.summarize(...)

All methods mutate ``state`` in place; the caller persists it (IntakeStore) afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec

from services.coursepack import Course
from services.gateway.intake.models import Booking, IntakeStatus, InterviewState, Summary, SummaryStatus
from services.gateway.ports import ChatModel, CourseRetriever
from services.settings import Settings


class TurnOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """The result of one student turn, yielded once after any streamed pieces.

    ``reply`` is the final text to show and store (it may differ from the streamed pieces when a
    model reply failed validation and was replaced); ``finished`` is True when the interview is
    over (status ``complete`` or ``escalated``) and the summary should be produced.
    """

    status: IntakeStatus  # "active" | "complete" | "escalated"
    reply: str
    finished: bool


class Interviewer:
    """Runs one Socratic intake interview; stateless itself, all state lives in ``InterviewState``."""

    def __init__(self, model: ChatModel, retriever: CourseRetriever | None, settings: Settings) -> None:
        self.model = model
        self.retriever = retriever
        self.settings = settings

    async def prepare(self, state: InterviewState, course: Course, booking: Booking) -> None:
        """Retrieve context once (booking notes + course), store sources, build the fixed system prompt.

        No model call. The retriever is sync and runs in a worker thread. Sets ``state.prompt`` to
        ``[system]`` and ``state.context_sources``; pre-fills facts from the booking notes.
        """
        raise NotImplementedError

    def opening(self, state: InterviewState, course: Course, booking: Booking) -> str:
        """The first assistant message (greeting + first question): deterministic, instant, no model.

        Appended to ``state.messages`` and ``state.prompt``.
        """
        raise NotImplementedError

    async def warm(self, state: InterviewState) -> None:
        """Send ``state.prompt`` with ``max_tokens=1`` so the server's prompt cache holds the prefix.

        Never raises: a failed warm-up only costs latency on the first answer.
        """
        raise NotImplementedError

    def turn(
        self, state: InterviewState, course: Course, booking: Booking, text: str
    ) -> AsyncIterator[str | TurnOutcome]:
        """Handle one student message: yields reply pieces as they stream, then exactly one TurnOutcome.

        Guardrails run before the model (distress -> escalated, homework/injection/off-topic ->
        template replies). The streamed pieces are only sent while the model output passes the
        incremental checks; on failure nothing more is streamed and ``TurnOutcome.reply`` carries the
        replacement. Mutates ``state`` (messages, prompt, facts, asked, flags, model_retries).
        """
        raise NotImplementedError

    async def summarize(
        self,
        state: InterviewState,
        course: Course,
        booking: Booking,
        status: SummaryStatus,
        transcript_url: str,
    ) -> Summary:
        """Model-drafted summary, validated and repaired; falls back to ``draft_summary``. Never raises."""
        raise NotImplementedError


def draft_summary(
    state: InterviewState,
    course: Course,
    booking: Booking,
    status: SummaryStatus,
    transcript_url: str,
) -> Summary:
    """Deterministic summary from the policy's facts only (no model): instant and always valid.

    Used at the end of the interview before the model draft, and for partial / no_intake summaries.
    """
    raise NotImplementedError
