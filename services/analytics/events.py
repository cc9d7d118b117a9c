"""What goes onto the analytics stream, and the one function the rest of the code calls: ``emit``.

An event carries ids, never a student's personal data: the booking uid, an intake id (a hash of the
intake's token: the token itself is the student's capability and never leaves the intake store), the
student as an HMAC of their email under a per-installation salt kept in Redis, and the host (staff) by
email. Every event has an ``id`` that is the same however often the event is emitted (a retried webhook, a
replayed job): the consumer applies each id once, so emitting twice is harmless.

``week`` is the Monday (UTC) of the week the meeting is in: every figure is "for meetings in that week".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from typing import Literal

import msgspec
import redis.asyncio as aioredis
import structlog
from redis.asyncio.client import Pipeline

STREAM = "analytics:events"
FIELD = b"e"
_SALT = "analytics:salt"

EventKind = Literal[
    # Cal.com
    "booking_created",
    "booking_rescheduled",
    "booking_cancelled",
    "no_show",
    "meeting_ended",
    # the intake
    "intake_invited",
    "intake_consented",
    "intake_turn",
    "intake_completed",
    "intake_abandoned",
    "intake_escalated",
    "intake_taken_over",
    "summary_delivered",
    "student_rating",
    "professor_rating",
]
Actor = Literal["host", "attendee", "unknown", ""]
log = structlog.get_logger()


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One analytics event (JSON in the stream entry's ``e`` field)."""

    id: str  # idempotency key: the same for every copy of the same happening
    kind: EventKind
    course: str  # course slug
    week: str  # Monday of the meeting's week, YYYY-MM-DD (UTC)
    at: float  # when it happened (epoch seconds); orders "latest wins" values such as ratings
    booking: str = ""  # Cal.com booking uid
    previous: str = ""  # rescheduled: the old booking uid
    previous_week: str = ""  # rescheduled: the old meeting's week
    host: str = ""  # the organizer's email (staff)
    by: Actor = ""  # rescheduled / cancelled: who did it
    intake: str = ""  # hash of the intake token
    student: str = ""  # HMAC of the student's email
    turns: int = 0
    minutes: float = 0.0
    topic: str = ""
    assignment: str = ""
    section: str = ""  # "<source>#<heading>" of the course material the stuck point matched
    section_title: str = ""
    value: str = ""  # ratings: up / down, useful / not_useful; no_show: 1 / 0
    emitted: float = 0.0  # epoch seconds at emit (for the lag figures)


def week_of(moment: str | dt.datetime | float) -> str:
    """The Monday (UTC) of the week ``moment`` falls in."""
    if isinstance(moment, float | int):
        when = dt.datetime.fromtimestamp(moment, dt.UTC)
    elif isinstance(moment, str):
        when = dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))
        when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    else:
        when = moment
    day = when.astimezone(dt.UTC).date()
    return (day - dt.timedelta(days=day.weekday())).isoformat()


def epoch(moment: str) -> float:
    """RFC 3339 -> epoch seconds (0.0 when unreadable: the event then sorts first)."""
    try:
        when = dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def intake_id(token: str) -> str:
    """An intake's id in analytics: the token is a capability, so only a hash of it is kept."""
    return hashlib.sha256(b"intake\x00" + token.encode()).hexdigest()[:20]


def event_id(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


class EventLog:
    """Appends events to the stream, trimmed to the retention period (aggregates are kept).

    The stream is trimmed by age (``XADD ... MINID ~``: entries older than ``retention_days``), so a
    consumer that was down for a while still finds everything younger than that.
    """

    def __init__(self, redis: aioredis.Redis, retention_days: int) -> None:
        self._redis = redis
        self._keep_ms = max(1, retention_days) * 24 * 3600 * 1000
        self._salt: bytes | None = None

    async def emit(self, *events: Event) -> None:
        """Append events (in one round trip). Never raises: analytics must not fail a student's turn or a
        webhook."""
        if not events:
            return
        try:
            await self.append(list(events))
        except Exception as exc:
            log.warning("analytics_emit_failed", kind=events[0].kind, error=type(exc).__name__)

    async def append(self, events: list[Event]) -> None:
        """Append events in one round trip (raises on a Redis error; ``emit`` is the forgiving one)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            self.queue(pipe, events)
            await pipe.execute()

    def queue(self, pipe: Pipeline, events: Sequence[Event]) -> None:
        """Queue the events' appends on ``pipe``, to go in the round trip of its other commands."""
        min_id, entries = self.entries(events)
        for entry in entries:
            pipe.xadd(STREAM, {FIELD: entry}, minid=min_id, approximate=True)

    def entries(self, events: Sequence[Event]) -> tuple[str, list[bytes]]:
        """The events as they are appended (stamped now, JSON in the entry's ``FIELD``), and the ``MINID``
        that trims the stream with each append (``XADD STREAM MINID ~ <min id> * FIELD <entry>``)."""
        now = time.time()
        stamped = [msgspec.structs.replace(e, emitted=e.emitted or now) for e in events]
        return f"{int(now * 1000) - self._keep_ms}-0", [msgspec.json.encode(e) for e in stamped]

    async def student(self, email: str) -> str:
        """The student as analytics knows them: an HMAC of the email under this installation's salt."""
        if not email:
            return ""
        if self._salt is None:
            await self._redis.set(_SALT, secrets.token_hex(16).encode(), nx=True)
            raw = await self._redis.get(_SALT)
            self._salt = raw if isinstance(raw, bytes) else str(raw).encode()
        return hmac.digest(self._salt, email.strip().lower().encode(), "sha256").hex()[:20]  # (one C call)


def decode(raw: bytes) -> Event:
    return msgspec.json.decode(raw, type=Event)
