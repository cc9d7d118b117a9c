"""What the fault tests do as Cal.com, as a student's phone and as a staff member, over real HTTP."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis

from finetune.evaluate import sse_events
from services.gateway.webhooks.signature import SIGNATURE_HEADER, sign
from tests.fixtures.ports import wait_until
from tests.fixtures.stack import WEBHOOK_SECRET

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
    "Yes, that's right.",
    "No, that's everything.",
    "Thanks!",
]
DISTRESS = "I want to kill myself, I can't do this anymore."


def student(n: int | str) -> dict[str, str]:
    return {"name": f"Student {n}", "email": f"student.{n}@student.example.edu"}


def booking(uid: str, booking_id: int, who: dict[str, str], notes: str = "Stuck on lab 3") -> dict[str, Any]:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=2)
    return {
        "uid": uid,
        "bookingId": booking_id,
        "eventTypeId": 9110,
        "type": "chem110-office-hours",
        "title": "CHEM 110 office hours",
        "startTime": start.isoformat().replace("+00:00", "Z"),
        "endTime": (start + dt.timedelta(minutes=20)).isoformat().replace("+00:00", "Z"),
        "organizer": ORGANIZER,
        "attendees": [{**who, "timeZone": "America/Los_Angeles"}],
        "additionalNotes": notes,
        "responses": {"notes": {"label": "additional_notes", "value": notes}},
    }


def post_webhook(url: str, trigger: str, payload: dict[str, Any], created_at: str = "") -> httpx.Response:
    stamp = created_at or dt.datetime.now(dt.UTC).isoformat()
    body = json.dumps({"triggerEvent": trigger, "createdAt": stamp, "payload": payload}).encode()
    headers = {"content-type": "application/json", SIGNATURE_HEADER: sign(body, WEBHOOK_SECRET)}
    return httpx.post(f"{url}/webhooks/calcom", content=body, headers=headers, timeout=60)


def book(url: str, redis_url: str, payload: dict[str, Any]) -> str:
    """A signed BOOKING_CREATED; the new intake's token."""
    response = post_webhook(url, "BOOKING_CREATED", payload)
    assert response.status_code == 200 and response.json()["status"] == "created", response.text
    token = redis.Redis.from_url(redis_url).get(f"intake:booking:{payload['uid']}")
    assert isinstance(token, bytes)
    return token.decode()


@dataclass
class Turn:
    """One POST of a message as the phone saw it."""

    status_code: int = 0
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    broke: str | None = None  # the transport error that cut the stream, if one did
    retry_after: float | None = None  # a 429's Retry-After

    @property
    def done(self) -> dict[str, Any] | None:
        return next((data for event, data in reversed(self.events) if event == "done"), None)

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [data for event, data in self.events if event == "error"]

    @property
    def reply(self) -> str:
        return "".join(str(data.get("text", "")) for event, data in self.events if event == "token")


def consent(client: httpx.Client, token: str) -> None:
    response = client.post(f"/api/intakes/{token}/consent")
    assert response.status_code == 200, response.text


def send(
    client: httpx.Client, token: str, text: str, turn_id: str, on_start: Callable[[], None] | None = None
) -> Turn:
    """Post one message; ``on_start`` runs as soon as the gateway accepted the turn (the fault goes there)."""
    turn = Turn()
    body = {"text": text, "client_turn_id": turn_id}
    try:
        with client.stream("POST", f"/api/intakes/{token}/messages", json=body) as response:
            turn.status_code = response.status_code
            if response.status_code != 200:
                response.read()
                wait = response.headers.get("retry-after", "")
                turn.retry_after = float(wait) if wait.isdigit() else None
                return turn
            if on_start is not None:
                on_start()
            for event in sse_events(response.iter_lines()):
                turn.events.append(event)
    except httpx.TransportError as exc:
        turn.broke = type(exc).__name__
    return turn


def resend_until_answered(client: httpx.Client, token: str, text: str, turn_id: str, within_s: float) -> Turn:
    """What the chat page does after a failure: send the same message (same ``client_turn_id``) again until
    a turn ends without an error event; 409 (the turn still runs), 429, 5xx and a gateway that is not
    listening yet only mean wait and resend."""
    deadline = time.monotonic() + within_s
    turn = Turn()
    while time.monotonic() < deadline:
        turn = send(client, token, text, turn_id)
        if turn.status_code == 200 and turn.done is not None and not turn.errors:
            return turn
        time.sleep(min(turn.retry_after or 2.0, max(0.0, deadline - time.monotonic())))
    raise AssertionError(f"no answer to {text!r} within {within_s:.0f}s; last: {turn}")


def chat_to_end(client: httpx.Client, token: str, lines: list[str] = LINES) -> list[Turn]:
    """Answer until the interview is no longer active (each line resent after an error event)."""
    turns = []
    for line in lines:
        turn = resend_until_answered(client, token, line, str(uuid.uuid4()), within_s=300)
        turns.append(turn)
        assert turn.done is not None
        if turn.done["status"] != "active":
            return turns
    raise AssertionError("the interview did not end")


def state(client: httpx.Client, token: str) -> dict[str, Any]:
    response = client.get(f"/api/intakes/{token}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def assert_each_stored_once(client: httpx.Client, token: str, sent: list[str]) -> dict[str, Any]:
    """Every message the student sent is in the transcript exactly once, each followed by one reply."""
    view = state(client, token)
    said = [m["text"] for m in view["messages"] if m["role"] == "student"]
    for text in sent:
        assert said.count(text) == 1, (text, said)
    roles = [m["role"] for m in view["messages"]]
    assert all(a != b for a, b in itertools.pairwise(roles)), roles  # no doubled turn
    return view


def staff_client(url: str, password: str) -> httpx.Client:
    """A logged-in staff session (the cookie stays in the client)."""
    client = httpx.Client(base_url=url, timeout=60)
    client.get("/staff/login")  # sets the CSRF cookie; every later change sends its token, as the pages do
    token = client.cookies.get("staff_csrf") or ""
    response = client.post("/staff/login", data={"password": password, "_csrf_token": token})
    assert response.status_code == 303, response.text
    client.headers["x-csrftoken"] = token
    return client


def dead_job(staff: httpx.Client, kind: str, booking_uid: str, within_s: float = 90) -> dict[str, Any]:
    """Wait until the worker gave up on the booking's ``kind`` job; its row on the staff page."""
    found: list[dict[str, Any]] = []

    def listed() -> bool:
        rows = staff.get("/staff/api/deliveries/failed").json()
        found[:] = [r for r in rows if r["kind"] == kind and r["booking_uid"] == booking_uid]
        return bool(found)

    wait_until(listed, within_s, f"dead {kind} job", interval=1)
    return found[0]


def retry_job(staff: httpx.Client, job_id: str) -> None:
    response = staff.post(f"/staff/api/deliveries/{job_id}/retry")
    assert response.status_code == 200, response.text
