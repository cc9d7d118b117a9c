"""Races at the edges of a chat turn, through the real app: a cancellation landing while a turn is
being stored, and a client that sends its next message the moment it sees ``done``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec

from services.coursepack import Catalog
from services.gateway.app import create_app
from services.gateway.container import Services, build_services
from services.gateway.intake.models import IntakeRecord
from services.gateway.intake.store import IntakeStore
from services.gateway.webhooks.handling import decode_envelope, handle_webhook
from services.settings import Settings
from tests.browser.conftest import serve
from tests.gateway.delivery.harness import encode, sample
from tests.gateway.intake.scripted import ScriptedModel
from tests.gateway.staff.harness import course, load, make_settings, seed_intake

DISTRESS = "I want to kill myself, I can't do this anymore."
ANSWERS = [
    "I am stuck on problem set 3, the t-test questions.",
    "I don't understand when to reject the null hypothesis with the p-value.",
    "I re-read the lecture notes and tried problem 2 twice.",
    "I want to understand how to interpret the p-value.",
]


class CancelWhileStoring(IntakeStore):
    """The real store; once armed, the next write of the intake is preceded by Cal.com's cancellation
    (handled by the real webhook code), as if another gateway took it between the turn's read and write."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.services: Services | None = None
        self.armed = False

    async def save(self, record: IntakeRecord, *, expect: int | None = None) -> bool:
        if self.armed and self.services is not None:
            self.armed = False
            data = sample("booking_cancelled")
            data["payload"]["uid"] = record.booking.uid
            body = encode(data)
            await handle_webhook(self.services, decode_envelope(body), body)
        return await super().save(record, expect=expect)


class SlowRelease(IntakeStore):
    """The real store whose turn lock takes a while to release (a loaded Redis, a slow network)."""

    @asynccontextmanager
    async def turn_lock(self, token: str, ttl_s: int = 180, wait_s: float = 0.0) -> AsyncIterator[None]:
        async with super().turn_lock(token, ttl_s, wait_s):
            yield
            await asyncio.sleep(0.3)


def _services_with(store_factory: Any, model: ScriptedModel) -> Any:
    catalog = Catalog(courses={course().slug: course()}, problems=[])

    async def factory(settings: Settings) -> Services:
        services = build_services(settings, catalog=catalog, retriever=None, model=model)
        services.intakes = store_factory(services)
        return services

    return factory


async def test_a_turn_stored_after_a_cancellation_does_not_bring_the_intake_back(
    tmp_path: Path, redis_url: str
) -> None:
    """The student's distress message ends the chat; as the turn is stored the booking is cancelled.
    The intake stays cancelled with no transcript, and no summary is queued for the cancelled booking."""
    settings = make_settings(tmp_path, redis_url)
    stores: list[CancelWhileStoring] = []

    def store(services: Services) -> CancelWhileStoring:
        hooked = CancelWhileStoring(services.redis, settings.retention_days)
        hooked.services = services
        stores.append(hooked)
        return hooked

    app = create_app(settings, services_factory=_services_with(store, ScriptedModel()))
    record = await seed_intake(redis_url, settings)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            assert (await http.post(f"/api/intakes/{record.token}/consent")).status_code == 200
            stores[0].armed = True
            response = await http.post(f"/api/intakes/{record.token}/messages", json={"text": DISTRESS})
            assert response.status_code == 200
            assert not stores[0].armed, "the cancellation ran while the turn was being stored"
            jobs = await app.state.services.jobs.jobs_for(record.token)
    stored = await load(redis_url, settings, record.token)
    assert stored is not None and stored.status == "cancelled"
    assert stored.interview.messages == [] and stored.summary is None
    assert [j.kind for j in jobs if j.kind == "summarize"] == []
    assert '"status":"cancelled"' in response.text, "the turn's done event reports the cancellation"


async def test_the_next_message_sent_the_moment_done_arrives_is_accepted(
    tmp_path: Path, redis_url: str
) -> None:
    """A client that answers as soon as it reads ``done`` (before the stream closes) is never refused
    with 409, however slowly the turn lock is released: ``done`` is sent only after the turn is stored
    and its lock released."""
    settings = make_settings(tmp_path, redis_url, max_turns=8, min_turns=5)
    factory = _services_with(
        lambda services: SlowRelease(services.redis, settings.retention_days), ScriptedModel()
    )
    record = await seed_intake(redis_url, settings)
    statuses: list[int] = []
    with serve(create_app(settings, services_factory=factory)) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http, AsyncExitStack() as streams:
            assert (await http.post(f"/api/intakes/{record.token}/consent")).status_code == 200
            url = f"/api/intakes/{record.token}/messages"
            for answer in ANSWERS:  # each stream stays open while the next message goes out
                body = {"text": answer, "client_turn_id": str(uuid.uuid4())}
                response = await streams.enter_async_context(http.stream("POST", url, json=body))
                statuses.append(response.status_code)
                if response.status_code != 200:
                    break
                assert (await _done(response))["status"] == "active"
    assert statuses == [200] * len(ANSWERS)


async def _done(response: httpx.Response) -> dict[str, Any]:
    """Read the event stream up to the ``done`` event's data, leaving the rest unread."""
    seen_done = False
    async for line in response.aiter_lines():
        if line.startswith("event: done"):
            seen_done = True
        elif seen_done and line.startswith("data:"):
            return dict(msgspec.json.decode(line[5:]))
    raise AssertionError("the stream ended without done")
