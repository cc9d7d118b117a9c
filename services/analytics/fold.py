"""An event -> the aggregate operations it stands for. Pure: no I/O, so it is tested without Redis.

Each operation is idempotent on its own terms, and ``aggregates.APPLY`` runs an event's operations only
the first time it sees the event's id, so replaying the stream changes nothing and rebuilding from an empty
Redis gives the same figures:

- ``once`` counts something at most once per thing (a booking, an intake): a flag in that thing's state;
- ``chain`` counts a booking once across its reschedules: the old and the new uid share one *counted*
  flag, so a reschedule that arrives before the booking's creation counts the booking, and the late
  creation does not count it again;
- ``booking`` / ``noshow`` join a no-show (Cal.com sends only the booking uid) to the booking's host,
  course and week, whichever of the two arrives first;
- ``latest`` keeps one value per thing (a rating) by the event time, so a changed rating moves the count.

Aggregates: one hash per course and week, ``analytics:agg:<course>:<week>`` (``host:<email>:...`` fields
per host). They hold counts, ids and staff emails only.
"""

from __future__ import annotations

from typing import Any

from services.analytics.events import Event

Op = list[Any]
MINUTES_CAP = 120  # minutes to complete above this count as 120 (a chat left open overnight)


def agg_key(course: str, week: str) -> str:
    return f"analytics:agg:{course}:{week}"


def booking_key(uid: str) -> str:
    return f"analytics:bk:{uid}"


def intake_key(intake: str) -> str:
    return f"analytics:in:{intake}"


def stuck_key(course: str, week: str) -> str:
    return f"analytics:stuck:{course}:{week}"


def ops_for(event: Event) -> list[Op]:
    """What ``event`` does to the aggregates (an unknown or incomplete event does nothing)."""
    if event.kind == "no_show":
        return [["noshow", booking_key(event.booking), event.value, repr(event.at)]] if event.booking else []
    if not event.course or not event.week:
        return []
    handler = _BOOKINGS.get(event.kind) or _INTAKES.get(event.kind)
    return handler(event) if handler else []


# --- Cal.com -----------------------------------------------------------------------------------------


def _host(event: Event, name: str) -> str:
    return f"host:{event.host}:{name}"


def _created(event: Event) -> list[Op]:
    agg = agg_key(event.course, event.week)
    return [
        ["booking", booking_key(event.booking), event.host, event.course, event.week],
        ["chain", [booking_key(event.booking)], agg, ["bookings", _host(event, "bookings")]],
    ]


def _rescheduled(event: Event) -> list[Op]:
    """The move counts in the week of the meeting that was moved, like the booking it moved."""
    week = event.previous_week or event.week
    agg = agg_key(event.course, week)
    chain = [booking_key(event.booking)]
    ops: list[Op] = [["booking", booking_key(event.booking), event.host, event.course, event.week]]
    if event.previous:
        chain.append(booking_key(event.previous))
        ops.append(["booking", booking_key(event.previous), event.host, event.course, week])
    by = event.by or "unknown"
    ops += [
        ["chain", chain, agg, ["bookings", _host(event, "bookings")]],
        [
            "once",
            booking_key(event.booking),
            "moved",
            agg,
            ["reschedules", _host(event, f"reschedules_{by}")],
        ],
    ]
    return ops


def _cancelled(event: Event) -> list[Op]:
    agg = agg_key(event.course, event.week)
    by = event.by or "unknown"
    return [
        ["booking", booking_key(event.booking), event.host, event.course, event.week],
        [
            "once",
            booking_key(event.booking),
            "cancelled",
            agg,
            ["cancellations", _host(event, "cancellations"), _host(event, f"cancellations_{by}")],
        ],
    ]


def _ended(event: Event) -> list[Op]:
    agg = agg_key(event.course, event.week)
    return [
        ["booking", booking_key(event.booking), event.host, event.course, event.week],
        ["once", booking_key(event.booking), "ended", agg, ["meetings", _host(event, "meetings")]],
    ]


# --- the intake ----------------------------------------------------------------------------------------


def _counted(flag: str, *fields: str) -> Any:
    def ops(event: Event) -> list[Op]:
        state = intake_key(event.intake or event.id)  # no intake id: once per event
        return [["once", state, flag, agg_key(event.course, event.week), list(fields)]]

    return ops


def _turn(event: Event) -> list[Op]:
    return [["incr", agg_key(event.course, event.week), ["intakes:turns"]]]


def _completed(event: Event) -> list[Op]:
    minutes = min(MINUTES_CAP, max(0, round(event.minutes)))
    fields = ["intakes:completed", f"turns:{event.turns}", f"minutes:{minutes}"]
    return [["once", intake_key(event.intake), "completed", agg_key(event.course, event.week), fields]]


def _delivered(event: Event) -> list[Op]:
    """A delivered summary says what the student is stuck on (counted once per intake)."""
    agg = agg_key(event.course, event.week)
    fields = ["intakes:summaries", f"topic:{event.topic or 'other'}"]
    if event.assignment:
        fields.append(f"assignment:{event.assignment}")
    ops: list[Op] = []
    if event.section:
        fields.append(f"section:{event.section}")
        ops.append(["hset", agg, f"label:{event.section}", event.section_title or event.section])
        group = f"stuck:{event.assignment}|{event.section}"
        who = f"{event.student or event.intake}|{event.assignment}|{event.section}"
        ops.append(["once", stuck_key(event.course, event.week), who, agg, [group]])
    return [["once", intake_key(event.intake), "delivered", agg, fields], *ops]


def _rating(name: str, prefix: str) -> Any:
    def ops(event: Event) -> list[Op]:
        if not event.value:
            return []
        agg = agg_key(event.course, event.week)
        return [["latest", intake_key(event.intake), name, event.value, repr(event.at), agg, prefix]]

    return ops


_BOOKINGS = {
    "booking_created": _created,
    "booking_rescheduled": _rescheduled,
    "booking_cancelled": _cancelled,
    "meeting_ended": _ended,
}
_INTAKES = {
    "intake_invited": _counted("invited", "intakes:invited"),
    "intake_consented": _counted("started", "intakes:started"),
    "intake_turn": _turn,
    "intake_completed": _completed,
    "intake_abandoned": _counted("abandoned", "intakes:abandoned"),
    "intake_escalated": _counted("escalated", "intakes:escalated"),
    "intake_taken_over": _counted("taken_over", "intakes:taken_over"),
    "summary_delivered": _delivered,
    "student_rating": _rating("student", "thumbs:"),
    "professor_rating": _rating("professor", "useful:"),
}
