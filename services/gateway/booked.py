"""``GET /booked?uid=…``: where Cal.com's "redirect on booking success" lands the student.

Knowing a booking uid is not knowing the chat: the page never shows or links the chat. It says the link
was emailed to a masked address (``m***@example.edu``) and offers to send it again (``POST /booked/resend``,
at most ``RESENDS_PER_BOOKING`` an hour per booking and ``RESENDS_PER_CLIENT`` per address). A uid we do not
know (yet: Cal.com may redirect before its webhook arrives) gets the same page without an address.
"""

from __future__ import annotations

import html
import time
from typing import Annotated
from urllib.parse import parse_qs

import structlog
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.params import Parameter

from services.gateway import ratelimit
from services.gateway.container import Services
from services.gateway.delivery.queue import JobArgs
from services.gateway.intake import chat
from services.gateway.intake.models import IntakeRecord
from services.gateway.peers import client_address
from services.gateway.staff.accounts import digest
from services.gateway.staff.login import PAGE_HEADERS
from services.settings import REPO_ROOT

PAGE = REPO_ROOT / "frontend" / "booked.html"
RESENDS_PER_BOOKING = 3
RESENDS_PER_CLIENT = 20
RESEND_WINDOW_S = 3600
Uid = Annotated[str, Parameter(max_length=200)]
log = structlog.get_logger()


def mask_email(email: str) -> str:
    """``mina.park@example.edu`` -> ``m***@example.edu``: enough to recognise, not to learn."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if local and domain else "your email address"


@get("/booked", media_type=MediaType.HTML)
async def booked(services: NamedDependency[Services], uid: Uid = "") -> Response[bytes]:
    record = await services.intakes.get_by_booking(uid) if uid else None
    return _page(record, uid, "")


@post("/booked/resend", media_type=MediaType.HTML, status_code=200)
async def resend(request: Request, services: NamedDependency[Services]) -> Response[bytes]:
    """Send the invitation again; the answer reads the same whether or not anything was sent."""
    form = parse_qs((await chat.read_capped(request, 1024)).decode("utf-8", "replace"))
    uid = (form.get("uid") or [""])[0][:200]
    record = await services.intakes.get_by_booking(uid) if uid else None
    if await _allowed(services, uid, client_address(request)) and _sendable(record):
        assert record is not None
        args = JobArgs(token=record.token, course_slug=record.course_slug)
        await services.jobs.enqueue(
            "invite_email", record.booking.uid, f"resend-{int(time.time())}", args=args
        )
        log.info("invite_resent", booking_uid=record.booking.uid)
    notice = "If this booking has a chat, its link is on its way again. Check your inbox and spam folder."
    return _page(record, uid, notice)


async def _allowed(services: Services, uid: str, client: str) -> bool:
    per_booking = await ratelimit.hit(services.redis, f"booked_resend:{digest(uid)}", RESEND_WINDOW_S)
    per_client = await ratelimit.hit(services.redis, f"booked_client:{digest(client)}", RESEND_WINDOW_S)
    return per_booking.count <= RESENDS_PER_BOOKING and per_client.count <= RESENDS_PER_CLIENT


def _sendable(record: IntakeRecord | None) -> bool:
    return record is not None and record.status != "cancelled" and bool(record.booking.student.email)


def _page(record: IntakeRecord | None, uid: str, notice: str) -> Response[bytes]:
    if record is not None and record.status == "cancelled":
        body = "<p>This booking was cancelled, and its chat with it.</p>"
    elif _sendable(record):
        assert record is not None
        where = html.escape(mask_email(record.booking.student.email))
        body = (
            f"<p>We emailed the link to your short chat to <strong>{where}</strong>. It is the only way in, "
            "so nobody else can open your chat. Open it on your phone or computer before the meeting.</p>"
        )
    else:
        body = (
            "<p>Your booking is being set up. The link to your short chat will arrive by email within a "
            "minute or two.</p>"
        )
    form = "" if record is not None and record.status == "cancelled" else _resend_form(uid)
    status = f'<p class="notice info" role="status">{html.escape(notice)}</p>' if notice else ""
    page = PAGE.read_text(encoding="utf-8").replace("{{body}}", body + status + form)
    return Response(page.encode(), media_type=MediaType.HTML, headers=PAGE_HEADERS)


def _resend_form(uid: str) -> str:
    return (
        '<form method="post" action="/booked/resend">'
        f'<input type="hidden" name="uid" value="{html.escape(uid)}">'
        '<button class="secondary wide" type="submit">Email me the link again</button></form>'
    )


ROUTES = [booked, resend]
