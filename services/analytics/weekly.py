"""The hosts' weekly analytics email: on the worker's SAQ cron (``INTAKE_ANALYTICS_REPORT_CRON``, Mondays
07:00 UTC) and on demand: ``make report`` (``python -m services.analytics.weekly``).

One email per host: every host seen in a course's bookings over the last four weeks and every person a
course pack lists as its staff. Each email has, for each of their courses, their own row (bookings,
reschedules by them and by students, the flag), the course's intake figures, last week's topics against
the week before, and the sections several students were stuck on. Figures only: no student is named.

The cron sends each host's report once per week (``analytics:report:<week>:<hash of the address>``, kept
two weeks); ``make report`` sends again unless ``--once`` is given. Without SMTP the emails are .eml
files in ``<data>/mail`` (``--dry-run`` prints them instead).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import html
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import structlog

from services.analytics.aggregates import Aggregates
from services.analytics.consumer import state_ttl_s
from services.analytics.report import Analytics, HostFigures, course_analytics
from services.coursepack import Catalog, load_catalog
from services.gateway.logs import configure_logging
from services.settings import Settings, SettingsError, load_settings

WINDOW_WEEKS = 4
_SENT = "analytics:report:{}:{}"
_SENT_TTL_S = 14 * 24 * 3600
log = structlog.get_logger()


class HostReport:
    """What one host's email says: their courses' figures and their own row in each."""

    def __init__(self, email: str) -> None:
        self.email = email
        self.courses: list[tuple[Analytics, HostFigures | None]] = []

    @property
    def flagged(self) -> list[str]:
        return [figures.course_code for figures, mine in self.courses if mine and mine.flagged]


async def build_reports(
    redis: aioredis.Redis, settings: Settings, catalog: Catalog, today: dt.date | None = None
) -> list[HostReport]:
    """Reports for last week (the week before ``today``'s), one per host, hosts in address order."""
    last_week = (today or dt.datetime.now(dt.UTC).date()) - dt.timedelta(weeks=1)
    aggregates = Aggregates(redis, state_ttl_s(settings))
    reports: dict[str, HostReport] = {}
    for course in sorted(catalog.courses.values(), key=lambda c: c.slug):
        figures = await course_analytics(
            aggregates, course, WINDOW_WEEKS, settings.analytics_reschedule_threshold, last_week
        )
        rows = {h.email: h for h in figures.hosts}
        for email in sorted(set(rows) | course.staff_emails()):
            reports.setdefault(email, HostReport(email)).courses.append((figures, rows.get(email)))
    return [reports[e] for e in sorted(reports)]


def render(report: HostReport, settings: Settings) -> EmailMessage:
    text = _text(report, settings)
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = report.email
    flag = " (flagged: reschedules)" if report.flagged else ""
    message["Subject"] = f"Office hours, week of {report.courses[0][0].this_week}: your figures{flag}"
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=settings.smtp_from.rpartition("@")[2] or "localhost")
    message.set_content(text)
    paragraphs = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in text.split("\n\n"))
    message.add_alternative(
        f"<!doctype html><html><body style='font-family:sans-serif'>{paragraphs}</body></html>",
        subtype="html",
    )
    return message


def _text(report: HostReport, settings: Settings) -> str:
    parts = [f"Your office-hours figures for the week of {report.courses[0][0].this_week}."]
    if report.flagged:
        parts.append(
            f"Flag: over the last {WINDOW_WEEKS} weeks you rescheduled more than "
            f"{settings.analytics_reschedule_threshold:.0%} of your bookings in {', '.join(report.flagged)}. "
            "Moves by the host are the ones that hurt students most."
        )
    for figures, mine in report.courses:
        parts.append(_course_text(figures, mine))
    url = f"{settings.public_url.rstrip('/')}/staff/analytics"
    parts.append(f"Charts and tables: {url}")
    return "\n\n".join(parts) + "\n"


def _course_text(figures: Analytics, mine: HostFigures | None) -> str:
    i = figures.intakes
    lines = [f"{figures.course_code} · {figures.course_title} (last {figures.weeks} weeks)"]
    if mine:
        flag = "  FLAGGED" if mine.flagged else ""
        lines.append(
            f"You: {mine.bookings} bookings, {mine.reschedules_by_host} moved by you "
            f"({mine.reschedule_rate:.0%}){flag}, {mine.reschedules_by_attendee} moved by students, "
            f"{mine.cancellations} cancelled, {mine.no_shows} no-shows."
        )
    lines.append(
        f"Intakes: {i.started} started, {i.completed} completed ({_pct(i.completion_rate)}), "
        f"{i.abandoned} abandoned ({_pct(i.abandon_rate)}; target under 20%), median {_num(i.median_turns)} "
        f"turns, {i.escalations} escalated; professors found {_pct(i.useful_rate)} of summaries useful "
        f"(target 80%); students: {i.thumbs_up} up, {i.thumbs_down} down."
    )
    topics = [
        f"{t.title}: {t.this_week} (week before: {t.last_week})" for t in figures.topics[:5] if t.this_week
    ]
    lines.append("Topics last week: " + ("; ".join(topics) if topics else "none recorded."))
    for group in figures.stuck[:3]:
        lines.append(f"{group.students} students on the same section: {group.section_title}.")
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:g}"


async def send_reports(
    redis: aioredis.Redis,
    settings: Settings,
    catalog: Catalog,
    *,
    once: bool,
    dry_run: bool = False,
    today: dt.date | None = None,
) -> int:
    """Build and send every host's report; ``once``: skip hosts already sent this week's. Returns sent."""
    from services.gateway.delivery.email import send_email  # the gateway's mailer (SMTP or .eml files)

    sent = 0
    for report in await build_reports(redis, settings, catalog, today):
        message = render(report, settings)
        if dry_run:
            print(message.get_body(("plain",)).get_content())  # type: ignore[union-attr]
            continue
        marker = _SENT.format(report.courses[0][0].this_week, _digest(report.email))
        if once and not await redis.set(marker, b"1", nx=True, ex=_SENT_TTL_S):
            continue
        try:
            await send_email(settings, message, "analytics-report")
        except Exception:
            if once:
                await redis.delete(marker)  # the next run tries again
            raise
        sent += 1
    log.info("analytics_reports_sent", sent=sent, dry_run=dry_run)
    return sent


async def report_job(ctx: Any) -> None:
    """The worker's cron: this week's reports, each host once (returns nothing: the worker logs a
    cron's truthy result as something else)."""
    services = ctx["services"]
    await send_reports(services.redis, services.settings, services.catalog, once=True)


def _digest(email: str) -> str:
    return hashlib.sha256(email.lower().encode()).hexdigest()[:16]


async def _main(args: argparse.Namespace) -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    catalog = load_catalog(Path(settings.corpus_dir))
    redis = aioredis.from_url(settings.redis_url)
    try:
        sent = await send_reports(redis, settings, catalog, once=args.once, dry_run=args.dry_run)
        if not args.dry_run:
            where = f"smtp {settings.smtp_host}" if settings.smtp_host else f"{settings.data_path / 'mail'}"
            print(f"sent {sent} weekly reports ({where})")
    finally:
        await redis.aclose()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.analytics.weekly", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--dry-run", action="store_true", help="print the reports instead of sending them")
    parser.add_argument("--once", action="store_true", help="skip hosts who already got this week's report")
    try:
        asyncio.run(_main(parser.parse_args(argv)))
    except SettingsError as exc:
        raise SystemExit(f"report: configuration error: {exc}") from None


if __name__ == "__main__":
    main()
