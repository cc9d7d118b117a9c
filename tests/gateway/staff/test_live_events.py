"""Server push over a real HTTP server (uvicorn): the dashboard's and the student's event streams carry
changes as they are stored, only to the people allowed to see them.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis

from services.coursepack import StaffMember
from services.gateway.app import create_app
from services.gateway.intake.models import ChatMessage, IntakeRecord
from services.gateway.intake.store import IntakeStore
from services.gateway.live import CHANNEL
from services.gateway.staff import live as staff_live
from services.settings import Settings
from tests.browser.conftest import serve
from tests.gateway.intake.scripted import ScriptedModel, make_course
from tests.gateway.staff.harness import (
    STAFF_PASSWORD,
    make_settings,
    open_login_link,
    save,
    seed_intake,
    services_factory,
)

TA = "ta@example.edu"
# every test here logs in; the session shares one Redis, so the per-client login limit would bite
NO_LOGIN_LIMIT = {"rate_limit_login_per_client": 0}


def _courses() -> list[Any]:
    stat = msgspec.structs.replace(make_course(), staff=[StaffMember(email=TA, name="Sam Lee")])
    phil = msgspec.structs.replace(make_course(), slug="phil210", code="PHIL 210", title="Ethics")
    return [stat, phil]


async def _events(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    name, data = "message", []
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            yield name, json.loads("\n".join(data))
            name, data = "message", []


async def _next(events: AsyncIterator[tuple[str, dict[str, Any]]], wanted: str) -> dict[str, Any]:
    async def find() -> dict[str, Any]:
        async for name, data in events:
            if name == wanted:
                return data
        raise AssertionError(f"the stream ended before a {wanted!r} event")

    return await asyncio.wait_for(find(), 10)


async def _operator(client: httpx.AsyncClient) -> None:
    await client.get("/staff/login")
    form = {"password": STAFF_PASSWORD, "_csrf_token": client.cookies.get("staff_csrf") or ""}
    assert (await client.post("/staff/login", data=form)).status_code == 303


async def _ta(client: httpx.AsyncClient, settings: Settings) -> None:
    assert (await client.post("/staff/login/link", json={"email": TA})).status_code == 202
    folder = settings.data_path / "mail"
    for _ in range(100):
        if folder.exists() and (mails := sorted(folder.glob("*-login-*.eml"))):
            break
        await asyncio.sleep(0.1)
    link = re.search(r"/staff/login/[A-Za-z0-9_\-]+", mails[-1].read_text())
    assert link
    assert (await open_login_link(client, link.group(0))).status_code == 303
    client.headers["x-csrftoken"] = client.cookies.get("staff_csrf") or ""


async def _delete(redis_url: str, settings: Settings, token: str) -> None:
    redis = aioredis.from_url(redis_url)
    try:
        await IntakeStore(redis, settings.retention_days).delete(token)
    finally:
        await redis.aclose()


def test_the_store_announces_on_the_live_channel() -> None:
    """The channel the store's scripts publish on is the one the hub listens to."""
    from services.gateway.intake import store

    assert f"'PUBLISH', '{CHANNEL}'" in store._SAVE and f"'PUBLISH', '{CHANNEL}'" in store._CREATE


async def test_dashboard_stream_sends_changed_rows_of_the_staff_members_courses_only(
    redis_url: str, tmp_path: Path
) -> None:
    """A TA's dashboard stream gets the row of their course's intake when it changes, never another
    course's, and a reload when one is deleted; another course's intake stream is a 404."""
    settings = make_settings(tmp_path, redis_url, **NO_LOGIN_LIMIT)
    mine = await seed_intake(redis_url, settings)
    theirs = await seed_intake(redis_url, settings)
    theirs.course_slug = "phil210"
    await save(redis_url, settings, theirs)
    with serve(
        create_app(settings, services_factory=services_factory(ScriptedModel(), _courses()))
    ) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as client:
            await _ta(client, settings)
            refused = await client.get(f"/staff/api/intakes/{theirs.staff_id}/events")
            assert refused.status_code == 404
            async with client.stream("GET", "/staff/api/events") as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                events = _events(response)
                await _next(events, "ready")
                theirs.status = "escalated"
                await save(redis_url, settings, theirs)  # announced first: would arrive first if sent
                mine.status = "escalated"
                await save(redis_url, settings, mine)
                row = await _next(events, "row")
                assert row["staff_id"] == mine.staff_id and row["group"] == "attention"
                assert mine.token not in json.dumps(row)
                await _delete(
                    redis_url, settings, mine.token
                )  # a privacy deletion: the page reloads its list
                await _next(events, "reload")


async def test_a_line_separator_in_a_name_does_not_cut_an_event(redis_url: str, tmp_path: Path) -> None:
    """JSON may carry U+2028 raw, but line readers such as httpx's end a line there: the row of a student
    whose name has one still arrives whole to them (and decodes to the same name)."""
    settings = make_settings(tmp_path, redis_url, **NO_LOGIN_LIMIT)
    record = await seed_intake(redis_url, settings)
    name = "Ana\u2028Lee\u2029Ruiz\x85"
    with serve(
        create_app(settings, services_factory=services_factory(ScriptedModel(), _courses()))
    ) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as client:
            await _ta(client, settings)
            async with client.stream("GET", "/staff/api/events") as response:
                events = _events(response)
                await _next(events, "ready")
                record.booking = msgspec.structs.replace(
                    record.booking, student=msgspec.structs.replace(record.booking.student, name=name)
                )
                await save(redis_url, settings, record)
                while (row := await _next(events, "row"))["staff_id"] != record.staff_id:
                    pass
                assert row["student_name"] == name


async def test_student_stream_carries_a_staff_message_live(redis_url: str, tmp_path: Path) -> None:
    """The student's page hears a staff member's message the moment it is stored, with their name."""
    settings = make_settings(tmp_path, redis_url, **NO_LOGIN_LIMIT)
    record: IntakeRecord = await seed_intake(redis_url, settings)
    with serve(
        create_app(settings, services_factory=services_factory(ScriptedModel(), _courses()))
    ) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as client:
            assert (await client.post(f"/api/intakes/{record.token}/consent")).status_code == 200
            await _operator(client)
            client.headers["x-csrftoken"] = client.cookies.get("staff_csrf") or ""
            async with client.stream("GET", f"/api/intakes/{record.token}/events") as response:
                events = _events(response)
                first = await _next(events, "state")
                assert first["taken_over"] is False and len(first["messages"]) == 1
                taken = await client.post(
                    f"/staff/api/intakes/{record.staff_id}/takeover", json={"taken_over": True}
                )
                assert taken.status_code == 200, taken.text
                sent = await client.post(
                    f"/staff/api/intakes/{record.staff_id}/messages", json={"text": "Hello!"}
                )
                assert sent.status_code == 200
                while True:
                    state = await _next(events, "state")
                    if state["messages"][-1]["role"] == "staff":
                        break
                assert state["taken_over"] is True and state["staff_name"] == "Course staff"
                assert ChatMessage("staff", "Hello!", author="Course staff") == msgspec.convert(
                    state["messages"][-1], ChatMessage
                )
            assert (await client.get("/api/intakes/nope/events")).status_code == 404


async def test_a_logout_ends_the_open_dashboard_stream(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a logout the open stream says ``ended`` at its next keep-alive instead of feeding on."""
    monkeypatch.setattr(staff_live, "KEEP_ALIVE_S", 0.3)
    settings = make_settings(tmp_path, redis_url, **NO_LOGIN_LIMIT)
    with serve(
        create_app(settings, services_factory=services_factory(ScriptedModel(), _courses()))
    ) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as client:
            await _operator(client)
            cookies = dict(client.cookies)
            async with client.stream("GET", "/staff/api/events") as response:
                events = _events(response)
                await _next(events, "ready")
                logout = {"_csrf_token": cookies.get("staff_csrf", "")}
                async with httpx.AsyncClient(base_url=gateway.url, cookies=cookies) as other:
                    assert (await other.post("/staff/logout", data=logout)).status_code == 303
                ended = await _next(events, "ended")
                assert "Log in again" in ended["message"]
