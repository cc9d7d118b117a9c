"""Wire and storage shapes of an intake: the Redis record, chat messages, SSE events and summary v1.

These are public contracts (README, "Contracts"): change them only with a migration note there.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

IntakeStatus = Literal["invited", "active", "complete", "partial", "cancelled", "escalated"]
SummaryStatus = Literal["complete", "partial", "no_intake", "escalated"]
RequestType = Literal["concept", "assignment", "exam_prep", "grade", "draft_feedback", "logistics", "other"]
Urgency = Literal["low", "medium", "high"]
Role = Literal["student", "assistant", "staff"]


class ChatMessage(msgspec.Struct, frozen=True, omit_defaults=True):
    """One line of the chat. ``author``: the staff member who wrote a ``staff`` message; ``to_staff``: a
    student message written while staff had taken the chat over (not an interview turn)."""

    role: Role
    text: str
    author: str = ""
    to_staff: bool = False


class Person(msgspec.Struct, frozen=True):
    name: str
    email: str


class SuggestedMaterial(msgspec.Struct, frozen=True):
    title: str
    source: str  # path inside the course pack
    why: str
    section: str | None = None  # the heading inside ``source`` the student's stuck point matched


class Flags(msgspec.Struct, frozen=True):
    distress: bool = False
    off_topic: bool = False
    escalated_to_human: bool = False


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    """Summary schema version 1, exactly as delivered to the professor."""

    schema_version: Literal["1"] = "1"
    booking_uid: str
    course: str
    student: Person
    appointment_start: str  # RFC 3339
    status: SummaryStatus
    topic: str  # one of the course's topic ids, or "other"
    assignment: str | None
    request_type: RequestType
    issue_description: Annotated[str, Meta(max_length=1200)]
    student_attempts: Annotated[str, Meta(max_length=800)]
    student_goal: Annotated[str, Meta(max_length=600)]
    difficulty: Annotated[int, Meta(ge=1, le=5)]
    urgency: Urgency
    professor_prep_note: Annotated[str, Meta(max_length=800)]
    suggested_materials: list[SuggestedMaterial] = []
    flags: Flags = Flags()
    turns: Annotated[int, Meta(ge=0)] = 0
    transcript_url: str = ""


class StudentSummary(msgspec.Struct, frozen=True, kw_only=True):
    """The summary as the student's link shows it: the professor-only fields (prep note, difficulty,
    urgency, staff transcript link) are left out."""

    schema_version: Literal["1"] = "1"
    booking_uid: str
    course: str
    student: Person
    appointment_start: str
    status: SummaryStatus
    topic: str
    assignment: str | None
    request_type: RequestType
    issue_description: str
    student_attempts: str
    student_goal: str
    suggested_materials: list[SuggestedMaterial] = []
    flags: Flags = Flags()
    turns: int = 0

    @classmethod
    def of(cls, summary: Summary) -> StudentSummary:
        return cls(**{name: getattr(summary, name) for name in cls.__struct_fields__})


class Booking(msgspec.Struct, frozen=True, kw_only=True):
    """What we keep of the Cal.com booking an intake belongs to."""

    uid: str
    booking_id: int | None = None
    event_type_id: int | None = None
    event_type_slug: str | None = None
    title: str = ""
    start_time: str  # RFC 3339
    end_time: str | None = None
    organizer: Person
    student: Person
    notes: str = ""  # the student's own booking notes (additionalNotes)


class IntakeView(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/intakes/{token}``."""

    status: IntakeStatus
    turn: int
    max_turns: int
    messages: list[ChatMessage]
    course: str
    course_title: str
    student_name: str
    appointment_start: str
    consented: bool
    retention_days: int
    instructor_name: str = ""  # who reads the chat, shown on the consent screen
    taken_over: bool = False  # a staff member answers instead of the model
    staff_name: str = ""  # who answers while ``taken_over``
    summary: StudentSummary | None = None  # never the professor-only fields


class MessageIn(msgspec.Struct, frozen=True):
    """``POST /api/intakes/{token}/messages`` body."""

    text: Annotated[str, Meta(max_length=20_000)]  # hard cap; settings.max_message_chars is the real one
    # lets a retried request after a dropped stream be recognised
    client_turn_id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{8,64}$")] | None = None


class TokenEvent(msgspec.Struct, frozen=True):
    text: str


class DoneEvent(msgspec.Struct, frozen=True):
    status: IntakeStatus
    turn: int


class ErrorEvent(msgspec.Struct, frozen=True):
    code: str
    message: str


class Section(msgspec.Struct, frozen=True, kw_only=True):
    """The part of the course materials a stuck point matched (chunk-level retrieval)."""

    source: str  # path inside the course pack
    title: str  # the document's title
    heading: str | None = None  # the ``## `` section inside it
    score: float = 0.0
    topic: str | None = None  # for a problem on an assignment sheet: the topic its own text names clearly


class Facts(msgspec.Struct, kw_only=True):
    """What the dialogue policy has learned so far; ``None`` means still unknown.

    ``stuck_on``, ``attempts`` and ``goal`` are the student's own sentences (junk and injected text
    never get here); the ``*_evidence`` tables accumulate weighted evidence across the whole chat so
    the assignment is the one the student works on, not the last one named.
    """

    topic: str | None = None
    assignment: str | None = None
    request_type: RequestType | None = None
    attempts: str | None = None
    stuck_on: str | None = None
    goal: str | None = None
    deadline: str | None = None
    assignment_evidence: dict[str, float] = {}
    topic_evidence: dict[str, float] = {}
    no_assignment: bool = False  # "it's not for an assignment"
    ambiguous: list[str] = []  # two close assignment candidates to ask about
    section: Section | None = None
    example: str | None = None
    context: str | None = None
    custom: dict[str, str] = {}  # course must-ask question id -> the student's answer
    recap_confirmed: bool = False
    corrected: bool = False


class InterviewState(msgspec.Struct, kw_only=True):
    """The interview as the policy sees it.

    ``prompt`` is exactly what was sent, so the next prompt extends it.
    """

    messages: list[ChatMessage] = []
    prompt: list[dict[str, str]] = []  # OpenAI chat messages [{role, content}], append-only
    facts: Facts = msgspec.field(default_factory=Facts)
    asked: list[str] = []  # policy slots asked so far, in order
    context_sources: list[str] = []  # course-pack paths retrieved into the prompt
    flags: Flags = Flags()
    model_retries: int = 0
    # how the course's materials could be searched when the interview was prepared (the summary says so
    # when it was less than "ok"): "keyword_only" while Chroma is down, "unavailable" with no index
    materials: Literal["ok", "keyword_only", "unavailable"] = "ok"

    @property
    def turn(self) -> int:
        """Student turns so far (messages to a staff member who took the chat over do not count)."""
        return sum(1 for m in self.messages if m.role == "student" and not m.to_staff)


def new_staff_id() -> str:
    """The intake's id in staff links (``/staff/intakes/{staff_id}``): random, and not the student's token,
    so whoever sees a summary email or the Cal.com note cannot post as the student."""
    return secrets.token_urlsafe(16)


class IntakeRecord(msgspec.Struct, kw_only=True):
    """The Redis value of one intake, keyed by its capability token."""

    token: str
    staff_id: str = msgspec.field(default_factory=new_staff_id)
    booking: Booking
    course_slug: str
    status: IntakeStatus = "invited"
    created_at: str
    updated_at: str
    consented_at: str | None = None
    interview: InterviewState = msgspec.field(default_factory=InterviewState)
    summary: Summary | None = None
    summary_delivered_at: str | None = None
    replies: dict[str, int] = {}  # client_turn_id -> index of the assistant message it produced
    student_rating: Literal["up", "down"] | None = None
    professor_rating: Literal["useful", "not_useful"] | None = None
    taken_over: bool = False  # a staff member is answering instead of the model
    model: str = ""  # the model id that runs the intake (``Services.model_for``), written at set-up
    taken_over_by: str = ""  # the staff member's name, shown to the student on their messages
    # a distress signal or a request for a person needs a staff member to look; cleared by acknowledging
    acknowledged_at: str | None = None
    acknowledged_by: str = ""
