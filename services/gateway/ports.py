"""Narrow interfaces the interview logic talks through; adapters implement them, one class each."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import msgspec

from services.coursepack import Course

if TYPE_CHECKING:  # the classifier loads NumPy weights: only adapters import it at run time
    from services.understanding.classifier import MessageUnderstanding


class Passage(msgspec.Struct, frozen=True, kw_only=True):
    """One retrieved piece of course material."""

    text: str
    source: str  # path relative to the course folder, e.g. "assignments/essay-2.md"
    title: str
    section: str | None = None
    assignment_id: str | None = None
    score: float = 0.0


class CourseRetriever(Protocol):
    """Hybrid (vector + BM25) retrieval over one course's materials. Sync: call it from a worker thread."""

    def retrieve(self, course_slug: str, query: str, k: int = 3) -> list[Passage]: ...


SearchState = Literal["ok", "keyword_only", "unavailable"]


@runtime_checkable
class SearchHealth(Protocol):
    """A retriever that can say how well it can search a course right now."""

    def search_state(self, course_slug: str) -> SearchState:
        """``keyword_only``: the vector half is down (BM25 alone answers); ``unavailable``: no index."""
        ...


class PromptMessage(msgspec.Struct, frozen=True):
    """An OpenAI chat message as sent to inference."""

    role: str  # system | user | assistant
    content: str


class ChatModel(Protocol):
    """What the interview needs from an OpenAI-compatible server."""

    def stream(
        self, messages: Sequence[PromptMessage], *, max_tokens: int, stop: Sequence[str] = ()
    ) -> AsyncIterator[str]: ...

    async def complete(
        self, messages: Sequence[PromptMessage], *, max_tokens: int, stop: Sequence[str] = ()
    ) -> str: ...


class CourseSimilarity(msgspec.Struct, frozen=True):
    """Cosine similarity of a student's words to each topic and assignment of the course (the course map)."""

    topics: dict[str, float]
    assignments: dict[str, float]


class MessageReader(Protocol):
    """The learned half of reading a message: classifier verdicts and similarity to the course's parts.

    CPU-bound (sentence embeddings): call it from a worker thread.
    """

    def understand(self, text: str) -> MessageUnderstanding: ...

    def similarity(self, course: Course, text: str) -> CourseSimilarity: ...


class SummaryDelivery(Protocol):
    """Where the chat hands a finished interview over: the summary is refined and delivered by a job."""

    async def summary_ready(self, token: str, booking_uid: str, *, escalated: bool) -> None: ...


class StaffAlerts(Protocol):
    """Where the chat reports what needs a person now (the course's staff get an email at once)."""

    async def alert_staff(
        self, token: str, booking_uid: str, reason: str, *, key: str | None = None
    ) -> None: ...


class LineTimeout(TimeoutError):
    """A turn waited longer than allowed for a generation slot: it answers without the model."""


class GenerationSlots(Protocol):
    """The line for a generation slot, so the model server is never asked for more than it sustains.

    ``async with slots.acquire() as positions:`` takes a ticket; ``async for position in positions``
    yields the place in line (1 = next) whenever it changes, and ends once the slot is held, or raises
    ``LineTimeout`` when the wait went on too long; leaving the block gives the slot (or the unserved
    ticket) back.
    """

    def acquire(self) -> AbstractAsyncContextManager[AsyncIterator[int]]: ...
