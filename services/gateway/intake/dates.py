"""Dates: deadlines students name ("Friday", "12/5", "in 3 days"), due dates and urgency."""

from __future__ import annotations

import datetime as dt
import re

from services.coursepack import Course
from services.gateway.intake.models import Booking, Facts, Urgency
from services.gateway.intake.text import NUMBER_WORDS, number, sentences

_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1
    )
}
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_DEADLINE_CONTEXT = re.compile(
    r"\b(?:due|deadline|submit\w*|turn(?:ed)? (?:it )?in|hand(?:ed)? (?:it )?in|"
    r"is on|exam is|test is|quiz is|by)\b",
    re.I,
)


def parse_date(text: str, today: dt.date) -> dt.date | None:
    """The first date a student names, absolute or relative to ``today``."""
    low = text.lower()
    if m := re.search(r"\b(\d{4})-(\d{2})-(\d{2})\b", low):
        return _safe_date(int(m[1]), int(m[2]), int(m[3]))
    if m := re.search(r"\b(\d{1,2})/(\d{1,2})(?:/(\d{2,4}))?\b", low):
        year = int(m[3]) + (2000 if m[3] and len(m[3]) == 2 else 0) if m[3] else today.year
        return _roll(_safe_date(year, int(m[1]), int(m[2])), today, bool(m[3]))
    month_re = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
    if m := re.search(rf"\b{month_re}\s+(\d{{1,2}})(?:st|nd|rd|th)?\b", low):
        return _roll(_safe_date(today.year, _MONTHS[m[1]], int(m[2])), today, False)
    if m := re.search(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{month_re}", low):
        return _roll(_safe_date(today.year, _MONTHS[m[2]], int(m[1])), today, False)
    if re.search(r"\b(?:today|tonight|this evening)\b", low):
        return today
    if re.search(r"\btomorrow\b", low):
        return today + dt.timedelta(days=1)
    if m := re.search(r"\bin (\d+|" + "|".join(NUMBER_WORDS) + r") days?\b", low):
        return today + dt.timedelta(days=number(m[1]) or 0)
    if re.search(r"\bnext week\b", low):
        return today + dt.timedelta(days=7)
    if re.search(r"\b(?:end of (?:the|this) week|this weekend)\b", low):
        return today + dt.timedelta(days=(4 - today.weekday()) % 7)
    for index, name in enumerate(_WEEKDAYS):
        if re.search(rf"\b{name[:3]}(?:{name[3:]})?\b", low):
            ahead = (index - today.weekday()) % 7
            extra = 7 if re.search(rf"\bnext {name}", low) and ahead < 7 else 0
            return today + dt.timedelta(days=ahead + extra)
    return None


def _safe_date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def _roll(date: dt.date | None, today: dt.date, explicit_year: bool) -> dt.date | None:
    """A date without a year that already passed months ago most likely means next year."""
    if date and not explicit_year and (today - date).days > 60:
        return _safe_date(date.year + 1, date.month, date.day)
    return date


def extract_deadline(text: str, today: dt.date, answering: bool) -> str | None:
    """An ISO date from a sentence that talks about a deadline (or any answer to the deadline question)."""
    for sentence in sentences(text):
        if (answering or _DEADLINE_CONTEXT.search(sentence)) and (date := parse_date(sentence, today)):
            return date.isoformat()
    return None


def due_date(facts: Facts, course: Course) -> dt.date | None:
    """The student's own deadline if they gave one, else the assignment's due date from course.toml."""
    if facts.deadline:
        try:
            return dt.date.fromisoformat(facts.deadline[:10])
        except ValueError:
            pass
    assignment = course.assignment(facts.assignment) if facts.assignment else None
    return assignment.due_date if assignment else None


def urgency(facts: Facts, course: Course, booking: Booking) -> Urgency:
    """Deadline proximity to the appointment: within 2 days high, within a week medium, else low."""
    due = due_date(facts, course)
    meeting = _date_of(booking.start_time)
    if due is None or meeting is None:
        return "low"
    days = (due - meeting).days
    if -3 <= days <= 2:
        return "high"
    if 2 < days <= 7:
        return "medium"
    return "low"


def _date_of(stamp: str) -> dt.date | None:
    try:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).date()
    except ValueError:
        return None
