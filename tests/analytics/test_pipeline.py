"""The event pipeline against a real Redis: Cal.com's sample payloads -> events -> the consumer group ->
aggregates. Replays, a dead consumer, out-of-order deliveries, who rescheduled."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from services.analytics.aggregates import Aggregates
from services.analytics.calcom import webhook_events
from services.analytics.consumer import GROUP, Consumer, rebuild, state_ttl_s
from services.analytics.events import STREAM, Event, EventLog, decode, event_id, week_of
from services.coursepack import CalcomMapping, Catalog, Course
from services.settings import Settings
from tests.analytics.conftest import fold_all, snapshot

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "calcom"
HOST = "ana.rivera@univ.example.edu"
STUDENT = "sam.lee@student.example.edu"
OLD, NEW = "b7Yx2Lq9Kd1pQmRw3sT8vZ", "Rk3nV8mQ2wXz5tYb7cLp1d"
OLD_WEEK, NEW_WEEK = week_of("2026-12-03T15:00:00Z"), week_of("2026-12-04T16:00:00Z")


def catalog() -> Catalog:
    course = Course(
        slug="writ101",
        code="WRIT 101",
        title="Academic Writing",
        instructor_name="Dr. Ana Rivera",
        instructor_email=HOST,
        calcom=CalcomMapping(event_type_ids=[3101]),
    )
    return Catalog(courses={"writ101": course}, problems=[])


def sample(name: str, **payload: Any) -> dict[str, Any]:
    data = copy.deepcopy(json.loads((SAMPLES / f"{name}.json").read_text()))
    data["payload" if "payload" in data else "_"] = {**data.get("payload", {}), **payload}
    return data


async def deliver(log: EventLog, data: dict[str, Any], key: str | None = None, status: str = "") -> None:
    body = json.dumps(data).encode()
    for event in await webhook_events(catalog(), log, body, key or event_id(body.decode()), status):
        await log.emit(event)


async def week(redis: aioredis.Redis, week_start: str) -> dict[str, int | str]:
    return await Aggregates(redis, 3600).week("writ101", week_start)


def intake_event(kind: str, n: int, **fields: Any) -> Event:
    base: dict[str, Any] = {
        "course": "writ101",
        "week": OLD_WEEK,
        "at": 1_790_000_000.0 + n,
        "intake": f"i{n % 7}",
    }
    return Event(id=event_id(kind, str(n)), kind=kind, **{**base, **fields})  # type: ignore[arg-type]


async def a_semester_of_events(log: EventLog) -> None:
    """Bookings, moves, a cancellation, no-shows, and intakes with ratings changed on the way."""
    await deliver(log, sample("booking_created"), status="created")
    await deliver(log, sample("booking_rescheduled"))
    await deliver(log, sample("booking_no_show_updated"))
    await deliver(log, sample("booking_created", uid="other-1", bookingId=1), status="created")
    await deliver(log, sample("booking_cancelled", uid="other-1", cancelledBy=HOST))
    await deliver(log, sample("meeting_ended"))
    for n in range(20):
        await log.emit(intake_event("intake_consented", n))
        await log.emit(intake_event("intake_turn", n))
        if n % 3:
            await log.emit(intake_event("intake_completed", n, turns=5 + n % 3, minutes=4.0 + n))
            await log.emit(intake_event("student_rating", n, value="up" if n % 2 else "down"))
        else:
            await log.emit(intake_event("intake_abandoned", n))
        await log.emit(
            intake_event(
                "summary_delivered",
                n,
                topic="thesis",
                assignment="essay-2",
                section="notes.md#Claims",
                student=f"s{n % 4}",
            )
        )


async def test_replaying_the_stream_gives_the_same_aggregates(
    redis: aioredis.Redis, log: EventLog, settings: Settings
) -> None:
    """Folding the stream twice (rewound group) changes nothing; clearing everything and folding again from
    the start rebuilds exactly the same aggregates."""
    await a_semester_of_events(log)
    consumer = Consumer(redis, settings, "one")
    await consumer.ensure_group()
    entries = await fold_all(consumer)
    first = await snapshot(redis)
    assert entries == await redis.xlen(STREAM) and first, "everything was folded into something"
    assert (await week(redis, OLD_WEEK))["intakes:started"] == 7, "seven distinct intakes (ids i0..i6)"

    await redis.xgroup_setid(STREAM, GROUP, id="0")
    assert await fold_all(consumer) == entries, "the rewound group read every entry again"
    assert await snapshot(redis) == first, "a replay over the aggregates is a no-op"

    assert await rebuild(redis, settings) > 0
    assert await snapshot(redis) == {}, "the rebuild starts from nothing"
    await fold_all(Consumer(redis, settings, "two"))
    assert await snapshot(redis) == first, "the same figures from an empty Redis"


async def test_a_dead_consumers_pending_entries_are_claimed_and_folded(
    redis: aioredis.Redis, log: EventLog, settings: Settings
) -> None:
    """A consumer that read a batch and died before acknowledging it loses nothing: another consumer
    claims the entries once they are idle for ``analytics_claim_idle_s`` and folds them."""
    await a_semester_of_events(log)
    dead = Consumer(redis, settings, "dead")
    await dead.ensure_group()
    total = await redis.xlen(STREAM)
    read = await redis.xreadgroup(GROUP, "dead", {STREAM: ">"}, count=total)  # ... and then it was killed
    assert len(read[0][1]) == total
    assert (await redis.xpending(STREAM, GROUP))["pending"] == total
    survivor = Consumer(redis, settings, "survivor")
    assert await fold_all(survivor) == 0, "nothing new: the dead consumer had read it all"
    assert await snapshot(redis) == {}, "so nothing is folded yet"

    await asyncio.sleep(0.3)  # longer than analytics_claim_idle_s (0.2 s)
    assert await survivor.claim() == total
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 0
    figures = await week(redis, OLD_WEEK)
    assert figures["bookings"] == 2 and figures["intakes:started"] == 7
    names = [c["name"] for c in await redis.xinfo_consumers(STREAM, GROUP)]
    assert b"survivor" in names


async def test_a_reschedule_before_its_creation_counts_one_booking(
    redis: aioredis.Redis, log: EventLog, settings: Settings
) -> None:
    """Cal.com's deliveries out of order (reschedule, no-show, then the creation) give the same figures as
    in order: one booking in the original meeting's week, one reschedule, one no-show."""
    await deliver(log, sample("booking_rescheduled"))
    await deliver(log, sample("booking_no_show_updated", bookingUid=NEW))
    await deliver(log, sample("booking_created"), status="created")
    await fold_all(Consumer(redis, settings, "c"))
    out_of_order = await snapshot(redis)
    old = await week(redis, OLD_WEEK)
    assert old["bookings"] == 1 and old[f"host:{HOST}:bookings"] == 1
    assert old["reschedules"] == 1 and old[f"host:{HOST}:reschedules_attendee"] == 1
    assert (await week(redis, NEW_WEEK))[f"host:{HOST}:no_shows"] == 1, "joined to the new booking's week"

    await redis.flushdb()
    await deliver(log, sample("booking_created"), status="created")
    await deliver(log, sample("booking_rescheduled"))
    await deliver(log, sample("booking_no_show_updated", bookingUid=NEW))
    await fold_all(Consumer(redis, settings, "c"))
    assert await snapshot(redis) == out_of_order


async def test_a_no_show_unmarked_later_is_not_counted_whatever_the_order(
    redis: aioredis.Redis, log: EventLog, settings: Settings
) -> None:
    """The latest no-show update (by Cal.com's createdAt) wins, even when the older one arrives last."""
    marked = sample("booking_no_show_updated")
    unmarked = sample("booking_no_show_updated", attendees=[{"email": STUDENT, "noShow": False}])
    unmarked["createdAt"] = "2026-12-03T18:00:00.000Z"
    await deliver(log, unmarked)
    await deliver(log, sample("booking_created"), status="created")
    await deliver(log, marked)
    await fold_all(Consumer(redis, settings, "c"))
    assert (await week(redis, OLD_WEEK)).get("no_shows", 0) == 0
    assert (await week(redis, OLD_WEEK))["bookings"] == 1


async def test_rescheduled_by_tells_host_from_attendee(
    redis: aioredis.Redis, log: EventLog, settings: Settings
) -> None:
    """``rescheduledBy`` naming the attendee is the student's move; the organizer's (or anyone else who is
    not an attendee) is the host's; none at all is counted as unknown, neither of the two."""
    await deliver(log, sample("booking_rescheduled"))  # by the student
    await deliver(
        log, sample("booking_rescheduled", uid="n2", rescheduleUid="o2", rescheduledBy=HOST.upper())
    )
    await deliver(
        log,
        sample("booking_rescheduled", uid="n3", rescheduleUid="o3", rescheduledBy="admin@univ.example.edu"),
    )
    await deliver(log, sample("booking_rescheduled", uid="n4", rescheduleUid="o4", rescheduledBy=None))
    await fold_all(Consumer(redis, settings, "c"))
    figures = await week(redis, OLD_WEEK)
    assert figures[f"host:{HOST}:reschedules_attendee"] == 1
    assert figures[f"host:{HOST}:reschedules_host"] == 2
    assert figures[f"host:{HOST}:reschedules_unknown"] == 1
    assert figures[f"host:{HOST}:bookings"] == 4


async def test_events_hold_no_student_personal_data(redis: aioredis.Redis, log: EventLog) -> None:
    """Neither the stream nor the aggregates contain the student's email or name."""
    await deliver(log, sample("booking_created"), status="created")
    await deliver(log, sample("booking_no_show_updated"))
    raw = b"".join(fields[b"e"] for _, fields in await redis.xrange(STREAM))
    assert b"invited" in raw, "the created delivery also counts an invitation"
    assert STUDENT.encode() not in raw and b"Sam Lee" not in raw
    assert HOST.encode() in raw, "hosts are staff, keyed by email"


async def test_the_stream_is_trimmed_to_the_retention_period(
    redis: aioredis.Redis, settings: Settings
) -> None:
    """XADD trims entries older than the retention period (by entry time): the stream cannot grow forever."""
    old_ms = 1_000_000_000_000
    for n in range(200):
        await redis.xadd(STREAM, {b"e": b"{}"}, id=f"{old_ms + n}-0")
    await EventLog(redis, settings.retention_days).append([intake_event("intake_turn", 1)])
    assert await redis.xlen(STREAM) < 201
    assert state_ttl_s(settings) > settings.retention_days * 24 * 3600


async def test_a_consumer_cancelled_mid_batch_loses_and_doubles_nothing(
    redis: aioredis.Redis, log: EventLog, settings: Settings
) -> None:
    """A consumer that applied half a batch and died before acknowledging it: the survivor claims the
    whole batch, applies the other half and skips the half already applied (by id), so the figures equal
    those of a clean fold."""
    await a_semester_of_events(log)
    clean = Consumer(redis, settings, "clean")
    await fold_all(clean)
    expected = await snapshot(redis)
    assert await rebuild(redis, settings) > 0

    halfway = asyncio.Event()

    class Dying(Consumer):
        async def fold(self, entries: Any) -> None:
            half = [decode(fields[b"e"]) for _, fields in entries[: len(entries) // 2]]
            await self.aggregates.apply(half)
            halfway.set()
            await asyncio.Event().wait()  # killed here: never acknowledges

    task = asyncio.create_task(Dying(redis, settings, "dying").run(asyncio.Event()))
    await asyncio.wait_for(halfway.wait(), 10)
    task.cancel()
    assert (await redis.xpending(STREAM, GROUP))["pending"] == await redis.xlen(STREAM)
    partial = await snapshot(redis)
    assert partial and partial != expected, "half the batch was applied, not all of it"

    await asyncio.sleep(0.3)  # longer than analytics_claim_idle_s
    await Consumer(redis, settings, "survivor").claim()
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 0
    assert await snapshot(redis) == expected


async def test_an_event_redis_refuses_is_skipped_not_blocking(
    redis: aioredis.Redis, log: EventLog, settings: Settings
) -> None:
    """One event whose operations fail in Redis (here: a counter someone overwrote with text) is logged and
    acknowledged; the rest of its batch is folded, and the stream goes on."""
    await redis.hset(f"analytics:agg:writ101:{OLD_WEEK}", "intakes:abandoned", "not a number")
    await log.emit(intake_event("intake_consented", 1))
    await log.emit(intake_event("intake_abandoned", 2))
    await log.emit(intake_event("intake_consented", 3))
    await fold_all(Consumer(redis, settings, "c"))
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 0
    assert (await week(redis, OLD_WEEK))["intakes:started"] == 2
