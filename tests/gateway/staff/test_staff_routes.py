"""Staff pages through the real app on a real Redis: the operator's password login, sessions, the intake
list and detail, take-over (staff messages reach the student's chat), summary rating, and the password
helper. Accounts per course, login links, CSRF and isolation: ``test_accounts.py``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from argon2 import PasswordHasher
from litestar import Litestar
from litestar.testing import AsyncTestClient
from saq.job import Status

from services.coursepack import Catalog
from services.gateway.app import create_app
from services.gateway.container import Services, build_services
from services.gateway.delivery.queue import JobArgs, QueuedJob
from services.gateway.intake.models import Flags, IntakeRecord, Person, Summary
from services.gateway.staff.auth import LOGIN_ATTEMPTS
from services.settings import REPO_ROOT, Settings
from tests.gateway.intake.scripted import ScriptedModel
from tests.gateway.staff.harness import (
    STAFF_PASSWORD,
    csrf_ready,
    load,
    make_settings,
    parse_sse,
    save,
    seed_intake,
    services_factory,
)


@pytest.fixture
def settings(tmp_path: Path, redis_url: str) -> Settings:
    return make_settings(tmp_path, redis_url)


async def _client(settings: Settings) -> AsyncTestClient[Litestar]:
    return AsyncTestClient(create_app(settings, services_factory=services_factory(ScriptedModel())))


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with await _client(settings) as test_client:
        yield test_client


async def login(client: AsyncTestClient[Litestar], password: str = STAFF_PASSWORD) -> httpx.Response:
    """The operator's password form, as the login page posts it (with its CSRF field)."""
    token = await csrf_ready(client)
    form = {"password": password, "_csrf_token": token}
    return await client.post("/staff/login", data=form, follow_redirects=False)


@pytest.fixture
async def staff(client: AsyncTestClient[Litestar]) -> AsyncTestClient[Litestar]:
    """The client, logged in."""
    response = await login(client)
    assert response.status_code == 303, response.text
    return client


async def test_without_a_password_hash_only_the_operator_login_is_off(tmp_path: Path, redis_url: str) -> None:
    """No INTAKE_STAFF_PASSWORD_HASH: the email login still works; the password form is hidden and a
    password post says how to turn it on."""
    settings = make_settings(tmp_path, redis_url, staff_password_hash="")
    async with await _client(settings) as client:
        page = await client.get("/staff/login")
        assert page.status_code == 200 and 'action="/staff/login/link"' in page.text
        password_form = page.text.split('action="/staff/login"', 1)[1].split(">", 1)[0]
        assert "hidden" in password_form
        refused = await login(client)
        assert refused.status_code == 503 and "python -m services.gateway.staff.password" in refused.text
        assert (await client.get("/staff/intakes", follow_redirects=False)).status_code == 303
        assert (await client.get("/staff/api/intakes")).status_code == 401


async def test_pages_and_api_need_a_session(client: AsyncTestClient[Litestar]) -> None:
    """Logged out: pages redirect to the login (and back), the JSON API answers 401 problem JSON."""
    page = await client.get("/staff/intakes", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/staff/login?next=/staff/intakes"
    api = await client.get("/staff/api/intakes")
    assert api.status_code == 401 and api.json()["detail"]


async def test_wrong_password_is_refused(client: AsyncTestClient[Litestar]) -> None:
    response = await login(client, "not the password")
    assert response.status_code == 401 and "not right" in response.text
    assert "staff_session" not in response.headers.get("set-cookie", "")


async def test_login_sets_a_lax_http_only_session_cookie(client: AsyncTestClient[Litestar]) -> None:
    """The session cookie is HttpOnly, SameSite=Lax (an emailed staff link arrives logged in; changes need
    the CSRF token) and scoped to /staff."""
    response = await login(client)
    assert response.status_code == 303 and response.headers["location"] == "/staff/intakes"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("staff_session="))
    assert all(part in cookie.lower() for part in ("httponly", "samesite=lax", "path=/staff"))
    assert (await client.get("/staff/intakes")).status_code == 200


async def test_a_forged_cookie_is_not_a_session(client: AsyncTestClient[Litestar]) -> None:
    """A session id the store does not know (a changed cookie) is no session."""
    await login(client)
    value = client.cookies.get("staff_session")
    assert value
    client.cookies.set("staff_session", value[:-2] + "xx", path="/staff")
    assert (await client.get("/staff/api/intakes")).status_code == 401


async def test_logout_ends_the_session(staff: AsyncTestClient[Litestar]) -> None:
    """Logging out deletes the session in Redis: a kept copy of the cookie no longer works."""
    value = staff.cookies.get("staff_session")
    await staff.post("/staff/logout", follow_redirects=False)
    staff.cookies.set("staff_session", value or "", path="/staff")  # even a kept copy no longer works
    assert (await staff.get("/staff/api/intakes")).status_code == 401


async def test_login_is_rate_limited(tmp_path: Path, redis_url: str) -> None:
    """After a handful of failed attempts from one address, logins wait (even with the right password)."""
    settings = make_settings(tmp_path, redis_url)
    await _forget_attempts(redis_url)
    try:
        async with await _client(settings) as client:
            for _ in range(LOGIN_ATTEMPTS):
                assert (await login(client, "wrong")).status_code == 401
            blocked = await login(client)
            assert blocked.status_code == 429 and "Too many attempts" in blocked.text
    finally:
        await _forget_attempts(redis_url)


async def _forget_attempts(redis_url: str) -> None:
    redis = aioredis.from_url(redis_url)
    try:
        for key in await redis.keys("intake:ratelimit:staff:login:*"):
            await redis.delete(key)
    finally:
        await redis.aclose()


async def test_list_and_detail_show_the_intake(
    staff: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """The list has course, student, appointment, status and turn; the detail adds what only staff see.
    Intakes are addressed by their staff id; the student's token shows nowhere."""
    record = await seed_intake(redis_url, settings)
    listed = await staff.get("/staff/api/intakes")
    rows = listed.json()
    assert record.token not in listed.text
    row = next(r for r in rows if r["staff_id"] == record.staff_id)
    assert row["course_code"] == "STAT 150" and row["student_name"] == "Mina Park"
    assert row["status"] == "invited" and row["turn"] == 0
    assert row["appointment_start"] == record.booking.start_time
    detail = await staff.get(f"/staff/api/intakes/{record.staff_id}")
    assert record.token not in detail.text
    body = detail.json()
    assert body["student_email"] == "mina@example.edu" and body["intake"]["messages"] == []
    assert body["transcript_url"] == f"{settings.public_url}/staff/intakes/{record.staff_id}"
    page = await staff.get(f"/staff/intakes/{record.staff_id}")
    assert page.status_code == 200 and record.token not in page.text
    assert (await staff.get(f"/staff/api/intakes/{record.token}")).status_code == 404


async def test_take_over_lets_staff_answer_in_the_students_chat(
    staff: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """Take over: the student's next message gets no bot reply (nor counts as an interview turn); the staff
    message shows as role staff with who wrote it."""
    record = await seed_intake(redis_url, settings)
    token = record.token
    await staff.post(f"/api/intakes/{token}/consent")
    taken = await staff.post(f"/staff/api/intakes/{record.staff_id}/takeover", json={"taken_over": True})
    assert taken.status_code == 200 and taken.json()["intake"]["taken_over"] is True
    events = parse_sse((await staff.post(f"/api/intakes/{token}/messages", json={"text": "Hello?"})).text)
    assert events == [("done", {"status": "active", "turn": 0})]
    sent = await staff.post(
        f"/staff/api/intakes/{record.staff_id}/messages", json={"text": "Hi Mina, it's Dr. Okafor."}
    )
    assert sent.status_code == 200
    view = (await staff.get(f"/api/intakes/{token}")).json()
    assert view["messages"][-2:] == [
        {"role": "student", "text": "Hello?", "to_staff": True},
        {"role": "staff", "text": "Hi Mina, it's Dr. Okafor.", "author": "Course staff"},
    ]
    back = await staff.post(f"/staff/api/intakes/{record.staff_id}/takeover", json={"taken_over": False})
    assert back.json()["intake"]["taken_over"] is False


async def test_staff_message_limits(
    staff: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """Empty staff messages are 422, oversized ones are refused, unknown intakes are 404."""
    record = await seed_intake(redis_url, settings)
    url = f"/staff/api/intakes/{record.staff_id}/messages"
    assert (await staff.post(url, json={"text": "   "})).status_code == 422
    assert (await staff.post(url, json={"text": "x" * 5000})).status_code == 422
    assert (await staff.post(url, content=b"x" * 100_000)).status_code == 413
    assert (await staff.post("/staff/api/intakes/nope/messages", json={"text": "hi"})).status_code == 404


async def test_professor_rates_the_summary(
    staff: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """No summary yet: 409. With one: useful / not_useful is stored."""
    record = await seed_intake(redis_url, settings)
    url = f"/staff/api/intakes/{record.staff_id}/rating"
    assert (await staff.post(url, json={"value": "useful"})).status_code == 409
    record.summary = _summary(record.booking.uid, record.booking.start_time)
    record.status = "complete"
    await save(redis_url, settings, record)
    assert (await staff.post(url, json={"value": "meh"})).status_code == 422
    rated = await staff.post(url, json={"value": "not_useful"})
    assert rated.status_code == 200 and rated.json()["professor_rating"] == "not_useful"
    stored = await load(redis_url, settings, record.token)
    assert stored and stored.professor_rating == "not_useful"


def _services(settings: Settings) -> Services:
    return build_services(settings, catalog=Catalog(courses={}, problems=[]), retriever=None)


async def _dead_job(settings: Settings, record: IntakeRecord, error: str) -> QueuedJob:
    """An invite email the worker gave up on, queued and failed through SAQ itself."""
    services = _services(settings)
    try:
        args = JobArgs(token=record.token)
        key = await services.jobs.enqueue("invite_email", record.booking.uid, args=args)
        assert key is not None
        job = await services.jobs.intake.job(key)
        assert job is not None
        job.attempts = job.retries
        job.meta["error"] = error
        await job.finish(Status.FAILED, error="Traceback (most recent call last): ...")
        return services.jobs.view(job)
    finally:
        await services.aclose()


async def _job(settings: Settings, job_id: str) -> tuple[QueuedJob | None, list[str]]:
    services = _services(settings)
    try:
        return await services.jobs.get(job_id), [j.id for j in await services.jobs.dead_letters()]
    finally:
        await services.aclose()


async def test_delivery_api_needs_a_session(client: AsyncTestClient[Litestar]) -> None:
    """Logged out: listing and retrying failed deliveries are 401 problem JSON."""
    await csrf_ready(client)
    listed = await client.get("/staff/api/deliveries/failed")
    assert listed.status_code == 401 and listed.json()["detail"]
    assert (await client.post("/staff/api/deliveries/abc/retry")).status_code == 401


async def test_failed_deliveries_are_listed_without_addresses(
    staff: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """A dead job shows with kind, booking uid, staff link and attempts; the error's address is masked."""
    record = await seed_intake(redis_url, settings)
    error = "SMTP 550 <mina@example.edu>: mailbox unavailable " + "x" * 400
    job = await _dead_job(settings, record, error)
    response = await staff.get("/staff/api/deliveries/failed")
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    row = next(r for r in response.json() if r["id"] == job.id)
    assert row["kind"] == "invite_email" and row["booking_uid"] == record.booking.uid
    assert row["intake_url"] == f"{settings.public_url}/staff/intakes/{record.staff_id}"
    assert row["attempts"] == job.max_attempts and row["failed_at"]
    assert row["last_error"].startswith("SMTP 550 <[email]>") and len(row["last_error"]) <= 200
    assert "@" not in response.text


async def test_retry_moves_a_dead_job_back_to_pending(
    staff: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """Retry requeues the job with fresh attempts and drops it from the failed list; twice is 409."""
    record = await seed_intake(redis_url, settings)
    job = await _dead_job(settings, record, "connection refused")
    retried = await staff.post(f"/staff/api/deliveries/{job.id}/retry")
    assert retried.status_code == 200 and retried.json() == {"id": job.id, "state": "pending"}
    stored, dead = await _job(settings, job.id)
    assert stored and stored.state == "pending" and stored.attempts == 0 and job.id not in dead
    listed = (await staff.get("/staff/api/deliveries/failed")).json()
    assert job.id not in [r["id"] for r in listed]
    assert (await staff.post(f"/staff/api/deliveries/{job.id}/retry")).status_code == 409


async def test_retrying_an_unknown_delivery_is_404(staff: AsyncTestClient[Litestar]) -> None:
    """An id the queue does not know (or that expired) is 404 problem JSON."""
    response = await staff.post("/staff/api/deliveries/no-such-job/retry")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


def test_password_helper_prints_a_verifiable_hash() -> None:
    """``python -m services.gateway.staff.password`` reads stdin and prints an argon2 hash of it."""
    result = subprocess.run(
        [sys.executable, "-m", "services.gateway.staff.password"],
        input="a long enough password\n",
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=True,
    )
    hashed = result.stdout.strip()
    assert hashed.startswith("$argon2") and PasswordHasher().verify(hashed, "a long enough password")
    short = subprocess.run(
        [sys.executable, "-m", "services.gateway.staff.password"],
        input="short\n",
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert short.returncode != 0 and "at least" in short.stderr


def _summary(uid: str, start: str) -> Summary:
    fields: dict[str, Any] = {
        "booking_uid": uid,
        "course": "STAT 150",
        "student": Person("Mina Park", "mina@example.edu"),
        "appointment_start": start,
        "status": "complete",
        "topic": "hypothesis-testing",
        "assignment": "ps3",
        "request_type": "assignment",
        "issue_description": "Mina is unsure when to reject the null hypothesis.",
        "student_attempts": "Re-read the slides.",
        "student_goal": "Interpret p-values.",
        "difficulty": 3,
        "urgency": "high",
        "professor_prep_note": "Bring a worked t-test example.",
        "flags": Flags(),
        "turns": 5,
    }
    return Summary(**fields)


async def test_the_job_queue_ui_needs_a_staff_session(client: AsyncTestClient[Litestar]) -> None:
    """SAQ's UI at /staff/queue, its API and its assets: 401 problem JSON without a staff login."""
    for path in ("/staff/queue", "/staff/queue/api/queues", "/staff/queue/static/app.js"):
        response = await client.get(path)
        assert response.status_code == 401, path
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_the_job_queue_ui_shows_both_queues_to_staff(
    staff: AsyncTestClient[Litestar], redis_url: str, settings: Settings
) -> None:
    """Logged in: the UI page, its script, and both queues (intake, model) with a dead job's counts."""
    page = await staff.get("/staff/queue")
    assert page.status_code == 200 and "/staff/queue/static/app.js" in page.text
    assert (await staff.get("/staff/queue/static/app.js")).status_code == 200
    record = await seed_intake(redis_url, settings)
    job = await _dead_job(settings, record, "connection refused")
    queues = (await staff.get("/staff/queue/api/queues")).json()["queues"]
    assert sorted(q["name"] for q in queues) == ["intake", "model"]
    detail = (await staff.get(f"/staff/queue/api/queues/intake/jobs/{job.id}")).json()["job"]
    assert detail["status"] == "failed" and detail["function"] == "invite_email"
