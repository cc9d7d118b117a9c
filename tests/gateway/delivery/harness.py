"""Shared set-up for the webhook and delivery tests: settings pointed at the session's real Redis, a tiny
course pack mapped to the sample payloads' event type, the real app, and helpers to sign and post.

Nothing here is a mock: Redis, SMTP (aiosmtpd), the HTTP app and the SAQ worker are real; Cal.com is the
fake server.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from services.coursepack import load_catalog
from services.gateway.app import create_app
from services.gateway.container import Services, build_services
from services.gateway.delivery.queue import QueuedJob
from services.gateway.intake.models import IntakeRecord, Person, Summary
from services.gateway.intake.store import IntakeStore
from services.gateway.ports import ChatModel
from services.gateway.webhooks.signature import sign
from services.gateway.worker import run_worker
from services.settings import Settings
from tests.fakes.calcom import FakeCalcom
from tests.fixtures.smtp import SmtpCapture

SECRET = "whsec-test-secret"
SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "calcom"
COURSE_TOML = """
code = "WRIT 101"
title = "Academic Writing"
instructor_name = "Dr. Ana Rivera"
instructor_email = "ana.rivera@univ.example.edu"

[calcom]
event_type_ids = [3101]
event_type_slugs = ["writ101-office-hours"]

[[topics]]
id = "thesis-statements"
title = "Thesis statements"

[[assignments]]
id = "essay-2"
title = "Essay 2: Argumentative essay"
topics = ["thesis-statements"]
"""


def sample(name: str) -> dict[str, Any]:
    """A Cal.com sample payload (tests/fixtures/calcom), as a fresh dict the test may edit."""
    return copy.deepcopy(json.loads((SAMPLES / f"{name}.json").read_text()))


def future(days: float) -> str:
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def upcoming(name: str, days: float = 3.0) -> dict[str, Any]:
    """A sample whose meeting is ``days`` ahead (the samples' own dates would make summaries due at once)."""
    data = sample(name)
    data["payload"]["startTime"] = future(days)
    data["payload"]["endTime"] = future(days + 0.02)
    return data


def encode(data: Any) -> bytes:
    return json.dumps(data).encode()


def make_settings(tmp_path: Path, redis_url: str, **overrides: Any) -> Settings:
    corpus = tmp_path / "corpus"
    (corpus / "writ101").mkdir(parents=True, exist_ok=True)
    (corpus / "writ101" / "course.toml").write_text(COURSE_TOML)
    base: dict[str, Any] = {
        "public_url": "https://intake.example.test",
        "data_dir": str(tmp_path / "data"),
        "corpus_dir": str(corpus),
        "redis_url": redis_url,
        "inference_url": "http://127.0.0.1:9/v1",  # nothing listens: the model is never needed here
        "inference_timeout_s": 1.0,
        "calcom_webhook_secret": SECRET,
        "calcom_api_url": "http://127.0.0.1:9",
        "calcom_timeout_s": 0.5,
        "outbox_backoff_base_s": 0.05,
        "outbox_backoff_max_s": 0.2,
        "outbox_max_attempts": 4,
        "worker_poll_s": 0.05,
        "reminder_before_s": 0,  # no reminder job in these job lists (tests/gateway/test_booking_side.py)
    }
    base.update(overrides)
    return msgspec.convert(base, Settings)


def open_test_services(settings: Settings, model: ChatModel | None = None) -> Services:
    """Services on the test corpus, without retrieval; the model is the real client unless given."""
    return build_services(
        settings, catalog=load_catalog(Path(settings.corpus_dir)), retriever=None, model=model
    )


@dataclass
class Gateway:
    services: Services  # what the in-process worker and the assertions use
    client: AsyncTestClient  # the real app, with its own clients on the same Redis

    @property
    def settings(self) -> Settings:
        return self.services.settings


@asynccontextmanager
async def open_gateway(
    tmp_path: Path, redis_url: str, *, model: ChatModel | None = None, **overrides: Any
) -> AsyncIterator[Gateway]:
    """Fresh Redis contents, the real app and a Services for the in-process worker.

    ``overrides`` are settings fields; ``model`` (e.g. a scripted ChatModel) goes to both Services.
    """
    settings = make_settings(tmp_path, redis_url, **overrides)
    services = open_test_services(settings, model)
    await services.redis.flushdb()

    async def app_services(settings: Settings) -> Services:
        return open_test_services(settings, model)

    app = create_app(settings, services_factory=app_services)
    try:
        async with AsyncTestClient(app=app) as client:
            yield Gateway(services, client)
    finally:
        await services.aclose()


@asynccontextmanager
async def open_live_app(
    tmp_path: Path, redis_url: str, *, model: ChatModel | None = None, **overrides: Any
) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    """The real app in this test's own event loop (``AsyncTestClient`` runs it in another), so requests
    can really overlap: (the app's own Services, an HTTP client for it)."""
    settings = make_settings(tmp_path, redis_url, **overrides)

    async def app_services(settings: Settings) -> Services:
        return open_test_services(settings, model)

    app = create_app(settings, services_factory=app_services)
    async with app.lifespan():
        services: Services = app.state.services
        await services.redis.flushdb()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield services, http


@asynccontextmanager
async def open_wired_gateway(
    tmp_path: Path, redis_url: str, smtp: SmtpCapture, calcom: FakeCalcom, **overrides: Any
) -> AsyncIterator[Gateway]:
    """``open_gateway`` with both delivery channels configured: the capturing SMTP server and the fake
    Cal.com (its real API key unless ``overrides`` sets another)."""
    settings: dict[str, Any] = {
        "smtp_host": smtp.host,
        "smtp_port": smtp.port,
        "calcom_api_url": calcom.url,
        "calcom_api_key": calcom.api_key,
    }
    async with open_gateway(tmp_path, redis_url, **{**settings, **overrides}) as gateway:
        yield gateway


async def post_webhook(
    client: AsyncTestClient | httpx.AsyncClient,
    body: bytes,
    signature: str | None = "auto",
    secret: str = SECRET,
) -> httpx.Response:
    headers = {"content-type": "application/json", "x-cal-webhook-version": "2021-10-20"}
    if signature == "auto":
        headers["x-cal-signature-256"] = sign(body, secret)
    elif signature is not None:
        headers["x-cal-signature-256"] = signature
    return await client.post("/webhooks/calcom", content=body, headers=headers)


async def deliver(client: AsyncTestClient, data: dict[str, Any]) -> httpx.Response:
    response = await post_webhook(client, encode(data))
    assert response.status_code == 200, response.text
    return response


def store_of(services: Services) -> IntakeStore:
    return services.intakes


async def record_for(services: Services, booking_uid: str) -> IntakeRecord:
    record = await store_of(services).get_by_booking(booking_uid)
    assert record is not None, f"no intake for {booking_uid}"
    return record


async def jobs_of(services: Services, token: str) -> list[QueuedJob]:
    return await services.jobs.jobs_for(token)


@asynccontextmanager
async def working(services: Services) -> AsyncIterator[None]:
    """The real SAQ worker (both queues) running in-process for the block."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(services, stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)


async def wait_for(done: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await done():
        if time.monotonic() > deadline:
            pytest.fail(f"not there after {timeout}s")
        await asyncio.sleep(0.05)


async def work_until(services: Services, done: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    """Run the worker until ``done()`` holds."""
    async with working(services):
        await wait_for(done, timeout)


def make_summary(record: IntakeRecord, status: str = "complete") -> Summary:
    return Summary(
        booking_uid=record.booking.uid,
        course="WRIT 101",
        student=Person(record.booking.student.name, record.booking.student.email),
        appointment_start=record.booking.start_time,
        status=status,  # type: ignore[arg-type]
        topic="thesis-statements",
        assignment="essay-2",
        request_type="assignment",
        issue_description="The thesis of essay 2 is too broad and the student cannot narrow it.",
        student_attempts="Rewrote the thesis twice after reading the assignment sheet.",
        student_goal="Leave with a narrower, arguable thesis.",
        difficulty=3,
        urgency="high",
        professor_prep_note="Bring the essay 2 sheet and two model theses.",
        turns=6,
        transcript_url="https://intake.example.test/staff/intakes/x",
    )
