"""The hosts' weekly report: built from the aggregates, sent through a real SMTP server once per host and
week by the cron (again on demand), the flag only in the flagged host's email; the worker schedules it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import msgspec
import redis.asyncio as aioredis

from services.analytics.consumer import Consumer
from services.analytics.events import Event, EventLog, event_id
from services.analytics.weekly import report_job, send_reports
from services.coursepack import CalcomMapping, Catalog, Course
from services.gateway.container import build_services
from services.gateway.worker import build_workers
from services.settings import Settings
from tests.analytics.conftest import fold_all
from tests.fixtures.smtp import SmtpCapture

OFTEN, RARELY = "often@example.edu", "prof@example.edu"
TODAY = dt.date(2026, 11, 25)
LAST_WEEK = "2026-11-16"


def catalog() -> Catalog:
    course = Course(
        slug="stat200",
        code="STAT 200",
        title="Statistics",
        instructor_name="Prof",
        instructor_email=RARELY,
        calcom=CalcomMapping(event_type_ids=[1]),
    )
    return Catalog(courses={"stat200": course}, problems=[])


async def _last_week(redis: aioredis.Redis, settings: Settings) -> None:
    events = []
    for host, moved in ((OFTEN, 4), (RARELY, 0)):
        for n in range(10):
            uid = f"{host}-{n}"
            base = {"course": "stat200", "week": LAST_WEEK, "at": 1_795_000_000.0 + n, "host": host}
            events.append(Event(id=event_id(uid), kind="booking_created", booking=uid, **base))
            if n < moved:
                events.append(
                    Event(
                        id=event_id(uid, "m"),
                        kind="booking_rescheduled",
                        booking=uid + "b",
                        previous=uid,
                        by="host",
                        **base,
                    )
                )
            events.append(
                Event(
                    id=event_id(uid, "t"),
                    kind="summary_delivered",
                    topic="regression",
                    intake=uid,
                    student="x",
                    **base,
                )
            )
    await EventLog(redis, settings.retention_days).append(events)
    await fold_all(Consumer(redis, settings, "weekly"))


async def test_each_host_gets_their_figures_once_a_week(
    redis: aioredis.Redis, tmp_path: Path, redis_url: str, smtp_server: SmtpCapture
) -> None:
    """Two hosts, two emails; only the one above the threshold is flagged; the cron's second run sends
    nothing, an on-demand run sends again."""
    settings = msgspec.convert(
        {
            "data_dir": str(tmp_path),
            "redis_url": redis_url,
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
        },
        Settings,
    )
    await _last_week(redis, settings)
    assert await send_reports(redis, settings, catalog(), once=True, today=TODAY) == 2
    often = str(smtp_server.to(OFTEN)[-1].get_body(("plain",)).get_content())  # type: ignore[union-attr]
    rarely = str(smtp_server.to(RARELY)[-1].get_body(("plain",)).get_content())  # type: ignore[union-attr]
    assert "FLAGGED" in often and "4 moved by you (40%)" in often
    assert "FLAGGED" not in rarely and "0 moved by you (0%)" in rarely
    assert "regression: 20" in rarely, "last week's topics"
    assert smtp_server.to(OFTEN)[-1]["Subject"].endswith("(flagged: reschedules)")
    assert await send_reports(redis, settings, catalog(), once=True, today=TODAY) == 0
    assert await send_reports(redis, settings, catalog(), once=False, today=TODAY) == 2


async def test_the_worker_schedules_the_report(settings: Settings) -> None:
    """The intake worker's cron list carries the report on INTAKE_ANALYTICS_REPORT_CRON."""
    services = build_services(settings, catalog=catalog(), retriever=None)
    try:
        crons = {c.function: c.cron for w in build_workers(services) for c in w.cron_jobs}
        assert crons[report_job] == settings.analytics_report_cron == "0 7 * * 1"
    finally:
        await services.aclose()
