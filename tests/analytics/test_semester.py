"""The demo semester (``make demo-semester``): whatever day it is loaded, this week already has meetings."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest

from services.analytics import semester
from services.coursepack import load_catalog
from services.settings import REPO_ROOT


@pytest.mark.parametrize("days_after_monday", [0, 1, 4, 6])
def test_this_weeks_hot_spot_shows_even_on_a_monday(days_after_monday: int) -> None:
    """Loaded on a Monday, only the meetings of that Monday had happened, so "students this week on the
    same section" was empty (the staff page's hot spot, and a browser test, failed on Mondays)."""
    course = load_catalog(REPO_ROOT / "corpus").courses["stat200"]
    today = dt.date(2026, 11, 30) + dt.timedelta(days=days_after_monday)
    this_week = (today - dt.timedelta(days=today.weekday())).isoformat()
    sections = Counter(
        e.section
        for e in semester.semester(course, today)
        if e.kind == "summary_delivered" and e.week == this_week
    )
    assert sections and max(sections.values()) >= 2, sections
