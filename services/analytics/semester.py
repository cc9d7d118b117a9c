"""A synthetic semester for the analytics dashboard: ``make demo-semester``.

Fifteen weeks of office hours for every course of the catalog, ending this week: bookings that follow
the assignments' due dates, reschedules by students and by hosts (one host per course moves 25 % of its
bookings, above the flag threshold; the others 5 %), cancellations, no-shows, meetings that ended, and
intakes (invited, started, completed or abandoned, a few escalated or taken over) whose summaries name the
course's real topics, assignments and sections: facts only, no model. Ratings from students and
professors too.

The events go onto the same stream the webhooks and the chat feed, with the same ids on every run for the
same seed (running it twice adds nothing), and the running ``analytics`` program folds them in seconds.
It creates no intakes, sends no email and queues no job. Students are random ids; hosts are the course's
instructor and ``[[staff]]`` from course.toml, plus invented TAs (``@example.edu``) when a course has fewer
than three.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import random
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from services.analytics.consumer import GROUP, Consumer
from services.analytics.events import STREAM, Event, EventKind, EventLog, event_id
from services.coursepack import Course, load_catalog
from services.gateway.logs import configure_logging
from services.settings import Settings, SettingsError, load_settings

WEEKS = 15
_HEADING = re.compile(r"^##\s+(.+?)\s*$", re.MULTILINE)


def hosts_of(course: Course) -> list[str]:
    """The course's hosts: instructor first, then its staff, padded with invented TAs up to three."""
    hosts = [course.instructor_email.lower(), *sorted(m.email.lower() for m in course.staff)]
    for n in range(1, 4):
        if len(hosts) >= 3:
            break
        hosts.append(f"ta{n}.{course.slug}@example.edu")
    return hosts


def flagged_host(course: Course) -> str:
    """The one host per course the demo makes reschedule too often (the second: a TA, not the instructor)."""
    return hosts_of(course)[1]


def sections_of(course: Course) -> list[tuple[str, str]]:
    """(``source#heading``, readable label) for every ``## `` section of the course's Markdown notes."""
    found: list[tuple[str, str]] = []
    folder = Path(course.path)
    for path in sorted(folder.rglob("*.md")) if folder.is_dir() else []:
        source = path.relative_to(folder).as_posix()
        if source.startswith(("syllabus", "faq")):
            continue
        for heading in _HEADING.findall(path.read_text(encoding="utf-8", errors="replace"))[:4]:
            found.append((f"{source}#{heading}", f"{heading} ({source})"))
    return found or [("notes.md#Overview", "Overview (notes.md)")]


def semester(course: Course, today: dt.date, seed: int = 7) -> Iterator[Event]:
    """Every event of the course's synthetic semester, in a plausible order."""
    rng = random.Random(f"{seed}:{course.slug}")
    hosts = hosts_of(course)
    high = flagged_host(course)
    sections = sections_of(course)
    topics = [t.id for t in course.topics] or ["other"]
    monday = today - dt.timedelta(days=today.weekday())
    seen: dict[str, int] = dict.fromkeys(hosts, 0)
    for back in range(WEEKS - 1, -1, -1):
        week = monday - dt.timedelta(weeks=back)
        # this week's hot spot: one section many students are stuck on
        hot = sections[(WEEKS - back) % len(sections)]
        for n in range(_bookings_in(course, week, rng)):
            uid = f"demo-{course.slug}-{week.isoformat()}-{n}"
            host = rng.choice(hosts)
            seen[host] += 1
            # the host moves every 4th of the flagged host's bookings (25%), every 20th of the others' (5%)
            by_host = seen[host] % (4 if host == high else 20) == 0
            # half of this week's meetings have happened already, even on a Monday, so this week's
            # figures (the hot spot among them) are never empty early in the week
            met = back == 0 and n % 2 == 0
            yield from _booking(course, week, uid, (host, by_host, met), rng, hot, sections, topics, today)


def _bookings_in(course: Course, week: dt.date, rng: random.Random) -> int:
    """More bookings in a week with a due date (and the week before), as office hours really go."""
    due = [a.due for a in course.assignments if a.due]
    busy = any(dt.timedelta(0) <= (d - week) < dt.timedelta(days=14) for d in due)
    return rng.randint(14, 20) + (10 if busy else 0)


class _Maker:
    """Events of one booking: the course, week and host filled in, ids derived from the booking uid."""

    def __init__(self, course: Course, week: dt.date, uid: str, host: str) -> None:
        self.course, self.week, self.uid, self.host = course.slug, week.isoformat(), uid, host

    def __call__(self, kind: EventKind, when: dt.datetime, *about: str, **fields: Any) -> Event:
        base: dict[str, Any] = {"course": self.course, "week": self.week, "host": self.host}
        return Event(
            id=event_id("demo", self.uid, kind, *about), kind=kind, at=when.timestamp(), **{**base, **fields}
        )


def _booking(
    course: Course,
    week: dt.date,
    uid: str,
    meeting_kind: tuple[str, bool, bool],  # host, moved by the host, met already this week
    rng: random.Random,
    hot: tuple[str, str],
    sections: Sequence[tuple[str, str]],
    topics: Sequence[str],
    today: dt.date,
) -> Iterator[Event]:
    host, by_host, met = meeting_kind
    day = rng.randint(0, 4)
    start = dt.datetime.combine(week, dt.time(14, 0), dt.UTC) + dt.timedelta(
        days=min(day, today.weekday()) if met else day
    )
    booked = start - dt.timedelta(days=rng.randint(1, 6), hours=rng.randint(0, 9))
    make = _Maker(course, week, uid, host)
    yield make("booking_created", booked, booking=uid)
    student = f"demo-student-{rng.randint(1, 400)}"
    meeting, by = uid, ""
    if by_host:
        by = "host"
    elif rng.random() < 0.10:
        by = "attendee"
    if by:
        meeting = f"{uid}-moved"
        moved = booked + dt.timedelta(hours=10)
        yield make(
            "booking_rescheduled", moved, booking=meeting, previous=uid, previous_week=week.isoformat(), by=by
        )
    if rng.random() < 0.06:
        yield make("booking_cancelled", start - dt.timedelta(hours=3), booking=meeting, by="attendee")
        return
    intake = event_id("demo-intake", uid)[:20]
    yield make("intake_invited", booked, intake=intake, student=student)
    if start.date() > today:
        return  # still to come: invited only
    yield from _intake(make, booked, start, (intake, student), rng, (hot, sections, topics), course)
    if rng.random() < 0.07:
        yield make(
            "no_show", start + dt.timedelta(minutes=25), booking=meeting, value="1", course="", week=""
        )
    else:
        yield make("meeting_ended", start + dt.timedelta(minutes=20), booking=meeting)


def _intake(
    make: _Maker,
    booked: dt.datetime,
    start: dt.datetime,
    who: tuple[str, str],
    rng: random.Random,
    where: tuple[tuple[str, str], Sequence[tuple[str, str]], Sequence[str]],
    course: Course,
) -> Iterator[Event]:
    if rng.random() > 0.86:
        return  # never opened the link
    hot, sections, topics = where
    fields = {"intake": who[0], "student": who[1]}
    consented = booked + dt.timedelta(minutes=rng.randint(5, 600))
    yield make("intake_consented", consented, **fields)
    turns = rng.randint(5, 8)
    for turn in range(1, turns + 1):
        yield make("intake_turn", consented + dt.timedelta(minutes=turn), str(turn), **fields)
    finished = consented + dt.timedelta(minutes=rng.randint(3, 14))
    if rng.random() < 0.015:
        yield make("intake_escalated", finished, **fields)
    elif rng.random() < 0.85:
        minutes = (finished - consented).total_seconds() / 60
        yield make("intake_completed", finished, turns=turns, minutes=minutes, **fields)
    else:
        yield make("intake_abandoned", start - dt.timedelta(hours=2), **fields)
    if rng.random() < 0.03:
        yield make("intake_taken_over", finished, **fields)
    section, label = hot if rng.random() < 0.3 else rng.choice(sections)
    assignment = _assignment_of(course, section)
    yield make(
        "summary_delivered",
        finished,
        topic=rng.choice(topics),
        assignment=assignment,
        section=section,
        section_title=label,
        **fields,
    )
    if rng.random() < 0.6:
        yield make("student_rating", finished, value="up" if rng.random() < 0.85 else "down", **fields)
    if rng.random() < 0.7:
        value = "useful" if rng.random() < 0.84 else "not_useful"
        yield make("professor_rating", start + dt.timedelta(hours=1), value=value, **fields)


def _assignment_of(course: Course, section: str) -> str:
    """The assignment a section belongs to: its sheet's, else one fixed per section (a stuck point is
    about one assignment, so the students on the same section group together)."""
    source = section.split("#")[0]
    sheet = next((a.id for a in course.assignments if a.file and source.endswith(a.file)), "")
    if sheet or not course.assignments:
        return sheet
    return course.assignments[
        int(hashlib.sha256(section.encode()).hexdigest(), 16) % len(course.assignments)
    ].id


async def load(
    redis: aioredis.Redis, settings: Settings, courses: Sequence[Course], today: dt.date | None = None
) -> int:
    """Append the semester of every course to the stream; returns how many events."""
    log = EventLog(redis, settings.retention_days)
    today = today or dt.datetime.now(dt.UTC).date()
    total, batch = 0, []
    for course in courses:
        for event in semester(course, today):
            batch.append(event)
            if len(batch) >= 1000:
                await log.append(batch)
                total, batch = total + len(batch), []
    await log.append(batch)
    return total + len(batch)


async def wait_folded(redis: aioredis.Redis, timeout_s: float) -> bool:
    """True once the consumer group has read and acknowledged everything on the stream."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        last = await redis.xrevrange(STREAM, count=1)
        groups = {g["name"]: g for g in await redis.xinfo_groups(STREAM)} if last else {}
        group = groups.get(GROUP.encode()) or groups.get(GROUP)
        if last and group and group["pending"] == 0 and group["last-delivered-id"] == last[0][0]:
            return True
        await asyncio.sleep(0.5)
    return False


async def _main(args: argparse.Namespace) -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    catalog = load_catalog(Path(settings.corpus_dir))
    courses = [c for slug, c in sorted(catalog.courses.items()) if not args.course or slug in args.course]
    redis = aioredis.from_url(settings.redis_url)
    try:
        count = await load(redis, settings, courses)
        print(f"demo semester: {count} events for {', '.join(c.slug for c in courses)} on the stream")
        if args.fold:
            consumer = Consumer(redis, settings, "demo-semester")
            await consumer.ensure_group()
            while await consumer.step(wait=False):
                pass
        elif not await wait_folded(redis, args.wait):
            print("the analytics program has not folded them yet: is it running? (make status, or --fold)")
            return
        flagged = ", ".join(f"{flagged_host(c)} ({c.slug})" for c in courses)
        print(f"folded. Hosts flagged for reschedules: {flagged}")
        print(f"Dashboard: {settings.public_url.rstrip('/')}/staff/analytics")
    finally:
        await redis.aclose()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.analytics.semester", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--course", action="append", help="only this course slug (repeatable)")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the analytics program")
    parser.add_argument(
        "--fold", action="store_true", help="fold here instead of waiting for the analytics program"
    )
    try:
        asyncio.run(_main(parser.parse_args(argv)))
    except SettingsError as exc:
        raise SystemExit(f"demo-semester: configuration error: {exc}") from None


if __name__ == "__main__":
    main()
