"""What each Cal.com trigger does to the intakes: create, move, close, or just record for analytics.

Cal.com may deliver twice, out of order, or not retry at all, so every handler is idempotent and fast
(Redis only; anything slow becomes an outbox job):

- a delivery is identified by (booking uid, trigger, createdAt); it is marked *seen* only after it was
  handled, and a short-lived *processing* marker stops a concurrent copy, so a delivery that failed
  halfway can simply be sent again;
- a per-booking tombstone (``cancelled`` / ``moved:<new uid>``) remembers what happened to a booking
  uid, so a late BOOKING_CREATED neither resurrects a cancelled booking nor creates a second intake
  for one that was already rescheduled;
- events for the same booking are serialised by a short Redis lock on its uid(s).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Literal, TypeVar

import msgspec
import structlog

from services.coursepack import Course
from services.gateway.container import Services
from services.gateway.delivery.locks import try_turn_lock
from services.gateway.delivery.outbox import Outbox, schedule_partial, unschedule_partial
from services.gateway.errors import BadRequest, Conflict, Unprocessable
from services.gateway.intake.models import Booking, IntakeRecord, InterviewState
from services.gateway.intake.store import IntakeStore, new_token, now_iso
from services.gateway.webhooks.payloads import (
    BookingPayload,
    Envelope,
    MeetingEnded,
    NoShowPayload,
    to_booking,
)

AckStatus = Literal["created", "rescheduled", "cancelled", "recorded", "ignored", "duplicate"]
BOOKING_TRIGGERS = ("BOOKING_CREATED", "BOOKING_RESCHEDULED", "BOOKING_CANCELLED")
EVENTS_STREAM = "intake:events"
EVENTS_MAXLEN = 10_000

_SEEN = "calcom:seen:{}"
_PROCESSING = "calcom:processing:{}"
_TOMBSTONE = "calcom:booking:{}"
_LOCK = "calcom:lock:{}"
_PROCESSING_TTL_S = 60
_LOCK_WAIT_S = 3.0
_INTAKE_WAIT_S = 2.0

log = structlog.get_logger()
T = TypeVar("T")


class Ack(msgspec.Struct, frozen=True):
    """The 2xx body: what the delivery did (``duplicate`` when it had been handled already)."""

    status: AckStatus


def decode_envelope(body: bytes) -> Envelope:
    """400 for bytes that are not JSON, 422 for JSON that is not a Cal.com webhook."""
    try:
        return msgspec.json.decode(body, type=Envelope)
    except msgspec.ValidationError as exc:
        raise Unprocessable(f"Not a Cal.com webhook: {exc}") from None
    except msgspec.DecodeError:
        raise BadRequest("The body is not valid JSON.") from None


def _decode(raw: bytes | msgspec.Raw, kind: type[T], trigger: str) -> T:
    if bytes(raw).strip() in (b"", b"null"):
        raise Unprocessable(f"{trigger} without a payload.")
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise Unprocessable(f"Malformed {trigger} payload: {exc}") from None


async def handle_webhook(services: Services, envelope: Envelope, body: bytes) -> Ack:
    """Dispatch one verified delivery, exactly once per (booking uid, trigger, createdAt)."""
    trigger = envelope.trigger_event
    handler = _Handlers(services)
    if trigger in BOOKING_TRIGGERS:
        booking = _decode(envelope.payload, BookingPayload, trigger)
        uid, uids = booking.uid, [booking.uid, booking.reschedule_uid or booking.uid]
        run = partial(handler.booking, trigger, booking)
    elif trigger == "MEETING_ENDED":
        ended = _decode(body, MeetingEnded, trigger)
        uid, uids = ended.uid, [ended.uid]
        run = partial(
            handler.record, trigger, uid, envelope.created_at, event_type_id=ended.event_type_id or ""
        )
    elif trigger == "BOOKING_NO_SHOW_UPDATED":
        no_show = _decode(envelope.payload, NoShowPayload, trigger)
        uid, uids = no_show.booking_uid, [no_show.booking_uid]
        marked = sum(1 for a in no_show.attendees if a.no_show)
        run = partial(handler.record, trigger, uid, envelope.created_at, no_show_attendees=marked)
    else:
        log.info("webhook_ignored", trigger=trigger[:64], reason="unhandled_trigger")
        return Ack("ignored")
    key = _delivery_key(uid, trigger, envelope.created_at, body)
    return await handle_once(services, key, uids, run, trigger=trigger, booking_uid=uid)


def _delivery_key(uid: str, trigger: str, created_at: str, body: bytes) -> str:
    stamp = created_at or hashlib.sha256(body).hexdigest()
    return hashlib.sha256(f"{uid}\x00{trigger}\x00{stamp}".encode()).hexdigest()


async def handle_once(
    services: Services,
    key: str,
    uids: Sequence[str],
    run: Callable[[], Awaitable[Ack]],
    *,
    trigger: str,
    booking_uid: str,
) -> Ack:
    redis = services.redis
    if await redis.exists(_SEEN.format(key)):
        log.info("webhook_duplicate", trigger=trigger, booking_uid=booking_uid)
        return Ack("duplicate")
    if not await redis.set(_PROCESSING.format(key), b"1", nx=True, ex=_PROCESSING_TTL_S):
        log.info("webhook_duplicate", trigger=trigger, booking_uid=booking_uid, in_progress=True)
        return Ack("duplicate")
    try:
        async with _booking_locks(services, uids):
            ack: Ack = await run()
        await redis.set(_SEEN.format(key), b"1", ex=_keep_s(services))
    finally:
        await redis.delete(_PROCESSING.format(key))
    log.info("webhook_handled", trigger=trigger, booking_uid=booking_uid, outcome=ack.status)
    return ack


@asynccontextmanager
async def _booking_locks(services: Services, uids: Sequence[str]) -> AsyncIterator[None]:
    """Serialise events touching the same booking(s); locks are taken in sorted order to avoid deadlock."""
    owner = secrets.token_hex(8).encode()
    taken: list[str] = []
    try:
        for uid in sorted(set(uids)):
            deadline = time.monotonic() + _LOCK_WAIT_S
            while not await services.redis.set(_LOCK.format(uid), owner, nx=True, ex=30):
                if time.monotonic() > deadline:
                    raise Conflict(
                        "Another delivery for this booking is being handled; send it again shortly."
                    )
                await asyncio.sleep(0.05)
            taken.append(uid)
        yield
    finally:
        for uid in taken:
            if await services.redis.get(_LOCK.format(uid)) == owner:
                await services.redis.delete(_LOCK.format(uid))


def _keep_s(services: Services) -> int:
    return max(7, services.settings.retention_days + 1) * 24 * 3600


class _Handlers:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.redis = services.redis
        self.store = IntakeStore(services.redis, services.settings.retention_days)
        self.outbox = Outbox(services.redis, services.settings)

    async def booking(self, trigger: str, payload: BookingPayload) -> Ack:
        if trigger == "BOOKING_CREATED":
            return await self.created(payload)
        if trigger == "BOOKING_RESCHEDULED":
            return await self.rescheduled(payload)
        return await self.cancelled(payload)

    # --- BOOKING_CREATED ---------------------------------------------------------------------------

    async def created(self, payload: BookingPayload) -> Ack:
        fate = await self._tombstone(payload.uid)
        if fate:
            log.info("webhook_ignored", booking_uid=payload.uid, reason=f"booking_{fate.split(':')[0]}")
            return Ack("ignored")
        return await self._create_if_new(payload)

    async def _create_if_new(self, payload: BookingPayload) -> Ack:
        if await self.store.token_for_booking(payload.uid):
            return Ack("duplicate")
        course = self._course(payload)
        if course is None:
            return Ack("ignored")
        await self._create(course, to_booking(payload))
        return Ack("created")

    # --- BOOKING_RESCHEDULED -----------------------------------------------------------------------

    async def rescheduled(self, payload: BookingPayload) -> Ack:
        old_uid = payload.reschedule_uid
        record = await self.store.get_by_booking(old_uid) if old_uid else None
        if record is None or record.status == "cancelled":
            ack = await self._reschedule_without_intake(payload)
        else:
            await self._move(record, to_booking(payload), old_uid or "")
            ack = Ack("rescheduled")
        if old_uid and old_uid != payload.uid:
            await self._set_tombstone(old_uid, f"moved:{payload.uid}")
        return ack

    async def _reschedule_without_intake(self, payload: BookingPayload) -> Ack:
        """No intake for the old booking (never created, or a CREATED still in flight): create one now."""
        if await self._tombstone(payload.uid) == "cancelled":
            return Ack("ignored")
        return await self._create_if_new(payload)

    async def _move(self, record: IntakeRecord, new: Booking, old_uid: str) -> None:
        """The intake follows the booking: new uid and times, every message the student wrote kept."""
        async with self._quiet(record.token):
            record = await self.store.get(record.token) or record
            notes = new.notes or record.booking.notes
            record.booking = msgspec.structs.replace(new, notes=notes)
            await self.store.move_booking(record, old_uid)
        if record.status in ("invited", "active"):
            await schedule_partial(self.redis, self.services.settings, record.token, new.start_time)
        elif record.summary is not None and record.status != "cancelled":
            # the note on Cal.com belongs to the old booking: write it onto the new one as well
            summary = msgspec.structs.replace(
                record.summary, booking_uid=new.uid, appointment_start=new.start_time
            )
            await self.outbox.enqueue(
                "summary_calcom",
                record.token,
                summary=summary,
                booking=record.booking,
                course_slug=record.course_slug,
            )
        if await self._tombstone(new.uid) == "cancelled":
            await self._close(record)
        log.info("intake_rescheduled", booking_uid=new.uid, old_booking_uid=old_uid)

    # --- BOOKING_CANCELLED -------------------------------------------------------------------------

    async def cancelled(self, payload: BookingPayload) -> Ack:
        await self._set_tombstone(payload.uid, "cancelled")
        record = await self.store.get_by_booking(payload.uid)
        if record is not None and record.status != "cancelled":
            await self._close(record)
        return Ack("cancelled")

    async def _close(self, record: IntakeRecord) -> None:
        """Closed for good: the transcript and summary are deleted; the token still shows a kind page."""
        async with self._quiet(record.token):
            record = await self.store.get(record.token) or record
            record.status = "cancelled"
            record.interview = InterviewState()
            record.summary = None
            record.replies = {}
            await self.store.save(record)
        cancelled_jobs = await self.outbox.cancel_for(record.token)
        await unschedule_partial(self.redis, record.token)
        log.info("intake_cancelled", booking_uid=record.booking.uid, cancelled_jobs=cancelled_jobs)

    # --- MEETING_ENDED / BOOKING_NO_SHOW_UPDATED ---------------------------------------------------

    async def record(self, trigger: str, uid: str, created_at: str, **fields: str | int) -> Ack:
        """Analytics only: a capped stream of events, without names or emails."""
        entry = {"trigger": trigger, "booking_uid": uid, "created_at": created_at, "received_at": now_iso()}
        entry.update({k: str(v) for k, v in fields.items()})
        await self.redis.xadd(EVENTS_STREAM, entry, maxlen=EVENTS_MAXLEN, approximate=True)  # type: ignore[arg-type]
        return Ack("recorded")

    # --- helpers -----------------------------------------------------------------------------------

    def _course(self, payload: BookingPayload) -> Course | None:
        course = self.services.catalog.for_event_type(payload.event_type_id, payload.type)
        if course is None:
            log.info(
                "webhook_ignored",
                reason="unknown_event_type",
                booking_uid=payload.uid,
                event_type_id=payload.event_type_id,
                event_type_slug=(payload.type or "")[:100],
            )
        return course

    async def _create(self, course: Course, booking: Booking) -> IntakeRecord:
        now = now_iso()
        record = IntakeRecord(
            token=new_token(), booking=booking, course_slug=course.slug, created_at=now, updated_at=now
        )
        await self.store.save(record)
        await schedule_partial(self.redis, self.services.settings, record.token, booking.start_time)
        await self.outbox.enqueue("prepare", record.token, course_slug=course.slug)
        if booking.student.email:
            await self.outbox.enqueue("invite_email", record.token, course_slug=course.slug)
        log.info("intake_created", booking_uid=booking.uid, course=course.slug)
        return record

    async def _tombstone(self, uid: str) -> str | None:
        raw = await self.redis.get(_TOMBSTONE.format(uid))
        return raw.decode() if isinstance(raw, bytes) else raw

    async def _set_tombstone(self, uid: str, fate: str) -> None:
        await self.redis.set(_TOMBSTONE.format(uid), fate.encode(), ex=_keep_s(self.services))

    @asynccontextmanager
    async def _quiet(self, token: str) -> AsyncIterator[None]:
        """Hold the intake's turn lock if we can get it soon, so a reply being written does not
        overwrite the change; after a short wait proceed anyway (the booking change wins)."""
        lock = await try_turn_lock(self.store, token, _INTAKE_WAIT_S)
        try:
            yield
        finally:
            if lock is not None:
                await lock.__aexit__(None, None, None)
