"""The aggregates read back as the figures staff see (the JSON API, the page, the charts, the weekly email).

Pure arithmetic over the per-week hashes (``figures``), plus one function that reads them from Redis
(``course_analytics``). Rates are ``null`` when there is nothing to divide by, never a made-up 0.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Mapping

import msgspec

from services.analytics.aggregates import Aggregates
from services.coursepack import Course

ABANDON_TARGET = 0.20  # the brief's targets, shown next to the figures
USEFUL_TARGET = 0.80
Week = Mapping[str, int | str]


class HostFigures(msgspec.Struct, frozen=True, kw_only=True):
    email: str
    bookings: int
    reschedules_by_host: int
    reschedules_by_attendee: int
    reschedule_rate: float  # reschedules by the host / bookings
    flagged: bool  # reschedule_rate above the threshold
    cancellations: int
    no_shows: int
    reschedules_unknown: int = 0  # Cal.com did not say who
    cancellations_by_host: int = 0
    meetings: int = 0  # MEETING_ENDED received


class IntakeFigures(msgspec.Struct, frozen=True, kw_only=True):
    started: int  # the student agreed and the chat began
    completed: int
    abandoned: int  # started, not finished before the meeting
    completion_rate: float | None
    useful_rate: float | None  # professors' "useful" / all professor ratings
    median_turns: float | None
    invited: int = 0
    abandon_rate: float | None = None
    median_minutes: float | None = None  # from agreeing to the last answer
    escalations: int = 0
    taken_over: int = 0
    summaries: int = 0
    useful: int = 0
    not_useful: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0


class TopicFigures(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    title: str
    this_week: int
    last_week: int


class StuckGroup(msgspec.Struct, frozen=True, kw_only=True):
    """Students this week whose stuck point matched the same section of the course materials."""

    assignment: str
    assignment_title: str
    section: str
    section_title: str
    students: int


class WeekFigures(msgspec.Struct, frozen=True, kw_only=True):
    week: str  # Monday, YYYY-MM-DD
    bookings: int
    reschedules_by_host: int
    cancellations: int
    no_shows: int
    started: int
    completed: int
    abandoned: int


class Analytics(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /staff/api/analytics``."""

    course: str
    course_code: str
    course_title: str
    weeks: int
    from_week: str
    this_week: str
    threshold: float
    hosts: list[HostFigures]
    intakes: IntakeFigures
    topics: list[TopicFigures]
    assignments: list[TopicFigures]
    sections: list[TopicFigures]
    stuck: list[StuckGroup]
    weekly: list[WeekFigures]
    abandon_target: float = ABANDON_TARGET
    useful_target: float = USEFUL_TARGET


def window(weeks: int, today: dt.date | None = None) -> list[str]:
    """The Mondays of the ``weeks`` weeks ending with this one, oldest first."""
    day = today or dt.datetime.now(dt.UTC).date()
    monday = day - dt.timedelta(days=day.weekday())
    return [(monday - dt.timedelta(weeks=n)).isoformat() for n in range(weeks - 1, -1, -1)]


async def course_analytics(
    aggregates: Aggregates, course: Course, weeks: int, threshold: float, today: dt.date | None = None
) -> Analytics:
    mondays = window(max(weeks, 2), today)
    rows = await aggregates.weeks(course.slug, mondays)
    return figures(
        course, [rows[m] for m in mondays[-weeks:]], mondays[-weeks:], rows[mondays[-2]], threshold
    )


def figures(course: Course, rows: list[Week], mondays: list[str], last: Week, threshold: float) -> Analytics:
    total = _sum(rows)
    this = rows[-1]
    return Analytics(
        course=course.slug,
        course_code=course.code,
        course_title=course.title,
        weeks=len(rows),
        from_week=mondays[0],
        this_week=mondays[-1],
        threshold=threshold,
        hosts=hosts(total, threshold),
        intakes=intakes(total),
        topics=_compare(this, last, "topic:", lambda i: t.title if (t := course.topic(i)) else _other(i)),
        assignments=_compare(
            this, last, "assignment:", lambda i: a.title if (a := course.assignment(i)) else i
        ),
        sections=_compare(
            this, last, "section:", lambda i: str(this.get(f"label:{i}") or last.get(f"label:{i}") or i)
        ),
        stuck=stuck(course, this),
        weekly=[_week(m, r) for m, r in zip(mondays, rows, strict=True)],
    )


def hosts(total: Week, threshold: float) -> list[HostFigures]:
    """One row per host seen in the window, flagged ones first, then by bookings."""
    per_host: dict[str, Counter[str]] = {}
    for field, value in total.items():
        if field.startswith("host:") and isinstance(value, int):
            email, _, name = field[5:].rpartition(":")
            per_host.setdefault(email, Counter())[name] += value
    rows = [_host(email, counts, threshold) for email, counts in per_host.items()]
    return sorted(rows, key=lambda h: (not h.flagged, -h.bookings, h.email))


def _host(email: str, c: Counter[str], threshold: float) -> HostFigures:
    rate = c["reschedules_host"] / c["bookings"] if c["bookings"] else 0.0
    return HostFigures(
        email=email,
        bookings=c["bookings"],
        reschedules_by_host=c["reschedules_host"],
        reschedules_by_attendee=c["reschedules_attendee"],
        reschedule_rate=round(rate, 4),
        flagged=rate > threshold,
        cancellations=c["cancellations"],
        no_shows=c["no_shows"],
        reschedules_unknown=c["reschedules_unknown"],
        cancellations_by_host=c["cancellations_host"],
        meetings=c["meetings"],
    )


def intakes(total: Week) -> IntakeFigures:
    def n(name: str) -> int:
        value = total.get(name, 0)
        return value if isinstance(value, int) else 0

    started, completed, abandoned = n("intakes:started"), n("intakes:completed"), n("intakes:abandoned")
    useful, not_useful = n("useful:useful"), n("useful:not_useful")
    return IntakeFigures(
        started=started,
        completed=completed,
        abandoned=abandoned,
        completion_rate=_rate(completed, started),
        useful_rate=_rate(useful, useful + not_useful),
        median_turns=median(_histogram(total, "turns:")),
        invited=n("intakes:invited"),
        abandon_rate=_rate(abandoned, started),
        median_minutes=median(_histogram(total, "minutes:")),
        escalations=n("intakes:escalated"),
        taken_over=n("intakes:taken_over"),
        summaries=n("intakes:summaries"),
        useful=useful,
        not_useful=not_useful,
        thumbs_up=n("thumbs:up"),
        thumbs_down=n("thumbs:down"),
    )


def stuck(course: Course, this: Week) -> list[StuckGroup]:
    """Sections two or more students got stuck on this week, most students first."""
    groups = []
    for field, value in this.items():
        if field.startswith("stuck:") and isinstance(value, int) and value >= 2:
            assignment, _, section = field[6:].partition("|")
            found = course.assignment(assignment) if assignment else None
            groups.append(
                StuckGroup(
                    assignment=assignment,
                    assignment_title=found.title if found else assignment,
                    section=section,
                    section_title=str(this.get(f"label:{section}") or section),
                    students=value,
                )
            )
    return sorted(groups, key=lambda g: (-g.students, g.section))


def median(histogram: Mapping[int, int]) -> float | None:
    """The median of values given as {value: count}."""
    size = sum(histogram.values())
    if not size:
        return None
    ordered = sorted(histogram.items())

    def nth(k: int) -> int:
        seen = 0
        for value, count in ordered:
            seen += count
            if k < seen:
                return value
        return ordered[-1][0]

    return (nth((size - 1) // 2) + nth(size // 2)) / 2


def _histogram(total: Week, prefix: str) -> dict[int, int]:
    out: dict[int, int] = {}
    for field, value in total.items():
        if field.startswith(prefix) and isinstance(value, int) and value > 0:
            key = field[len(prefix) :]
            if key.lstrip("-").isdigit():
                out[int(key)] = value
    return out


def _compare(this: Week, last: Week, prefix: str, title: Callable[[str], str]) -> list[TopicFigures]:
    ids = {f[len(prefix) :] for f in (*this, *last) if f.startswith(prefix)}
    rows = [
        TopicFigures(id=i, title=title(i), this_week=_int(this, prefix + i), last_week=_int(last, prefix + i))
        for i in ids
    ]
    return sorted(rows, key=lambda r: (-r.this_week, -r.last_week, r.id))


def _week(monday: str, row: Week) -> WeekFigures:
    hosts_ = hosts(row, 1.0)
    return WeekFigures(
        week=monday,
        bookings=_int(row, "bookings"),
        reschedules_by_host=sum(h.reschedules_by_host for h in hosts_),
        cancellations=_int(row, "cancellations"),
        no_shows=_int(row, "no_shows"),
        started=_int(row, "intakes:started"),
        completed=_int(row, "intakes:completed"),
        abandoned=_int(row, "intakes:abandoned"),
    )


def _sum(rows: list[Week]) -> dict[str, int | str]:
    total: dict[str, int | str] = {}
    for row in rows:
        for field, value in row.items():
            if isinstance(value, int):
                current = total.get(field, 0)
                total[field] = (current if isinstance(current, int) else 0) + value
            else:
                total.setdefault(field, value)
    return total


def _int(row: Week, field: str) -> int:
    value = row.get(field, 0)
    return value if isinstance(value, int) else 0


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _other(topic_id: str) -> str:
    return "Other" if topic_id == "other" else topic_id
