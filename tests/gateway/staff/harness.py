"""Set-up shared by the chat route tests, the staff tests and the browser test: settings on the session's
real Redis, an invented course built in code, intakes seeded straight into the ``IntakeStore``, and the
real app with a scripted ``ChatModel`` wired in through ``services_factory`` (the only fake: the model).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio as aioredis
from argon2 import PasswordHasher

from services.coursepack import Catalog, Course
from services.gateway.container import Services, build_services
from services.gateway.intake.models import Booking, IntakeRecord, Person
from services.gateway.intake.store import IntakeStore, new_token, now_iso
from services.gateway.ports import ChatModel
from services.settings import Settings
from tests.gateway.intake.scripted import make_course

STAFF_PASSWORD = "correct horse battery staple"
_HASH: list[str] = []


def staff_hash() -> str:
    """One argon2 hash per test session (hashing is deliberately slow)."""
    if not _HASH:
        _HASH.append(PasswordHasher().hash(STAFF_PASSWORD))
    return _HASH[0]


def make_settings(tmp_path: Path, redis_url: str, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "public_url": "http://127.0.0.1:8080",
        "data_dir": str(tmp_path / "data"),
        "redis_url": redis_url,
        "inference_url": "http://127.0.0.1:9/v1",  # nothing listens: the scripted model answers
        "inference_timeout_s": 5.0,
        "max_turns": 5,
        "min_turns": 3,
        "max_message_chars": 500,
        "retention_days": 30,
        "staff_password_hash": staff_hash(),
        "session_secret": "test-session-secret-0123456789abcdef",
        "rate_limit_login_per_client": 1000,  # many tests log in from the one test client address
    }
    base.update(overrides)
    return msgspec.convert(base, Settings)


def course() -> Course:
    return make_course()


def services_factory(model: ChatModel | None, courses: Sequence[Course] | None = None) -> Any:
    """A ``create_app`` services factory: real Redis and HTTP clients, the given model (None: the real
    OpenAI client), no retriever."""
    catalog = Catalog(courses={c.slug: c for c in (courses or [course()])}, problems=[])

    async def factory(settings: Settings) -> Services:
        return build_services(settings, catalog=catalog, retriever=None, model=model)

    return factory


async def csrf_ready(client: Any) -> str:
    """Open the login page (the CSRF middleware sets its cookie), then send the token as the staff pages'
    script does (header ``X-CSRFToken``) on every later request; returns the token for form posts."""
    if not client.cookies.get("staff_csrf"):
        await client.get("/staff/login")
    token = str(client.cookies.get("staff_csrf") or "")
    client.headers["x-csrftoken"] = token
    return token


async def open_login_link(client: Any, path: str) -> Any:
    """What a person does with the emailed link: open it (a page with one "Log in" button, the link still
    unused) and press the button (the form posts back with its CSRF token). Returns the button's answer
    (303 to where they were going, or 410 for a used or expired link)."""
    shown = await client.get(path, follow_redirects=False)
    if shown.status_code != 200:
        return shown
    token = re.search(r'name="_csrf_token" value="([^"]*)"', shown.text)
    assert token, shown.text
    return await client.post(path, data={"_csrf_token": token.group(1)}, follow_redirects=False)


def future(days: float) -> str:
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


async def seed_intake(redis_url: str, settings: Settings, **fields: Any) -> IntakeRecord:
    """A fresh invited intake for the course, written directly into Redis as the webhook would."""
    booking = Booking(
        uid="bk-" + secrets.token_hex(6),
        booking_id=1234,
        event_type_id=99,
        title="Office hours",
        start_time=future(2),
        end_time=future(2.02),
        organizer=Person("Lee Okafor", "okafor@example.edu"),
        student=Person("Mina Park", "mina@example.edu"),
        notes="",
    )
    record = IntakeRecord(
        token=new_token(),
        booking=booking,
        course_slug=course().slug,
        created_at=now_iso(),
        updated_at=now_iso(),
        **fields,
    )
    await save(redis_url, settings, record)
    return record


async def save(redis_url: str, settings: Settings, record: IntakeRecord) -> None:
    redis = aioredis.from_url(redis_url)
    try:
        await IntakeStore(redis, settings.retention_days).save(record)
    finally:
        await redis.aclose()


async def load(redis_url: str, settings: Settings, token: str) -> IntakeRecord | None:
    redis = aioredis.from_url(redis_url)
    try:
        return await IntakeStore(redis, settings.retention_days).get(token)
    finally:
        await redis.aclose()


def parse_sse(body: str) -> list[tuple[str, dict[str, Any]]]:
    """``text/event-stream`` -> [(event, data)], as a browser's parser would read it."""
    events = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events


def reply_text(events: list[tuple[str, dict[str, Any]]]) -> str:
    return "".join(d["text"] for name, d in events if name == "token")
