"""Emails: the student's invitation and the organizer's summary (HTML + text + ``summary.json``).

With no SMTP host configured (the default for ``make run``) a message is written as an ``.eml`` file into
``<data_dir>/mail/`` instead, so a single machine works without a mail server and the operator can open
what would have been sent.
"""

from __future__ import annotations

import asyncio
import html
import os
import secrets
import smtplib
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from services.coursepack import Course
from services.gateway.delivery.render import headline, summary_html, summary_text
from services.gateway.intake.models import Booking, Summary
from services.gateway.intake.store import parse_time
from services.settings import Settings


class EmailError(Exception):
    """Sending failed; retrying may help (the server was down, slow, or refused for now)."""


def invite_url(settings: Settings, token: str) -> str:
    return f"{settings.public_url.rstrip('/')}/i/{token}"


def first_name(booking: Booking) -> str:
    """What a student's email greets them by: the first word of their booking name, or "there"."""
    return booking.student.name.split(" ")[0] if booking.student.name else "there"


def build_invite(settings: Settings, booking: Booking, course: Course, token: str) -> EmailMessage:
    url = invite_url(settings, token)
    first = first_name(booking)
    text = (
        f"Hi {first},\n\n"
        f"You booked office hours for {course.code} with {course.instructor_name} on "
        f"{local_time(booking.start_time, course.timezone)}.\n"
        f"Before the meeting, a short chat (5-8 questions, about 5 minutes) helps you put your question\n"
        f"into words, so {course.instructor_name} can prepare. Open it on your phone or computer:\n\n"
        f"{url}\n\n"
        f"Only {course.instructor_name} and course staff read the summary. The chat is deleted "
        f"{settings.retention_days} days after the meeting, or at once if you cancel the booking.\n"
    )
    message = _message(
        settings, booking.student.email, f"Before your {course.code} office hours: a short chat"
    )
    message.set_content(text)
    message.add_alternative(
        "<!doctype html><html><body style='font-family:sans-serif;max-width:560px'>"
        + "".join(f"<p>{_escape(p)}</p>" for p in text.strip().split("\n\n")).replace(
            _escape(url), f"<a href='{_escape(url)}'>{_escape(url)}</a>"
        )
        + "</body></html>",
        subtype="html",
    )
    return message


def build_reminder(settings: Settings, booking: Booking, course: Course, token: str) -> EmailMessage:
    """The one reminder to a student who has not opened the chat yet (``INTAKE_REMINDER_BEFORE_S``)."""
    url = invite_url(settings, token)
    first = first_name(booking)
    text = (
        f"Hi {first},\n\n"
        f"Your {course.code} office hours with {course.instructor_name} are on "
        f"{local_time(booking.start_time, course.timezone)}.\n"
        f"If you have five minutes before then, the short chat helps {course.instructor_name} prepare:\n\n"
        f"{url}\n\n"
        "This is the only reminder. If you cancel the booking, the chat is deleted.\n"
    )
    message = _message(
        settings, booking.student.email, f"Reminder: a short chat before your {course.code} meeting"
    )
    message.set_content(text)
    return message


def delete_mail_about(settings: Settings, needles: list[str]) -> int:
    """Delete the mail files (written without an SMTP host) that name any of ``needles``; returns how many."""
    folder = settings.data_path / "mail"
    wanted = [n.lower().encode() for n in needles if n]
    if not folder.is_dir() or not wanted:
        return 0
    gone = 0
    for path in folder.glob("*.eml"):
        if path.is_file() and any(w in path.read_bytes().lower() for w in wanted):
            path.unlink(missing_ok=True)
            gone += 1
    return gone


def build_login_email(settings: Settings, to: str, url: str) -> EmailMessage:
    """A staff member's single-use login link (no course or student detail in it)."""
    text = (
        "Hello,\n\n"
        "Someone (hopefully you) asked to log in to the office hours intake staff pages. This link logs\n"
        "you in; it works once, for 15 minutes:\n\n"
        f"{url}\n\n"
        "If you did not ask for it, ignore this email: nobody can use the link without this mailbox.\n"
    )
    message = _message(settings, to, "Your office hours intake login link")
    message.set_content(text)
    return message


def local_time(iso: str, timezone: str) -> str:
    """``Thursday 3 December, 10:00 (America/New_York)``; the raw value if it cannot be read."""
    try:
        moment = parse_time(iso).astimezone(ZoneInfo(timezone))
    except (ValueError, ZoneInfoNotFoundError):
        return iso
    return f"{moment:%A} {moment.day} {moment:%B}, {moment:%H:%M} ({timezone})"


def build_summary_email(settings: Settings, summary: Summary, booking: Booking) -> EmailMessage:
    message = _message(settings, booking.organizer.email, headline(summary))
    message.set_content(summary_text(summary))
    message.add_alternative(summary_html(summary), subtype="html")
    message.add_attachment(
        msgspec.json.format(msgspec.json.encode(summary), indent=2),
        maintype="application",
        subtype="json",
        filename="summary.json",
    )
    return message


async def send_email(settings: Settings, message: EmailMessage, kind: str) -> str:
    """Send over SMTP (in a thread, with a timeout), or write an .eml file; returns where it went."""
    if not settings.smtp_host:
        return str(await asyncio.to_thread(_write_eml, settings, message, kind))
    try:
        await asyncio.wait_for(asyncio.to_thread(_smtp_send, settings, message), settings.smtp_timeout_s + 5)
    except (OSError, smtplib.SMTPException, TimeoutError) as exc:
        raise EmailError(f"smtp {type(exc).__name__}") from None
    return f"smtp://{settings.smtp_host}:{settings.smtp_port}"


def new_message(settings: Settings, to: str, subject: str) -> EmailMessage:
    """An empty message from ``INTAKE_SMTP_FROM`` (the alerts and broadcasts fill it in)."""
    return _message(settings, to, subject)


def _message(settings: Settings, to: str, subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=settings.smtp_from.rpartition("@")[2] or "localhost")
    return message


def _smtp_send(settings: Settings, message: EmailMessage) -> None:
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_s) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password)
        smtp.send_message(message)


def _write_eml(settings: Settings, message: EmailMessage, kind: str) -> Path:
    folder = settings.data_path / "mail"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # summaries and links: the operator's eyes only
    name = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{kind}-{secrets.token_hex(4)}.eml"
    path = folder / name
    partial = folder / f".{name}.part"  # readers glob *.eml: they never see half a message
    partial.write_bytes(message.as_bytes())
    os.replace(partial, path)
    return path


def _escape(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")
