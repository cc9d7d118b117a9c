"""``python -m services.gateway.demo`` (used by ``make run``): book a demo slot and print the chat link.

Posts a signed BOOKING_CREATED for the first course of the catalog (meeting tomorrow, a demo student) to the
running gateway, exactly as Cal.com would, then looks up the new intake's token in Redis and prints the
student's chat URL. The settings (and the generated webhook secret) come from the same place the stack
launcher takes them, so the demo signs with the secret the gateway checks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from services.coursepack import Course, load_catalog
from services.gateway.intake.store import IntakeStore
from services.gateway.webhooks.payloads import rfc3339
from services.gateway.webhooks.signature import NO_SECRET, SIGNATURE_HEADER, sign
from services.settings import Settings, SettingsError, load_settings

DEMO_STUDENT = {"name": "Demo Student", "email": "demo.student@example.invalid"}


def demo_payload(course: Course, now: dt.datetime | None = None) -> dict[str, Any]:
    """A BOOKING_CREATED in Cal.com's 2021-10-20 shape, for a meeting tomorrow."""
    now = now or dt.datetime.now(dt.UTC)
    start = (now + dt.timedelta(days=1)).replace(second=0, microsecond=0)
    organizer = {
        "name": course.instructor_name,
        "email": course.instructor_email,
        "timeZone": course.timezone,
    }
    notes = "I would like help with the next assignment."
    slug = course.calcom.event_type_slugs[0] if course.calcom.event_type_slugs else None
    return {
        "triggerEvent": "BOOKING_CREATED",
        "createdAt": rfc3339(now),
        "payload": {
            "type": slug,
            "title": f"{course.code} office hours with {course.instructor_name}",
            "additionalNotes": notes,
            "startTime": rfc3339(start),
            "endTime": rfc3339(start + dt.timedelta(minutes=20)),
            "organizer": organizer,
            "attendees": [{**DEMO_STUDENT, "timeZone": course.timezone}],
            "responses": {"notes": {"label": "additional_notes", "value": notes}},
            "eventTypeId": course.calcom.event_type_ids[0] if course.calcom.event_type_ids else None,
            "uid": "demo-" + secrets.token_urlsafe(12),
            "bookingId": secrets.randbelow(900_000) + 100_000,
            "status": "ACCEPTED",
            "metadata": {},
        },
    }


async def post_demo(settings: Settings) -> str:
    """Post the booking and return the chat URL; raises ``SystemExit`` with a readable reason on failure."""
    catalog = load_catalog(Path(settings.corpus_dir))
    if not catalog.courses:
        raise SystemExit(f"demo: no course pack loaded from {settings.corpus_dir}")
    course = catalog.courses[sorted(catalog.courses)[0]]
    payload = demo_payload(course)
    body = json.dumps(payload).encode()
    headers = {"content-type": "application/json", "x-cal-webhook-version": "2021-10-20"}
    if settings.calcom_webhook_secret:
        headers[SIGNATURE_HEADER] = sign(body, settings.calcom_webhook_secret)
    elif settings.calcom_allow_unsigned:
        headers[SIGNATURE_HEADER] = NO_SECRET
    else:
        raise SystemExit("demo: set INTAKE_CALCOM_WEBHOOK_SECRET (or INTAKE_CALCOM_ALLOW_UNSIGNED=true)")
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    url = f"http://{host}:{settings.port}/webhooks/calcom"
    async with httpx.AsyncClient(timeout=15) as client:
        await _wait_for_gateway(client, f"http://{host}:{settings.port}/healthz")
        response = await client.post(url, content=body, headers=headers)
    if response.status_code != 200 or response.json().get("status") != "created":
        raise SystemExit(f"demo: the gateway answered {response.status_code}: {response.text[:300]}")
    redis = aioredis.from_url(settings.redis_url)
    try:
        token = await IntakeStore(redis, settings.retention_days).token_for_booking(payload["payload"]["uid"])
    finally:
        await redis.aclose()
    if not token:
        raise SystemExit("demo: the booking was accepted but no intake was found in Redis")
    return f"{settings.public_url.rstrip('/')}/i/{token}"


async def _wait_for_gateway(client: httpx.AsyncClient, url: str, timeout_s: float = 90.0) -> None:
    """The gateway may still be importing its libraries right after ``make run`` started it."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if (await client.get(url)).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: the gateway did not answer {url} within {timeout_s:.0f}s")
        await asyncio.sleep(0.5)


def _settings() -> Settings:
    """The stack's settings, including the secrets ``services.stack`` generated into the data folder."""
    from services.stack import stack_env

    return load_settings(stack_env())


def main() -> None:
    try:
        settings = _settings()
    except SettingsError as exc:
        raise SystemExit(f"demo: configuration error: {exc}") from None
    link = asyncio.run(post_demo(settings))
    print(f"Demo booking created. Open the student chat: {link}")
    print(f"(The invitation email is in {settings.data_path / 'mail'} unless SMTP is configured.)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
