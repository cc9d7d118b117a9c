"""``GET /staff/api/analytics`` and its charts through the real app and a real Redis: the contract's shape
and figures, bad parameters as problem JSON, a course's figures only for its own staff, and a Cal.com
reschedule by the host travelling from the signed webhook to the host's flag."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from litestar import Litestar
from litestar.testing import AsyncTestClient

from services.analytics.aggregates import Aggregates
from services.analytics.consumer import Consumer
from services.analytics.events import Event, EventLog, event_id
from services.analytics.report import course_analytics
from services.coursepack import Course, StaffMember
from services.gateway.app import create_app
from services.settings import Settings
from tests.analytics.conftest import fold_all
from tests.fixtures.smtp import SmtpCapture
from tests.gateway.delivery.harness import deliver, open_gateway, upcoming
from tests.gateway.intake.scripted import ScriptedModel
from tests.gateway.staff.harness import (
    STAFF_PASSWORD,
    course,
    csrf_ready,
    make_settings,
    open_login_link,
    services_factory,
)

TA = "ta.stat@example.edu"
OFTEN, RARELY = "often@example.edu", "rarely@example.edu"
_LINK = re.compile(r"http://127\.0\.0\.1:8080(/staff/login/[A-Za-z0-9_-]+)")
HOST_FIELDS = {
    "email",
    "bookings",
    "reschedules_by_host",
    "reschedules_by_attendee",
    "reschedule_rate",
    "flagged",
    "cancellations",
    "no_shows",
}
INTAKE_FIELDS = {"started", "completed", "abandoned", "completion_rate", "useful_rate", "median_turns"}


def stat() -> Course:
    return msgspec.structs.replace(course(), staff=[StaffMember(TA, "Sam Tan")])


def bio() -> Course:
    return msgspec.structs.replace(
        course(), slug="bio110", code="BIO 110", instructor_email="bio@example.edu"
    )


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, smtp_server: SmtpCapture) -> Settings:
    return make_settings(tmp_path, redis_url, smtp_host=smtp_server.host, smtp_port=smtp_server.port)


@pytest.fixture
async def client(settings: Settings, redis_url: str) -> AsyncIterator[AsyncTestClient[Litestar]]:
    redis = aioredis.from_url(redis_url)
    await redis.flushdb()
    await _a_month(redis, settings)
    await redis.aclose()
    app = create_app(settings, services_factory=services_factory(ScriptedModel(), [stat(), bio()]))
    async with AsyncTestClient(app) as test_client:
        yield test_client


async def _a_month(redis: aioredis.Redis, settings: Settings) -> None:
    """Ten bookings each for two hosts of stat150 this week (3 and 1 moved by the host), plus bio110's."""
    week = (dt.date.today() - dt.timedelta(days=dt.date.today().weekday())).isoformat()
    log, events = EventLog(redis, settings.retention_days), []
    for slug, host, moved in (
        ("stat150", OFTEN, 3),
        ("stat150", RARELY, 1),
        ("bio110", "bio@example.edu", 5),
    ):
        for n in range(10):
            uid = f"{slug}-{host}-{n}"
            base = {"course": slug, "week": week, "at": 1_800_000_000.0 + n, "host": host}
            events.append(Event(id=event_id(uid), kind="booking_created", booking=uid, **base))
            if n < moved:
                events.append(
                    Event(
                        id=event_id(uid, "r"),
                        kind="booking_rescheduled",
                        booking=f"{uid}-2",
                        previous=uid,
                        previous_week=week,
                        by="host",
                        **base,
                    )
                )
            intake = {"course": slug, "week": week, "at": 1_800_000_000.0 + n, "intake": uid}
            events.append(Event(id=event_id(uid, "c"), kind="intake_consented", **intake))
            if n % 2:
                events.append(
                    Event(id=event_id(uid, "d"), kind="intake_completed", turns=6, minutes=5, **intake)
                )
                events.append(Event(id=event_id(uid, "p"), kind="professor_rating", value="useful", **intake))
            events.append(
                Event(id=event_id(uid, "s"), kind="summary_delivered", topic="hypothesis-tests", **intake)
            )
    await log.append(events)
    await fold_all(Consumer(redis, settings, "api-test"))


async def _operator(client: AsyncTestClient[Litestar]) -> None:
    token = await csrf_ready(client)
    response = await client.post(
        "/staff/login", data={"password": STAFF_PASSWORD, "_csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 303, response.text


async def _as_ta(client: AsyncTestClient[Litestar], smtp: SmtpCapture) -> None:
    before = len(smtp.to(TA))
    assert (await client.post("/staff/login/link", json={"email": TA})).status_code == 202
    for _ in range(200):
        if len(smtp.to(TA)) > before:
            break
        await asyncio.sleep(0.05)
    body = str(smtp.to(TA)[-1].get_body(("plain",)).get_content())  # type: ignore[union-attr]
    assert (await open_login_link(client, _LINK.findall(body)[-1])).status_code == 303


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def test_the_contract_shape_and_the_flag(client: AsyncTestClient[Litestar]) -> None:
    """``hosts``, ``intakes`` and ``topics`` carry the documented fields; 3 of 10 moved by the host is
    flagged (above 15 %), 1 of 10 is not; another course's hosts are not in this course's figures."""
    await _operator(client)
    body = (await client.get("/staff/api/analytics", params={"course": "stat150", "weeks": "4"})).json()
    hosts = {h["email"]: h for h in body["hosts"]}
    assert set(hosts) == {OFTEN, RARELY}
    assert all(set(h) >= HOST_FIELDS for h in body["hosts"])
    assert (hosts[OFTEN]["reschedule_rate"], hosts[OFTEN]["flagged"]) == (0.3, True)
    assert (hosts[RARELY]["reschedule_rate"], hosts[RARELY]["flagged"]) == (0.1, False)
    assert hosts[OFTEN]["bookings"] == 10 and hosts[OFTEN]["reschedules_by_host"] == 3
    intakes = body["intakes"]
    assert set(intakes) >= INTAKE_FIELDS
    assert (intakes["started"], intakes["completed"], intakes["completion_rate"]) == (20, 10, 0.5)
    assert (intakes["useful_rate"], intakes["median_turns"]) == (1.0, 6.0)
    (topic,) = body["topics"]
    assert set(topic) >= {"id", "title", "this_week", "last_week"}
    assert (topic["id"], topic["this_week"], topic["last_week"]) == ("hypothesis-tests", 20, 0)


async def test_bad_parameters_are_problems(client: AsyncTestClient[Litestar]) -> None:
    """weeks outside 1-26 or not a number: 422; an unknown course: 404; no session: 401; all problem JSON."""
    assert _problem(await client.get("/staff/api/analytics?course=stat150"), 401)
    await _operator(client)
    for weeks in ("0", "27", "abc", "-1", "2.5", "²", "١"):
        body = _problem(await client.get(f"/staff/api/analytics?course=stat150&weeks={weeks}"), 422)
        assert "weeks" in body["detail"]
    _problem(await client.get("/staff/api/analytics?course=nope"), 404)
    _problem(await client.get("/staff/api/analytics/charts/pie?course=stat150"), 404)
    ok = await client.get("/staff/api/analytics?weeks=1")
    assert ok.status_code == 200 and ok.json()["course"] == "bio110", "no course: the first one by slug"


async def test_a_course_s_figures_are_only_for_its_staff(
    client: AsyncTestClient[Litestar], smtp_server: SmtpCapture
) -> None:
    """A TA of stat150 sees stat150 (also by default) and gets 404 for bio110, as if it did not exist."""
    await _as_ta(client, smtp_server)
    choices = (await client.get("/staff/api/analytics/courses")).json()
    assert [c["slug"] for c in choices] == ["stat150"]
    assert (await client.get("/staff/api/analytics")).json()["course"] == "stat150"
    _problem(await client.get("/staff/api/analytics?course=bio110"), 404)
    _problem(await client.get("/staff/api/analytics/charts/hosts?course=bio110"), 404)


async def test_charts_are_svg_drawn_from_the_same_figures(client: AsyncTestClient[Litestar]) -> None:
    """Each chart is an SVG (text kept as text) naming the hosts the table names; the page is served."""
    await _operator(client)
    for name in ("hosts", "intakes", "topics"):
        response = await client.get(f"/staff/api/analytics/charts/{name}?course=stat150&weeks=4")
        assert response.status_code == 200 and response.headers["content-type"].startswith("image/svg+xml")
        assert response.content.lstrip().startswith(b"<?xml") and b"<svg" in response.content
    hosts_svg = (await client.get("/staff/api/analytics/charts/hosts?course=stat150")).text
    assert "often" in hosts_svg and "30%" in hosts_svg
    page = await client.get("/staff/analytics")
    assert page.status_code == 200 and "analytics.js" in page.text


async def test_a_host_reschedule_travels_from_the_webhook_to_the_flag(tmp_path: Path, redis_url: str) -> None:
    """Signed deliveries: a BOOKING_RESCHEDULED whose ``rescheduledBy`` is the organizer counts against the
    host, the sample's (the student) does not; one host move in two bookings is 50 %: flagged."""
    async with open_gateway(tmp_path, redis_url) as gw:
        created, by_host = upcoming("booking_created"), upcoming("booking_rescheduled", 4)
        by_host["payload"]["rescheduledBy"] = "ana.rivera@univ.example.edu"
        by_host["payload"]["rescheduleStartTime"] = created["payload"]["startTime"]
        other, by_student = upcoming("booking_created"), upcoming("booking_rescheduled", 5)
        other["payload"]["uid"], by_student["payload"]["rescheduleUid"] = "second", "second"
        by_student["payload"]["uid"] = "second-moved"
        by_student["payload"]["rescheduleStartTime"] = other["payload"]["startTime"]
        for delivery in (created, by_host, other, by_student):
            await deliver(gw.client, delivery)
        await fold_all(Consumer(gw.services.redis, gw.settings, "webhook-test"))
        meeting = dt.date.fromisoformat(created["payload"]["startTime"][:10])
        figures = await course_analytics(
            Aggregates(gw.services.redis, 3600), gw.services.catalog.courses["writ101"], 1, 0.15, meeting
        )
        (host,) = figures.hosts
        assert host.email == "ana.rivera@univ.example.edu"
        assert (host.bookings, host.reschedules_by_host, host.reschedules_by_attendee) == (2, 1, 1)
        assert (host.reschedule_rate, host.flagged) == (0.5, True)
        assert figures.intakes.invited == 2
