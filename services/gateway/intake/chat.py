"""Handler-side helpers for the student chat: the state view, the interviewer, and one streamed turn.

A turn runs in its own task, detached from the HTTP response: if the phone's connection drops mid-reply,
the turn still finishes and is stored under the client's ``client_turn_id``, so the page's retry replays
the stored reply instead of running (and billing the CPU for) a second turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import msgspec
import structlog
from litestar import Request
from litestar.response import ServerSentEventMessage

from services.analytics import intake as intake_events
from services.coursepack import Course
from services.gateway import live
from services.gateway.container import Services
from services.gateway.errors import Conflict, PayloadTooLarge, Unprocessable
from services.gateway.intake.interview import Interviewer, Queued, TurnOutcome, draft_summary
from services.gateway.intake.models import (
    ChatMessage,
    DoneEvent,
    ErrorEvent,
    Flags,
    IntakeRecord,
    IntakeStatus,
    IntakeView,
    InterviewState,
    StudentSummary,
    SummaryStatus,
    TokenEvent,
)
from services.gateway.intake.queueing import GenerationLine
from services.gateway.intake.store import IntakeStore
from services.gateway.ports import ChatModel
from services.settings import Settings

FINISHED: frozenset[IntakeStatus] = frozenset({"complete", "partial", "escalated"})
_END = object()
T = TypeVar("T")
_tasks: set[asyncio.Task[Any]] = set()
log = structlog.get_logger()

ERROR_MESSAGES = {
    "inference_timeout": "The assistant took too long to answer. Your message is still here: send it again.",
    "inference_unavailable": "The assistant is not answering right now. Your message is still here: "
    "try sending it again in a minute.",
    "storage_unavailable": "We could not save your answer just now. Your message is still here: "
    "send it again.",
    "internal": "Something went wrong on our side. Your message is still here: try sending it again.",
}


def intake_store(services: Services) -> IntakeStore:
    return services.intakes


def chat_model(services: Services, record: IntakeRecord | None = None) -> ChatModel:
    """The intake's model, chosen in one place: ``services.model_for(record)`` (the default model, or the
    second one for the share of intakes written on their record; tests pass scripted ones to
    ``build_services``). It records every call in the model-call log against the intake, so build the
    interviewer through here with the record, whatever the streaming does."""
    return services.model_for(record)


def generation_line(services: Services) -> GenerationLine | None:
    """The line for the model shared by every gateway (``INTAKE_GENERATION_SLOTS``; 0: none). It holds no
    state of its own (everything is in Redis), so building one per turn costs nothing."""
    settings = services.settings
    if not settings.generation_slots:
        return None
    return GenerationLine(
        services.redis,
        limit=settings.generation_slots,
        max_wait_s=settings.generation_wait_s,
        lease_s=settings.inference_timeout_s * 2 + 30,
    )


def interviewer(
    services: Services, record: IntakeRecord | None = None, model: ChatModel | None = None
) -> Interviewer:
    """The interviewer of ``record`` (its own model), or of ``model`` when given (the warm-up's)."""
    return Interviewer(
        model or chat_model(services, record),
        services.retriever,
        services.settings,
        slots=generation_line(services),
        reader=services.reader,
        courses=list(services.catalog.courses.values()),
    )


def course_of(services: Services, record: IntakeRecord) -> Course:
    course = services.catalog.courses.get(record.course_slug)
    if course is None:
        raise Conflict("This course is no longer set up for intake chats. Please contact your instructor.")
    return course


def transcript_url(settings: Settings, staff_id: str) -> str:
    """The staff link in summaries, emails and the Cal.com note: the intake's own random ``staff_id``,
    never the student's token (whoever sees the note cannot post as the student); it asks for a login."""
    return f"{settings.public_url.rstrip('/')}/staff/intakes/{staff_id}"


def build_view(record: IntakeRecord, course: Course | None, settings: Settings) -> IntakeView:
    """``GET /api/intakes/{token}``: what the link holder (the student) may see."""
    booking = record.booking
    return IntakeView(
        status=record.status,
        turn=record.interview.turn,
        max_turns=settings.max_turns,
        messages=list(record.interview.messages),
        course=course.code if course else record.course_slug,
        course_title=course.title if course else "",
        instructor_name=(course.instructor_name if course else "") or booking.organizer.name,
        student_name=booking.student.name,
        appointment_start=booking.start_time,
        consented=record.consented_at is not None,
        retention_days=settings.retention_days,
        taken_over=record.taken_over,
        staff_name=(record.taken_over_by or "Course staff") if record.taken_over else "",
        summary=StudentSummary.of(record.summary) if record.summary else None,
    )


async def read_capped(request: Request[Any, Any, Any], cap: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes ``cap`` bytes (before it is all read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise PayloadTooLarge(f"The request is too large (over {cap} bytes).")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise PayloadTooLarge(f"The request is too large (over {cap} bytes).")
    return bytes(body)


def decode_body(raw: bytes, kind: type[T]) -> T:
    """msgspec validation errors become a readable 422 (the type carries the constraints)."""
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise Unprocessable(f"The request is not valid: {exc}") from None
    except msgspec.DecodeError:
        raise Unprocessable("The request body is not valid JSON.") from None


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Run ``coro`` past the end of the request; the set keeps the task from being garbage-collected."""
    task = asyncio.create_task(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return task


def copy_state(state: InterviewState) -> InterviewState:
    """A deep copy, so a failed turn leaves the stored interview exactly as it was."""
    return msgspec.json.decode(msgspec.json.encode(state), type=InterviewState)


class QueueEvent(msgspec.Struct, frozen=True):
    """SSE ``queue``: the model is busy; the student's place in line (1 = next), sent when it changes."""

    position: int


def token_event(text: str) -> ServerSentEventMessage:
    return _event("token", TokenEvent(text))


def queue_event(position: int) -> ServerSentEventMessage:
    return _event("queue", QueueEvent(position))


def done_event(status: IntakeStatus, turn: int) -> ServerSentEventMessage:
    return _event("done", DoneEvent(status, turn))


def error_event(code: str) -> ServerSentEventMessage:
    return _event("error", ErrorEvent(code, ERROR_MESSAGES.get(code, ERROR_MESSAGES["internal"])))


def _event(name: str, body: msgspec.Struct) -> ServerSentEventMessage:
    return ServerSentEventMessage(event=name, data=live.event_data(body))


def replay(record: IntakeRecord, client_turn_id: str) -> list[ServerSentEventMessage] | None:
    """The stored answer to an already-handled ``client_turn_id`` (a retry after a dropped stream)."""
    index = record.replies.get(client_turn_id)
    if index is None:
        return None
    messages = record.interview.messages
    events = [token_event(messages[index].text)] if 0 <= index < len(messages) else []
    return [*events, done_event(record.status, record.interview.turn)]


async def iterate(events: list[ServerSentEventMessage]) -> AsyncIterator[ServerSentEventMessage]:
    for event in events:
        yield event


class TurnRunner:
    """One student turn: holds the intake's turn lock (via ``lock``) until the turn is stored."""

    def __init__(
        self,
        services: Services,
        record: IntakeRecord,
        text: str,
        client_turn_id: str | None,
        lock: AsyncExitStack,
    ) -> None:
        self.services = services
        self.store = intake_store(services)
        self.record = record
        self.text = text
        self.client_turn_id = client_turn_id
        self.lock = lock
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.unlocked = asyncio.Event()  # ``done`` waits for it: the next message must find the lock free

    def start(self) -> AsyncIterator[ServerSentEventMessage]:
        """Start the turn now (it survives a dropped connection) and return its event stream."""
        spawn(self._produce())
        return self._events()

    async def _events(self) -> AsyncIterator[ServerSentEventMessage]:
        while (item := await self.queue.get()) is not _END:
            if item.event == "done":
                await self.unlocked.wait()
            yield item

    async def _produce(self) -> None:
        try:
            async with self.lock:
                if self.record.taken_over:
                    await self._store_for_staff()
                else:
                    await self._model_turn()
        except Exception as exc:  # any failure mid-stream becomes an error event, never a broken stream
            code = _error_code(exc)
            log.warning(
                "turn_failed", booking_uid=self.record.booking.uid, code=code, error=type(exc).__name__
            )
            self.queue.put_nowait(error_event(code))
            self.queue.put_nowait(done_event(self.record.status, self.record.interview.turn))
        finally:
            self.unlocked.set()  # the lock is released (or was never taken) by now
            self.queue.put_nowait(_END)

    async def _store_for_staff(self) -> None:
        """A staff member took over: keep the student's message, let the human answer from the staff page.

        Written onto the freshest record (compare-and-set), so a cancellation or a staff message that
        landed meanwhile is never undone."""
        text, turn_id = self.text, self.client_turn_id

        def keep(record: IntakeRecord) -> bool:
            if record.status == "cancelled":
                return False
            record.interview.messages.append(ChatMessage("student", text, to_staff=True))
            if turn_id:
                record.replies[turn_id] = -1
            return True

        self.record = await self.store.update(self.record.token, keep) or self.record
        log.info(
            "turn_stored_for_staff", booking_uid=self.record.booking.uid, turn=self.record.interview.turn
        )
        self.queue.put_nowait(done_event(self.record.status, self.record.interview.turn))

    async def _model_turn(self) -> None:
        course = course_of(self.services, self.record)
        state = copy_state(self.record.interview)
        outcome = await asyncio.wait_for(
            self._stream(interviewer(self.services, self.record), state, course),
            timeout=self.services.settings.inference_timeout_s * 3 + 10,  # the interviewer has its own
        )
        record = await self._commit(state, course, outcome)
        log.info(
            "turn_answered", booking_uid=record.booking.uid, turn=record.interview.turn, status=record.status
        )
        self.queue.put_nowait(done_event(record.status, record.interview.turn))

    async def _stream(self, iv: Interviewer, state: InterviewState, course: Course) -> TurnOutcome:
        outcome: TurnOutcome | None = None
        streamed = ""
        async for item in iv.turn(state, course, self.record.booking, self.text):
            if isinstance(item, TurnOutcome):
                outcome = item
            elif isinstance(item, Queued):
                self.queue.put_nowait(queue_event(item.position))
            elif item:
                streamed += item
                self.queue.put_nowait(token_event(item))
        if outcome is None:
            raise RuntimeError("the interviewer ended a turn without an outcome")
        if outcome.reply.startswith(streamed) and len(outcome.reply) > len(streamed):
            self.queue.put_nowait(token_event(outcome.reply[len(streamed) :]))
        return outcome

    async def _commit(self, state: InterviewState, course: Course, outcome: TurnOutcome) -> IntakeRecord:
        """Write the turn onto the freshest record, so a webhook (cancel, reschedule) is never undone."""
        record, version = await self.store.get_versioned(self.record.token)
        if record is None or record.status == "cancelled":
            return record or self.record
        raised = _raised(record.interview.flags, state.flags)
        key = raised
        if not raised and outcome.asked_for_person and record.acknowledged_at is not None:
            # asked for a person again after the staff had seen the first request: a new alert (its own
            # job key, so the first request's job does not swallow it)
            raised, key = "person", f"person-after-{record.acknowledged_at}"
        if raised:
            record.acknowledged_at, record.acknowledged_by = None, ""  # needs a person again
        record.interview = state
        if self.client_turn_id:
            record.replies[self.client_turn_id] = len(state.messages) - 1
        if record.status in ("active", "invited"):
            record.status = outcome.status
        finished = outcome.finished and record.status in ("complete", "escalated")
        if finished:
            summary_status: SummaryStatus = "escalated" if record.status == "escalated" else "complete"
            url = transcript_url(self.services.settings, record.staff_id)
            record.summary = draft_summary(state, course, record.booking, summary_status, url)
        if not await self.store.save(record, expect=version):
            return await self._commit(state, course, outcome)  # changed meanwhile: re-check, then again
        await intake_events.after_turn(self.services.events, record)
        if finished:
            await _enqueue_delivery(self.services, record)
        if raised:
            await self.services.alerts.alert_staff(record.token, record.booking.uid, raised, key=key)
            log.warning("staff_alerted", booking_uid=record.booking.uid, reason=raised)
        return record


def _raised(before: Flags, after: Flags) -> str | None:
    """What this turn newly flagged for the course's staff: ``distress`` or ``person`` (asked for one)."""
    if after.distress and not before.distress:
        return "distress"
    if after.escalated_to_human and not before.escalated_to_human:
        return "person"
    return None


async def _enqueue_delivery(services: Services, record: IntakeRecord) -> None:
    escalated = record.status == "escalated"
    await services.summaries.summary_ready(record.token, record.booking.uid, escalated=escalated)
    log.info("summary_enqueued", booking_uid=record.booking.uid, status=record.status)


def _error_code(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__:
        return "inference_timeout"
    module = type(exc).__module__
    if module.startswith("redis"):
        return "storage_unavailable"
    if module.startswith(("openai", "httpx", "httpcore")) or "Connection" in type(exc).__name__:
        return "inference_unavailable"
    return "internal"
