"""The whole journey through the real routes: Cal.com books -> invite email -> chat -> summary delivered.

The model is the chat feature's scripted ``ChatModel`` (tests/gateway/intake/scripted.py); everything
else is real (app, Redis, SMTP) except Cal.com, which is the fake server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from finetune.evaluate import sse_events
from services.gateway.delivery.render import BLOCK_START
from services.gateway.intake.models import Summary
from tests.fakes.calcom import FakeCalcom, running_fake_calcom
from tests.fixtures.smtp import SmtpCapture
from tests.gateway.delivery.harness import deliver, open_wired_gateway, record_for, upcoming, work_until
from tests.gateway.intake.scripted import ScriptedModel

UID = "b7Yx2Lq9Kd1pQmRw3sT8vZ"
ANSWERS = [
    "I need help with the thesis for essay 2, the argumentative essay.",
    "I rewrote my thesis twice and read the assignment sheet again.",
    "I am stuck because my thesis is too broad and I cannot narrow it.",
    "I want to leave the meeting with a clear, arguable thesis.",
    "It is due next Friday.",
    "No, that is everything.",
    "Thank you.",
    "Yes.",
]


@pytest.fixture
def calcom() -> Iterator[FakeCalcom]:
    with running_fake_calcom() as fake:
        fake.add_booking(48213, description="Stuck on my thesis for essay 2")
        yield fake


def _done_status(stream: str) -> str:
    """The ``status`` of the last ``done`` event of an SSE body."""
    return str(
        [data for event, data in sse_events(iter(stream.splitlines())) if event == "done"][-1]["status"]
    )


async def test_booking_to_delivered_summary(
    tmp_path: Path, redis_url: str, smtp_server: SmtpCapture, calcom: FakeCalcom
) -> None:
    """A booked student chats to the end; the organizer gets the email and the booking gets the note."""
    async with open_wired_gateway(tmp_path, redis_url, smtp_server, calcom, model=ScriptedModel()) as gw:
        await deliver(gw.client, upcoming("booking_created"))
        token = (await record_for(gw.services, UID)).token

        async def invited() -> bool:
            return bool(smtp_server.to("sam.lee@student.example.edu"))

        await work_until(gw.services, invited)
        assert (await gw.client.post(f"/api/intakes/{token}/consent")).status_code == 200
        status = "active"
        for answer in ANSWERS:
            response = await gw.client.post(f"/api/intakes/{token}/messages", json={"text": answer})
            assert response.status_code == 200, response.text
            status = _done_status(response.text)
            if status != "active":
                break
        assert status == "complete"

        async def delivered() -> bool:
            return bool(smtp_server.to("ana.rivera@univ.example.edu")) and bool(calcom.patches(48213))

        await work_until(gw.services, delivered, timeout=60)
        (mail,) = smtp_server.to("ana.rivera@univ.example.edu")
        (attachment,) = list(mail.iter_attachments())
        summary = msgspec.json.decode(attachment.get_content(), type=Summary)
        assert summary.status == "complete" and summary.booking_uid == UID and summary.turns >= 1
        note = calcom.description(48213) or ""
        assert note.startswith("Stuck on my thesis for essay 2") and note.count(BLOCK_START) == 1
        state = (await gw.client.get(f"/api/intakes/{token}")).json()
        assert state["status"] == "complete" and state["summary"]["booking_uid"] == UID
