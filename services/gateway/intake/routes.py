"""The student's side: the chat page ``/i/{token}`` and its JSON/SSE API under ``/api/intakes/{token}``.

Status codes chosen (documented for the README):
- unknown token: 404; cancelled intake: 410 (page and API);
- message before consent, after the chat closed (complete/partial/escalated), or while another tab's
  turn is running: 409;
- empty or whitespace-only message, malformed JSON: 422;
- message over ``INTAKE_MAX_MESSAGE_CHARS`` characters, or a body over the byte cap: 413;
- consent, messages and rating over the chat's rate limits (per link and per client): 429.
The token is a capability: it is never logged and never written into a page (the page reads it from
its own address), and the page asks browsers not to send it on as a referrer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Literal

import msgspec
import structlog
from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.enums import MediaType
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath
from litestar.response import ServerSentEvent, ServerSentEventMessage

from services.analytics import intake as intake_events
from services.gateway import live
from services.gateway.container import Services
from services.gateway.errors import (
    Conflict,
    Gone,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unprocessable,
    UpstreamError,
    problems,
)
from services.gateway.intake import chat
from services.gateway.intake.models import IntakeRecord, IntakeView, MessageIn
from services.gateway.intake.store import IntakeStore, now_iso
from services.gateway.metrics import observe_turn
from services.gateway.ratelimit import LIMIT
from services.settings import REPO_ROOT

FRONTEND = REPO_ROOT / "frontend"
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
}
API_HEADERS = {"Cache-Control": "no-store"}
_SMALL_BODY_BYTES = 1024
_CHAT_LIMIT = {LIMIT: "chat"}
_PAGE_ERRORS = {
    404: ResponseSpec(None, description="Unknown link: a readable page", media_type=MediaType.HTML),
    410: ResponseSpec(None, description="Cancelled booking: a readable page", media_type=MediaType.HTML),
}
log = structlog.get_logger()


class RatingIn(msgspec.Struct, frozen=True):
    """``POST /api/intakes/{token}/rating``: the student's thumbs up/down on the chat."""

    value: Literal["up", "down"]


@get("/i/{token:str}", media_type=MediaType.HTML, responses=_PAGE_ERRORS)
async def chat_page(token: FromPath[str], state: State) -> Response[bytes]:
    """The chat page, or a readable page for a link that is unknown or whose booking was cancelled."""
    record = await _store(state).get(token)
    if record is None:
        return _page("not-found.html", 404)
    if record.status == "cancelled":
        return _page("cancelled.html", 410)
    return _page("chat.html", 200)


@get("/api/intakes/{token:str}", responses=problems(NotFound))
async def intake_state(token: FromPath[str], state: State) -> Response[IntakeView]:
    services: Services = state.services
    record = await _load(services, token)
    return _view(services, record)


_CONSENT_WAIT_S = 20.0


@post(
    "/api/intakes/{token:str}/consent",
    status_code=200,
    opt=_CHAT_LIMIT,
    responses=problems(NotFound, Conflict, Gone, TooManyRequests, UpstreamError),
)
async def consent(token: FromPath[str], state: State) -> Response[IntakeView]:
    """Record consent, prepare the interview and append the opening question (idempotent)."""
    services: Services = state.services
    store = chat.intake_store(services)
    record = await _load(services, token)
    _refuse_cancelled(record)
    if record.consented_at is None or not record.interview.messages:
        # right after booking the worker may hold the lock for a few seconds while it prepares the interview
        async with store.turn_lock(token, wait_s=_CONSENT_WAIT_S):
            found, version = await store.get_versioned(token)
            record = found or await _load(services, token)
            _refuse_cancelled(record)
            if record.consented_at is None or not record.interview.messages:
                await _start_interview(services, store, record, version)
    return _view(services, record)


@post(
    "/api/intakes/{token:str}/messages",
    status_code=200,
    opt=_CHAT_LIMIT,
    responses=problems(NotFound, Conflict, Gone, PayloadTooLarge, Unprocessable, TooManyRequests),
)
async def send_message(token: FromPath[str], request: Request, state: State) -> ServerSentEvent:
    """One student message in, the reply out as ``text/event-stream`` (see the module doc for errors)."""
    started = time.perf_counter()
    services: Services = state.services
    settings = services.settings
    store = chat.intake_store(services)
    record = await _load(services, token)
    cap = settings.max_message_chars * 6 + _SMALL_BODY_BYTES  # JSON-escaped characters take up to 6 bytes
    body = chat.decode_body(await chat.read_capped(request, cap), MessageIn)
    if body.client_turn_id and (events := chat.replay(record, body.client_turn_id)) is not None:
        return _stream(chat.iterate(events))
    _refuse_closed(record)
    text = _checked_text(body.text, settings.max_message_chars)
    lock = AsyncExitStack()
    await lock.enter_async_context(store.turn_lock(token, ttl_s=int(settings.inference_timeout_s * 3) + 60))
    try:
        record = await _load(services, token)
        if body.client_turn_id and (events := chat.replay(record, body.client_turn_id)) is not None:
            await lock.aclose()
            return _stream(chat.iterate(events))
        _refuse_closed(record)
    except BaseException:
        await lock.aclose()
        raise
    turn = chat.TurnRunner(services, record, text, body.client_turn_id, lock).start()
    return _stream(observe_turn(turn, started))


@get("/api/intakes/{token:str}/events", responses=problems(NotFound))
async def live_state(token: FromPath[str], state: State) -> ServerSentEvent:
    """The student's page live (``text/event-stream``): ``state`` (the intake as ``GET /api/intakes/{token}``
    shows it) now and after every change, e.g. a staff member's message or a take-over."""
    services: Services = state.services
    await _load(services, token)
    return _stream(_live_states(services, token))


async def _live_states(services: Services, token: str) -> AsyncIterator[ServerSentEventMessage]:
    async for change in live.watch(live.hub_of(services)):
        if change is live.Tick.KEEP_ALIVE:
            yield ServerSentEventMessage(comment="keep-alive")
        elif change is live.Tick.READY or change is live.Tick.RELOAD or change == token:
            record = await chat.intake_store(services).get(token)
            if record is None:
                return
            view = chat.build_view(
                record, services.catalog.courses.get(record.course_slug), services.settings
            )
            yield ServerSentEventMessage(event="state", data=live.event_data(view), retry=3000)
            if record.status == "cancelled":
                return


@post(
    "/api/intakes/{token:str}/rating",
    status_code=200,
    opt=_CHAT_LIMIT,
    responses=problems(NotFound, Conflict, Gone, PayloadTooLarge, Unprocessable, TooManyRequests),
)
async def rate_chat(token: FromPath[str], request: Request, state: State) -> Response[IntakeView]:
    """The student's thumbs up/down, once the chat is over; a second rating replaces the first."""
    services: Services = state.services
    record = await _load(services, token)
    _refuse_cancelled(record)
    if record.status not in chat.FINISHED:
        raise Conflict("You can rate the chat once it is finished.")
    body = chat.decode_body(await chat.read_capped(request, _SMALL_BODY_BYTES), RatingIn)
    store = chat.intake_store(services)

    def rate(fresh: IntakeRecord) -> bool:
        if fresh.status == "cancelled":
            return False
        fresh.student_rating = body.value
        return True

    record = await store.update(token, rate) or record  # on the freshest record: nothing else is undone
    _refuse_cancelled(record)
    log.info("chat_rated", booking_uid=record.booking.uid, value=body.value)
    await intake_events.rated(services.events, "student_rating", record, body.value)
    return _view(services, record)


async def _start_interview(
    services: Services, store: IntakeStore, record: IntakeRecord, version: int
) -> None:
    """Prepare, greet and store; written only over the version read (a cancellation that landed while
    the interview was prepared is not undone: the student gets 410, a concurrent change 409)."""
    course = chat.course_of(services, record)
    iv = chat.interviewer(services, record)
    if not record.interview.prompt:
        try:
            await iv.prepare(record.interview, course, record.booking)
        except Exception as exc:  # retrieval trouble must not leave a half-prepared interview behind
            log.warning("interview_prepare_failed", booking_uid=record.booking.uid, error=type(exc).__name__)
            raise UpstreamError(
                "We could not start the chat just now. Please try again in a minute."
            ) from None
    if not record.interview.messages:
        iv.opening(record.interview, course, record.booking)
    record.consented_at = record.consented_at or now_iso()
    if record.status == "invited":
        record.status = "active"
    if not await store.save(record, expect=version):
        _refuse_cancelled(await _load(services, token=record.token))
        raise Conflict("The chat changed while it was starting. Please try again.")
    log.info("intake_consented", booking_uid=record.booking.uid, course=record.course_slug)
    await intake_events.record_event(services.events, "intake_consented", record)
    chat.spawn(iv.warm(chat.copy_state(record.interview)))  # never raises; only saves first-reply time


def _store(state: State) -> IntakeStore:
    return chat.intake_store(state.services)


async def _load(services: Services, token: str) -> IntakeRecord:
    record = await chat.intake_store(services).get(token)
    if record is None:
        raise NotFound("This chat link is not valid. It may have expired, or the booking was removed.")
    return record


def _refuse_cancelled(record: IntakeRecord) -> None:
    if record.status == "cancelled":
        raise Gone("This booking was cancelled, so this chat is closed.")


def _refuse_closed(record: IntakeRecord) -> None:
    _refuse_cancelled(record)
    if record.consented_at is None:
        raise Conflict("Please read the note at the top and agree before starting the chat.")
    if record.status in chat.FINISHED:
        raise Conflict("This chat is already finished. Thank you! Your answers were sent to your instructor.")


def _checked_text(text: str, max_chars: int) -> str:
    text = text.strip()
    if not text:
        raise Unprocessable("Your message is empty. Type an answer, then send it.")
    if len(text) > max_chars:
        raise PayloadTooLarge(
            f"Your message is {len(text)} characters long; the limit is {max_chars}. Please shorten it.",
            extra={"max_chars": max_chars},
        )
    return text


def _view(services: Services, record: IntakeRecord) -> Response[IntakeView]:
    course = services.catalog.courses.get(record.course_slug)
    return Response(chat.build_view(record, course, services.settings), headers=API_HEADERS)


def _stream(events: AsyncIterator[ServerSentEventMessage]) -> ServerSentEvent:
    return ServerSentEvent(events, headers=API_HEADERS)


def _page(name: str, status: int) -> Response[bytes]:
    content = Path(FRONTEND / name).read_bytes()
    return Response(content, status_code=status, media_type=MediaType.HTML, headers=PAGE_HEADERS)


ROUTES = [chat_page, intake_state, consent, send_message, rate_chat, live_state]
