"""What each Cal.com trigger does to the intakes: create, move, close, or just record for analytics.

Cal.com may deliver twice, out of order, or not retry at all, so every handler is idempotent and fast
(Redis only; anything slow becomes a job on the queue):

- a delivery is identified by (booking uid, trigger, createdAt); it is marked *seen* only after it was
  handled, and a short-lived *processing* marker makes a copy that arrives meanwhile a 409 (the sender
  retries it; acknowledging it would drop it if the first copy then failed), so a delivery that failed
  halfway can simply be sent again;
- an intake is created in one Redis script together with its jobs (the invitation among them) and the
  delivery's own last writes (analytics events, *seen*, its locks freed); the script marks the intake
  *setup pending* first and clears the mark once its jobs are queued, so a creation that stopped half-way
  (or one an older gateway left) is completed by a retried delivery or the worker's ``finish_setups``
  cron, and the invitation is never lost; a BOOKING_CREATED of a known course has its intake made
  ready before the claim, which runs that script itself once it holds every lock and finds no tombstone
  (one round trip in all), and otherwise leaves the creation to the handler as before;
- a per-booking tombstone (``cancelled`` / ``moved:<new uid>``) remembers what happened to a booking
  uid, so a late BOOKING_CREATED neither resurrects a cancelled booking nor creates a second intake
  for one that was already rescheduled;
- events for the same booking are serialised by a short Redis lock on its uid(s).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, TypeVar

import msgspec
import structlog
from redis.asyncio.client import Pipeline

from services.analytics import calcom as analytics
from services.analytics.events import FIELD, STREAM
from services.coursepack import Course
from services.gateway import locks
from services.gateway.container import Services
from services.gateway.delivery.email import delete_mail_about
from services.gateway.delivery.queue import ENQUEUE_LUA, Batch, finish_setup
from services.gateway.errors import BadRequest, Conflict, Unprocessable
from services.gateway.intake.models import Booking, IntakeRecord, InterviewState, Person
from services.gateway.intake.store import CREATE_LUA, new_token, now_iso
from services.gateway.ratelimit import Deferred, count_lua
from services.gateway.webhooks.payloads import (
    BookingPayload,
    Envelope,
    MeetingEnded,
    NoShowPayload,
    to_booking,
)

AckStatus = Literal["created", "rescheduled", "cancelled", "recorded", "ignored", "duplicate"]
BOOKING_TRIGGERS = ("BOOKING_CREATED", "BOOKING_RESCHEDULED", "BOOKING_CANCELLED")

_SEEN = "calcom:seen:{}"
_PROCESSING = "calcom:processing:{}"
_TOMBSTONE = "calcom:booking:{}"
_LOCK = "calcom:lock:{}"
_PROCESSING_TTL_S = 60
# KEYS seen, processing, a key to read, the rate-limit window, then the booking locks in order; ARGV owner,
# marker ttl, lock ttl (ms), '1' to read the third key, the window's length (s; '0': no limit counted here),
# the limit. Every reply starts {outcome, hits, ttl}: the request as the window counted it (0, 0 with none).
# Outcome -3: over the limit (nothing else done); -1: handled already; -2: a copy has the marker; n: the
# marker is ours, and the first n locks too (taken in order, stopping at the first one someone else holds);
# once every lock is ours, a fourth element: the third key's value, read under them (nil when it has none)
_CLAIM_LUA = (
    """
local function claim(last)
  local hits, ttl = 0, 0
  if ARGV[5] ~= '0' then
"""
    + count_lua("KEYS[4]", "ARGV[5]")
    + """
    if hits > tonumber(ARGV[6]) then return {-3, hits, ttl} end
  end
  if redis.call('EXISTS', KEYS[1]) == 1 then return {-1, hits, ttl} end
  if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {-2, hits, ttl} end
  local taken = 0
  for i = 5, last do
    if not redis.call('SET', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[3]) then return {taken, hits, ttl} end
    taken = taken + 1
  end
  if ARGV[4] == '1' then return {taken, hits, ttl, redis.call('GET', KEYS[3])} end
  return {taken, hits, ttl}
end
"""
)
_CLAIM = _CLAIM_LUA + "return claim(#KEYS)"
_CLAIM_SHA = locks.script_sha(_CLAIM)
# A new booking's intake and everything after it, in one step: the create script's KEYS and ARGV first (6
# and 5), then the jobs' (ARGV 6: how many, ARGV 7: their lists' ttl, then 3 per job; 6 KEYS per job), then
# the delivery's tail: KEYS the analytics stream, seen, then its locks; ARGV seen's ttl, the stream's MINID,
# its entries' field, the number of entries, the entries, then the locks' owners. Nothing is written when
# the booking has an intake already: {token, 0}. Else {token, 1, the jobs' outcomes, how many entries failed}
# (an analytics entry that fails is counted, never fails the step). Without the tail's KEYS, no tail.
_CREATE_AND_FINISH_LUA = (
    "local function create_and_finish(KEYS, ARGV)\n"
    + CREATE_LUA
    + ENQUEUE_LUA
    + """
local existing = create()
if existing then return {existing, 0} end
local n = tonumber(ARGV[6])
local outcome = enqueue(6, 7, n, ARGV[7])
redis.call('ZREM', KEYS[5], ARGV[2])
local k, a = 6 + 6 * n, 7 + 3 * n
local failed = 0
if #KEYS > k then
  local e = tonumber(ARGV[a + 4])
  for i = 1, e do
    local entry = ARGV[a + 4 + i]
    local added = redis.pcall('XADD', KEYS[k + 1], 'MINID', '~', ARGV[a + 2], '*', ARGV[a + 3], entry)
    if type(added) == 'table' and added.err then failed = failed + 1 end
  end
  redis.call('SET', KEYS[k + 2], '1', 'EX', ARGV[a + 1])
  for i = k + 3, #KEYS do
    if redis.call('GET', KEYS[i]) == ARGV[a + 4 + e + i - k - 2] then redis.call('DEL', KEYS[i]) end
  end
end
return {ARGV[2], 1, outcome, failed}
end
"""
)
_CREATE_AND_FINISH = _CREATE_AND_FINISH_LUA + "return create_and_finish(KEYS, ARGV)"
_CREATE_AND_FINISH_SHA = locks.script_sha(_CREATE_AND_FINISH)
# A new booking's delivery in one round trip: the claim (its KEYS and ARGV 1-6 as above; ARGV 7: the index
# of its last KEY), and once it holds every lock and the booking has no tombstone, ``_CREATE_AND_FINISH`` on
# the KEYS after the claim's and the ARGV after the seventh (its tail frees the marker and the locks). The
# claim's reply, with the tombstone's nil as its fourth element and the creation's reply after it when the
# creation ran; without it (the claim stopped short, or found a tombstone) nothing but the claim was done.
_CLAIM_AND_CREATE = (
    _CLAIM_LUA
    + _CREATE_AND_FINISH_LUA
    + """
local last = tonumber(ARGV[7])
local claimed = claim(last)
if claimed[1] ~= last - 4 or claimed[4] then return claimed end
local keys, argv = {}, {}
for i = last + 1, #KEYS do keys[#keys + 1] = KEYS[i] end
for i = 8, #ARGV do argv[#argv + 1] = ARGV[i] end
local created = create_and_finish(keys, argv)
for i = 1, #created do claimed[4 + i] = created[i] end
return claimed
"""
)
_CLAIM_AND_CREATE_SHA = locks.script_sha(_CLAIM_AND_CREATE)
_LOCK_TTL_S = 30
_LOCK_WAIT_S = 3.0
_INTAKE_WAIT_S = 2.0

log = structlog.get_logger()
T = TypeVar("T")


class Ack(msgspec.Struct, frozen=True):
    """The 2xx body: what the delivery did (``duplicate`` when it had been handled already)."""

    status: AckStatus


@dataclass
class Creation:
    """A new intake with its jobs, made ready for ``_CREATE_AND_FINISH`` (its KEYS and ARGV, no tail)."""

    course: Course
    record: IntakeRecord
    batch: Batch
    keys: list[str]
    args: list[bytes | str | int | float]


@dataclass
class Delivery:
    """What one delivery's steps share to save Redis round trips (each one costs the gateway more CPU than
    the work it carries): the request's rate-limit count and the booking's tombstone, both taken by the
    claim (the tombstone under the booking's lock), and the writes that follow a successful run (analytics
    events), which go in the round trip that marks the delivery seen and frees its locks; a run that
    creates an intake does all of that itself, in the step that creates it (``finished``)."""

    tail: Pipeline
    limit: Deferred | None = None  # the request's rate limit, not counted yet: the claim counts it
    peek: str = ""  # the key the claim reads (a tombstone); "" for none
    peeked: bytes | None = None
    fresh: bool = False  # the claim took every lock, so ``peeked`` still holds
    lenient: list[int] = field(default_factory=list)  # tail commands whose failure is only logged
    ahead: analytics.Ahead = field(default_factory=analytics.Ahead)  # its events, for a run that writes them
    seen: tuple[str, int] | None = None  # the seen mark (key, ttl) and the locks held, once they all are
    held: list[locks.RedisLock] = field(default_factory=list)
    last_step: bool = False  # a creation is the run's last step (BOOKING_CREATED), so it may write the tail
    finished: bool = False  # the run wrote the tail itself: seen, locks freed, events
    noted: dict[str, Any] = field(default_factory=dict)  # what the run adds to the delivery's log line
    creation: Creation | None = None  # a new booking's intake, made ready for the claim to create it
    created: list[Any] | None = None  # the creation's reply, when the claim created it

    async def tail_script(self) -> tuple[list[str], list[bytes | str | int | float]] | None:
        """The tail as ``_CREATE_AND_FINISH`` writes it (KEYS, ARGV; ``ahead``'s events for ``created``),
        or None when the run cannot write it itself (outside ``handle_once``, with more in the tail, or with
        more to do after the creation)."""
        if self.seen is None or len(self.tail) or not self.last_step:
            return None
        return await self.tail_for(self.seen, [(lock.key, lock.owner) for lock in self.held])

    async def tail_for(
        self, seen: tuple[str, int], held: Sequence[tuple[str, str]]
    ) -> tuple[list[str], list[bytes | str | int | float]]:
        """The tail that marks ``seen`` and frees the locks ``held`` (key, owner)."""
        min_id, entries = await self.ahead.entries("created") if self.ahead.entries else ("0-0", [])
        keys = [STREAM, seen[0], *[key for key, _ in held]]
        owners = [owner for _, owner in held]
        args: list[bytes | str | int | float] = [seen[1], min_id, FIELD, len(entries), *entries, *owners]
        return keys, args

    def take_creation(self, uid: str) -> Creation | None:
        """The creation made ready for booking ``uid`` (once)."""
        creation, self.creation = self.creation, None
        return creation if creation is not None and creation.record.booking.uid == uid else None

    def tombstone(self, uid: str) -> tuple[bool, bytes | None]:
        """(known, value) of ``uid``'s tombstone as the claim read it."""
        return self.fresh and self.peek == _TOMBSTONE.format(uid), self.peeked


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


async def handle_webhook(
    services: Services, envelope: Envelope, body: bytes, limit: Deferred | None = None
) -> Ack:
    """Dispatch one verified delivery, exactly once per (booking uid, trigger, createdAt). ``limit``: the
    request's rate limit, still to be counted (by the claim; a 429 when it is over)."""
    trigger = envelope.trigger_event
    delivery = Delivery(tail=services.redis.pipeline(transaction=False), limit=limit)
    handler = _Handlers(services, delivery)
    if trigger in BOOKING_TRIGGERS:
        booking = _decode(envelope.payload, BookingPayload, trigger)
        uid, uids = booking.uid, [booking.uid, booking.reschedule_uid or booking.uid]
        if trigger == "BOOKING_CREATED":  # its first step reads the tombstone: the claim does
            delivery.peek, delivery.last_step = _TOMBSTONE.format(uid), True
            course = services.catalog.for_event_type(booking.event_type_id, booking.type)
            if course is not None:  # a new intake, most likely: the claim creates it in its own step
                delivery.creation = await handler.prepare(course, to_booking(booking))
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
        if limit is not None:
            await limit.check()
        log.info("webhook_ignored", trigger=trigger[:64], reason="unhandled_trigger")
        return Ack("ignored")
    key = _delivery_key(uid, trigger, envelope.created_at, body)
    # the delivery's events, inside its handling (written with the seen mark)
    run = analytics.tracked(
        services, run, body, key, tail=delivery.tail, lenient=delivery.lenient, ahead=delivery.ahead
    )
    return await handle_once(services, key, uids, run, trigger=trigger, booking_uid=uid, delivery=delivery)


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
    delivery: Delivery | None = None,
) -> Ack:
    """``run`` once per ``key``, holding the booking locks of ``uids``; ``delivery``'s tail goes with the
    seen mark."""
    redis = services.redis
    delivery = delivery or Delivery(tail=redis.pipeline(transaction=False))
    # events for the same booking(s) one at a time; locks taken in sorted order to avoid deadlock
    lock_keys = [_LOCK.format(uid) for uid in sorted(set(uids))]
    claimed = await _claim(services, key, lock_keys, delivery)
    if claimed == "seen":
        log.info("webhook_duplicate", trigger=trigger, booking_uid=booking_uid)
        return Ack("duplicate")
    if claimed is None:
        log.info("webhook_in_progress", trigger=trigger, booking_uid=booking_uid)
        raise Conflict("This delivery is being handled right now; send it again shortly.")
    held = claimed
    try:
        for lock_key in lock_keys[len(held) - 1 :]:  # the ones another delivery held a moment ago: wait
            lock = await locks.acquire(redis, lock_key, ttl_s=_LOCK_TTL_S, wait_s=_LOCK_WAIT_S)
            if lock is None:
                raise Conflict("Another delivery for this booking is being handled; send it again shortly.")
            held.append(lock)
        delivery.seen, delivery.held = (_SEEN.format(key), _keep_s(services)), held
        ack: Ack = await run()
        if not delivery.finished:  # (a creation wrote all of this in its own step)
            # handled: what the run left to write, then seen, then every lock freed (in that order, one trip)
            async with delivery.tail as pipe:
                mine = len(pipe)
                pipe.set(delivery.seen[0], b"1", ex=delivery.seen[1])
                for lock in reversed(held):
                    lock.release_with(pipe)
                _raise_failures(await pipe.execute(raise_on_error=False), delivery.lenient, mine)
        held = []
    finally:
        for lock in reversed(held):  # it failed half-way: free it for the sender's retry
            await lock.release()
    # one line per delivery (each is a flushed write): a creation adds its course and jobs to it
    log.info(
        "webhook_handled", trigger=trigger, booking_uid=booking_uid, outcome=ack.status, **delivery.noted
    )
    return ack


def _raise_failures(results: Sequence[object], lenient: Sequence[int], mine: int) -> None:
    """The tail's errors: an analytics event's is logged (analytics never fails a delivery); any other
    raises, so the delivery fails and its sender retries it."""
    for i, result in enumerate(results):
        if not isinstance(result, Exception):
            continue
        if i < mine and i in lenient:
            log.warning("analytics_emit_failed", kind="webhook", error=type(result).__name__)
            continue
        raise result


async def _claim(
    services: Services, key: str, lock_keys: Sequence[str], delivery: Delivery
) -> list[locks.RedisLock] | Literal["seen"] | None:
    """In one round trip: the request's rate-limit count first (429 when it is over: nothing else done),
    then ``"seen"`` for a delivery handled already, None while another copy holds its *processing*
    marker, else the marker and every booking lock that was free (in order, up to the first one another
    delivery holds); with every lock taken, also ``delivery.peek``'s value. With ``delivery.creation``
    (a new booking), once every lock is ours and the booking has no tombstone, the creation too, with the
    delivery's tail (``delivery.created``: its reply)."""
    redis = services.redis
    owner = secrets.token_hex(8)
    marker = _PROCESSING.format(key)
    seen = _SEEN.format(key)
    limit = delivery.limit if delivery.limit is not None and not delivery.limit.counted else None
    keys = [seen, marker, delivery.peek or seen, limit.key if limit else seen, *lock_keys]
    args: list[bytes | str | int | float] = [
        owner,
        _PROCESSING_TTL_S * 1000,
        _LOCK_TTL_S * 1000,
        "1" if delivery.peek else "0",
        limit.window_s if limit else 0,
        limit.limit if limit else 0,
    ]
    creation = delivery.creation if delivery.peek and delivery.last_step and not len(delivery.tail) else None
    if creation is None:
        reply = await locks.run_script(redis, _CLAIM, _CLAIM_SHA, keys, args)
    else:
        held = [(k, owner) for k in [marker, *lock_keys]]
        tail_keys, tail_args = await delivery.tail_for((seen, _keep_s(services)), held)
        args += [len(keys), *creation.args, *tail_args]
        keys += [*creation.keys, *tail_keys]
        try:
            reply = await locks.run_script(redis, _CLAIM_AND_CREATE, _CLAIM_AND_CREATE_SHA, keys, args)
        except Exception:
            if limit is not None and not limit.counted:
                limit.counted = True  # the script counts first: failing later, it counted the request
            for lock_key, _ in held:  # what it took before it failed: free for the sender's retry
                await locks.RedisLock(redis, lock_key, owner).release()
            raise
    if limit is not None:
        limit.settle(reply[1], reply[2])  # over the limit: 429
    taken = int(reply[0])
    if taken == -1:
        return "seen"
    if taken < 0:
        return None
    if len(reply) > 3:
        delivery.peeked, delivery.fresh = reply[3], True
    if len(reply) > 4:
        delivery.created = list(reply[4:])
    return [locks.RedisLock(redis, k, owner) for k in [marker, *lock_keys[:taken]]]


def _keep_s(services: Services) -> int:
    return max(7, services.settings.retention_days + 1) * 24 * 3600


class _Handlers:
    def __init__(self, services: Services, delivery: Delivery) -> None:
        self.services = services
        self.delivery = delivery
        self.redis = services.redis
        self.store = services.intakes
        self.jobs = services.jobs

    async def booking(self, trigger: str, payload: BookingPayload) -> Ack:
        if trigger == "BOOKING_CREATED":
            return await self.created(payload)
        if trigger == "BOOKING_RESCHEDULED":
            return await self.rescheduled(payload)
        return await self.cancelled(payload)

    # --- BOOKING_CREATED ---------------------------------------------------------------------------

    async def created(self, payload: BookingPayload) -> Ack:
        known, raw = self.delivery.tombstone(payload.uid)  # read by the claim, under the booking's lock
        fate = _text(raw) if known else await self._tombstone(payload.uid)
        if fate:
            log.info("webhook_ignored", booking_uid=payload.uid, reason=f"booking_{fate.split(':')[0]}")
            return Ack("ignored")
        return await self._create_if_new(payload)

    async def _create_if_new(self, payload: BookingPayload) -> Ack:
        """The create script itself finds an intake the booking already has, so a known course needs no
        read first; for an unknown one, an intake made while it was known still gets finished."""
        creation = self.delivery.take_creation(payload.uid)  # made ready before the claim
        if creation is not None:
            return await self._create(creation)
        course = self.services.catalog.for_event_type(payload.event_type_id, payload.type)
        if course is not None:
            return await self._create(await self.prepare(course, to_booking(payload)))
        token = await self.store.token_for_booking(payload.uid)
        if token:
            return await self._finish_if_half_created(token)
        self._log_unknown_course(payload)
        return Ack("ignored")

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
        """The intake follows the booking: new uid and times, every message the student wrote kept.

        A compare-and-set write: a chat turn stored meanwhile is kept, and the turn's own write after
        this one sees the new booking instead of putting the old one back.
        """
        async with self._quiet(record.token):
            for _ in range(20):
                fresh, version = await self.store.get_versioned(record.token)
                record = fresh or record
                notes = new.notes or record.booking.notes
                record.booking = msgspec.structs.replace(new, notes=notes)
                if await self.store.move_booking(record, old_uid, expect=version if fresh else None):
                    break
            else:
                raise Conflict("This intake is changing too fast; send the delivery again shortly.")
        if record.status in ("invited", "active"):
            await self.jobs.schedule_partial(record)
            await self.jobs.schedule_reminder(record)
        elif record.summary is not None and record.status != "cancelled":
            # the note on Cal.com belongs to the old booking: write it onto the new one as well
            summary = msgspec.structs.replace(
                record.summary, booking_uid=new.uid, appointment_start=new.start_time
            )
            await self.jobs.write_note(record, summary)
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
        """Closed for good: the transcript, the summary and the student's details are deleted, with every
        job (and its snapshot), the mail files and our block in the Cal.com note; the token still shows a
        kind page.

        A compare-and-set write, so a chat turn that commits afterwards finds the intake cancelled and
        drops its reply instead of writing the transcript back.
        """

        def close(fresh: IntakeRecord) -> None:
            fresh.status = "cancelled"
            fresh.interview = InterviewState()
            fresh.summary = None
            fresh.replies = {}
            fresh.booking = msgspec.structs.replace(fresh.booking, student=Person("", ""), title="", notes="")

        async with self._quiet(record.token):
            await self.store.update(record.token, close)
        cancelled_jobs = await self.jobs.purge_for(record)
        mail = delete_mail_about(self.services.settings, [record.token, record.staff_id, record.booking.uid])
        log.info(
            "intake_cancelled", booking_uid=record.booking.uid, cancelled_jobs=cancelled_jobs, mail_files=mail
        )

    # --- MEETING_ENDED / BOOKING_NO_SHOW_UPDATED ---------------------------------------------------

    async def record(self, trigger: str, uid: str, created_at: str, **fields: str | int) -> Ack:
        """Analytics only: the delivery's event goes onto the analytics stream (``analytics.tracked``)."""
        return Ack("recorded")

    # --- helpers -----------------------------------------------------------------------------------

    def _log_unknown_course(self, payload: BookingPayload) -> None:
        log.info(
            "webhook_ignored",
            reason="unknown_event_type",
            booking_uid=payload.uid,
            event_type_id=payload.event_type_id,
            event_type_slug=(payload.type or "")[:100],
        )

    async def prepare(self, course: Course, booking: Booking) -> Creation:
        """The record (its model written on it) and its jobs, as ``_CREATE_AND_FINISH`` takes them."""
        now = now_iso()
        record = IntakeRecord(
            token=new_token(), booking=booking, course_slug=course.slug, created_at=now, updated_at=now
        )
        self.jobs.assign_model(record)
        keys, args = self.store.creation(record)
        batch = await self.jobs.batch(self.jobs.intake_jobs(record))
        keys += batch.keys
        args += [len(batch.jobs), self.jobs.keep_s(), *batch.args]
        return Creation(course, record, batch, keys, args)

    async def _create(self, creation: Creation) -> Ack:
        """The record, its model and its jobs in one Redis step (``_CREATE_AND_FINISH``), with the
        delivery's tail when it can go there too; nothing when the booking has an intake already. A new
        booking's claim may have taken that step already (``Delivery.created``)."""
        reply, self.delivery.created = self.delivery.created, None
        with_tail = reply is not None
        if reply is None:
            keys, args = creation.keys, creation.args
            tail = await self.delivery.tail_script()
            if tail is not None:
                keys, args, with_tail = keys + tail[0], args + tail[1], True
            reply = await locks.run_script(self.redis, _CREATE_AND_FINISH, _CREATE_AND_FINISH_SHA, keys, args)
        if not int(reply[1]):  # the booking has an intake already (this delivery's earlier copy, or the
            return await self._finish_if_half_created(_text(reply[0]) or "")  # process died before its jobs)
        self.delivery.noted["course"] = creation.course.slug
        self.jobs.queued(creation.batch, reply[2], note=self.delivery.noted)
        if with_tail:
            self.delivery.finished = self.delivery.ahead.written = True
            for _ in range(int(reply[3])):
                log.warning("analytics_emit_failed", kind="webhook", error="ResponseError")
        return Ack("created")

    async def _finish_if_half_created(self, token: str) -> Ack:
        """A delivery for a booking that has an intake: a duplicate, unless the first delivery's process
        died before the intake's jobs were queued; then this retry finishes the job and says so."""
        if not await self.store.setup_pending(token):
            return Ack("duplicate")
        await finish_setup(self.store, self.jobs, token)
        log.info("intake_setup_completed_by_retry")
        return Ack("created")

    async def _tombstone(self, uid: str) -> str | None:
        return _text(await self.redis.get(_TOMBSTONE.format(uid)))

    async def _set_tombstone(self, uid: str, fate: str) -> None:
        await self.redis.set(_TOMBSTONE.format(uid), fate.encode(), ex=_keep_s(self.services))

    @asynccontextmanager
    async def _quiet(self, token: str) -> AsyncIterator[None]:
        """Hold the intake's turn lock if we can get it soon, so a route that writes under it without a
        version check (consent, rating) does not overwrite the change; after a short wait proceed anyway:
        the compare-and-set write already protects against a chat turn that runs for minutes."""
        lock = await self.store.try_turn_lock(token, _INTAKE_WAIT_S)
        try:
            yield
        finally:
            if lock is not None:
                await lock.release()


def _text(raw: bytes | str | None) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw
