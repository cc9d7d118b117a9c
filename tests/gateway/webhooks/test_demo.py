"""The demo booking ``make run`` posts is a valid, signed Cal.com BOOKING_CREATED for a known course."""

from __future__ import annotations

import json

from services.gateway.demo import demo_payload
from services.gateway.intake.store import parse_time
from tests.gateway.delivery.harness import Gateway, post_webhook, record_for


async def test_demo_booking_creates_an_intake_for_the_first_course(gw: Gateway) -> None:
    """Signed with the configured secret, it creates an invited intake for tomorrow's meeting."""
    course = gw.services.catalog.courses["writ101"]
    payload = demo_payload(course)
    response = await post_webhook(gw.client, json.dumps(payload).encode())
    assert response.json() == {"status": "created"}
    record = await record_for(gw.services, payload["payload"]["uid"])
    assert record.course_slug == "writ101" and record.status == "invited"
    start = parse_time(record.booking.start_time) - parse_time(payload["createdAt"])
    assert 23 * 3600 <= start.total_seconds() <= 24 * 3600
