"""The whole journey through the supervised stack, with the real model, as the people involved see it:
Cal.com books -> the student gets an invite email -> chats on the public API -> the professor gets the
summary by email and in the Cal.com booking notes -> a cancellation deletes the transcript."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from finetune.evaluate import sse_events
from services.gateway.webhooks.signature import SIGNATURE_HEADER, sign
from tests.fixtures.ports import wait_until
from tests.fixtures.stack import WEBHOOK_SECRET, Stack

pytestmark = pytest.mark.slow

BOOKING_ID = 55001
STUDENT = {"name": "Rosa Diaz", "email": "rosa.diaz@student.example.edu"}
ORGANIZER = {
    "name": "Dr. Mei Tanaka",
    "email": "mei.tanaka@univ.example.edu",
    "timeZone": "America/Los_Angeles",
}
LINES = [
    "I'm stuck on lab 3, the limiting reagent one.",
    "I don't understand how to tell which reactant runs out first from my data table.",
    "I tried comparing the grams of baking soda and vinegar but my answer doesn't match the graph.",
    "I converted to moles once but I'm not sure I used the balanced equation right.",
    "I want to leave knowing how to write the paragraph that explains the plateau.",
    "It's due on December 4.",
    "No, that's everything.",
    "Thanks!",
]


def _post(stack: Stack, trigger: str, payload: dict, created_at: str) -> dict:
    body = json.dumps({"triggerEvent": trigger, "createdAt": created_at, "payload": payload}).encode()
    with stack.client() as client:
        response = client.post(
            "/webhooks/calcom",
            content=body,
            headers={"content-type": "application/json", SIGNATURE_HEADER: sign(body, WEBHOOK_SECRET)},
        )
    assert response.status_code == 200, response.text
    return response.json()


def _booking(start: dt.datetime) -> dict:
    return {
        "uid": "journey-booking-1",
        "bookingId": BOOKING_ID,
        "eventTypeId": 9110,
        "type": "chem110-office-hours",
        "title": "CHEM 110 office hours",
        "startTime": start.isoformat().replace("+00:00", "Z"),
        "endTime": (start + dt.timedelta(minutes=20)).isoformat().replace("+00:00", "Z"),
        "organizer": ORGANIZER,
        "attendees": [{**STUDENT, "timeZone": "America/Los_Angeles"}],
        "additionalNotes": "Stuck on lab 3",
        "responses": {"notes": {"label": "additional_notes", "value": "Stuck on lab 3"}},
    }


def _chat(stack: Stack, token: str) -> list[tuple[str, dict]]:
    """Answer until the interview ends; every SSE (event, data) pair of the last turn."""
    events: list[tuple[str, dict]] = []
    with stack.client() as client:
        assert client.post(f"/api/intakes/{token}/consent").status_code == 200
        for line in LINES:
            with client.stream("POST", f"/api/intakes/{token}/messages", json={"text": line}) as response:
                assert response.status_code == 200
                events = list(sse_events(response.iter_lines()))
            assert events[-1][0] == "done"
            if events[-1][1]["status"] != "active":
                break
    return events


def _summary_mailed(stack: Stack) -> dict | None:
    """The summary.json attached to the organizer's email for this booking (other tests share the stack)."""
    for mail in stack.smtp.to(ORGANIZER["email"]):
        for part in mail.iter_attachments():
            if part.get_filename() == "summary.json":
                summary = json.loads(part.get_content())
                if summary["booking_uid"] == "journey-booking-1":
                    return summary
    return None


def test_booking_to_summary_to_cancellation(stack: Stack) -> None:
    """A booked student is invited by email, finishes a 5-8 turn intake, and the professor gets summary v1
    by email (JSON attached) and in the booking notes (the student's own notes kept); cancelling then closes
    the intake and deletes the transcript."""
    stack.calcom.add_booking(BOOKING_ID, description="Stuck on lab 3")
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=2)
    assert _post(stack, "BOOKING_CREATED", _booking(start), "2026-11-21T10:00:00Z")["status"] == "created"

    wait_until(lambda: bool(stack.smtp.to(STUDENT["email"])), 60, "invite email")
    invite = stack.smtp.to(STUDENT["email"])[0]
    match = re.search(r"/i/([A-Za-z0-9_-]{22,})", invite.get_body(("plain",)).get_content())
    assert match, "the invite carries the chat link"
    token = match.group(1)

    with stack.client() as client:
        assert client.get(f"/i/{token}").status_code == 200
    last = _chat(stack, token)
    assert last[-1][1]["status"] == "complete"
    assert 5 <= last[-1][1]["turn"] <= 8

    with stack.client() as client:
        state = client.get(f"/api/intakes/{token}").json()
    summary = state["summary"]
    assert summary["schema_version"] == "1" and summary["status"] == "complete"
    assert summary["course"] == "CHEM 110" and summary["assignment"] == "lab-3"
    assert summary["topic"] == "stoichiometry"
    assert summary["student"]["email"] == STUDENT["email"]

    wait_until(lambda: _summary_mailed(stack) is not None, 240, "summary email", interval=1)
    mailed = _summary_mailed(stack)
    assert mailed and mailed["course"] == "CHEM 110" and mailed["status"] == "complete"
    wait_until(lambda: "office-hours-intake" in (stack.calcom.description(BOOKING_ID) or ""), 120, "note")
    note = stack.calcom.description(BOOKING_ID) or ""
    assert note.startswith("Stuck on lab 3") and note.count("office-hours-intake:start") == 1

    assert _post(stack, "BOOKING_CANCELLED", _booking(start), "2026-11-21T11:00:00Z")["status"] == "cancelled"
    with stack.client() as client:
        state = client.get(f"/api/intakes/{token}").json()
    assert state["status"] == "cancelled" and state["messages"] == []
