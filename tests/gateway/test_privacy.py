"""Privacy operations on a real Redis and a real data folder: a student's data exported (CLI and the
operator's API) and deleted leaving no key, entry or file behind; retention bounds on every key and mail
file; the data folder private to its owner.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from litestar import Litestar
from litestar.testing import AsyncTestClient

from services.coursepack import Catalog
from services.gateway import privacy
from services.gateway.app import create_app
from services.gateway.container import Services, build_services
from services.gateway.delivery.email import build_invite, send_email
from services.gateway.intake.models import IntakeRecord, Person
from services.settings import REPO_ROOT, Settings
from tests.gateway.intake.scripted import ScriptedModel
from tests.gateway.staff.harness import (
    STAFF_PASSWORD,
    course,
    csrf_ready,
    make_settings,
    save,
    seed_intake,
    services_factory,
)


@pytest.fixture
def settings(tmp_path: Path, redis_url: str) -> Settings:
    return make_settings(tmp_path, redis_url)  # no SMTP host: mail is written into <data>/mail


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    built = build_services(
        settings, catalog=Catalog(courses={course().slug: course()}, problems=[]), retriever=None
    )
    try:
        yield built
    finally:
        await built.aclose()


async def _student(redis_url: str, settings: Settings, services: Services, email: str) -> IntakeRecord:
    """An intake with all a student leaves behind: the record and its indexes, queued jobs (a scheduled
    partial summary, the invitation), a sent invitation in the mail folder, an analytics event."""
    record = await seed_intake(redis_url, settings)
    record.booking = msgspec.structs.replace(record.booking, student=Person("Rae Privacy", email))
    await save(redis_url, settings, record)
    await services.jobs.start_intake(record)
    await send_email(settings, build_invite(settings, record.booking, course(), record.token), "invite")
    await services.redis.xadd(
        "intake:events", {"trigger": "MEETING_ENDED", "booking_uid": record.booking.uid}
    )
    return record


async def _leftovers(redis_url: str, data: Path, ids: list[str]) -> list[str]:
    """Every Redis key, entry and file under ``data`` that still names one of ``ids``."""
    wanted = [i.lower().encode() for i in ids]
    found: list[str] = []
    redis = aioredis.from_url(redis_url)
    try:
        async for raw in redis.scan_iter(count=500):
            key = raw.decode()
            if key in privacy.KEEP:
                continue
            kind = (await redis.type(key)).decode()
            blob: Any = key.encode()
            if kind == "string":
                blob += await redis.get(key) or b""
            elif kind == "hash":
                blob += b" ".join(a + b for a, b in (await redis.hgetall(key)).items())
            elif kind == "list":
                blob += b" ".join(await redis.lrange(key, 0, -1))
            elif kind == "set":
                blob += b" ".join(await redis.smembers(key))
            elif kind == "zset":
                blob += b" ".join(await redis.zrange(key, 0, -1))
            elif kind == "stream":
                blob += b" ".join(v for _, f in await redis.xrange(key) for v in f.values())
            if any(w in blob.lower() for w in wanted):
                found.append(f"redis {kind} {key}")
    finally:
        await redis.aclose()
    for path in data.rglob("*"):
        if path.is_file() and any(w in path.read_bytes().lower() for w in wanted):
            found.append(f"file {path}")
    return found


def _ids(record: IntakeRecord) -> list[str]:
    return [record.booking.student.email, record.token, record.staff_id, record.booking.uid]


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "INTAKE_REDIS_URL": settings.redis_url,
        "INTAKE_DATA_DIR": settings.data_dir,
        "INTAKE_RETENTION_DAYS": str(settings.retention_days),
    }
    return subprocess.run(
        [sys.executable, "-m", "services.gateway.privacy", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=60,
    )


async def _operator(settings: Settings) -> AsyncTestClient[Litestar]:
    client = AsyncTestClient(create_app(settings, services_factory=services_factory(ScriptedModel())))
    await client.__aenter__()
    token = await csrf_ready(client)
    await client.post("/staff/login", data={"password": STAFF_PASSWORD, "_csrf_token": token})
    return client


async def test_export_holds_everything_about_the_student(
    settings: Settings, services: Services, redis_url: str
) -> None:
    """The CLI's JSON has the intake (with its transcript), its queued jobs and the mail file; another
    student's intake is not in it."""
    email = f"rae.{secrets.token_hex(3)}@example.edu"
    record = await _student(redis_url, settings, services, email)
    other = await seed_intake(redis_url, settings)
    result = _cli(settings, "export", email)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["email"] == email and [i["token"] for i in document["intakes"]] == [record.token]
    keys = [entry["key"] for entry in document["redis"]]
    assert any(k.startswith("saq:job:") and record.booking.uid in k for k in keys)
    assert f"intake:staff:{record.staff_id}" in keys
    assert len(document["mail"]) == 1 and record.token in document["mail"][0]["message"]
    assert other.token not in result.stdout


async def test_delete_leaves_no_key_or_file_behind(
    settings: Settings, services: Services, redis_url: str
) -> None:
    """After the operator's delete, a scan of all of Redis and the data folder finds nothing naming the
    student, their intake's token, staff id or booking; another student's intake is untouched."""
    email = f"rae.{secrets.token_hex(3)}@example.edu"
    record = await _student(redis_url, settings, services, email)
    other = await _student(redis_url, settings, services, f"other.{secrets.token_hex(3)}@example.edu")
    assert await _leftovers(redis_url, settings.data_path, _ids(record))  # the check can see them
    client = await _operator(settings)
    try:
        exported = await client.post("/staff/api/privacy/export", json={"email": email})
        assert exported.status_code == 200 and exported.json()["intakes"][0]["token"] == record.token
        deleted = await client.post("/staff/api/privacy/delete", json={"email": email})
        assert deleted.status_code == 200, deleted.text
        report = deleted.json()
        assert report["intakes"] == 1 and report["mail_files"] == 1 and report["redis_keys"] >= 4
        assert await _leftovers(redis_url, settings.data_path, _ids(record)) == []
        assert await services.intakes.get(other.token) is not None
        assert await _leftovers(redis_url, settings.data_path, _ids(other))
        audit = (await client.get("/staff/api/audit?actor=operator")).json()
        assert [e["action"] for e in audit][:2] == ["delete", "export"]
        assert email not in json.dumps(audit)
        refused = await client.post("/staff/api/privacy/delete", json={"email": "not an address"})
        assert refused.status_code == 422
    finally:
        await client.__aexit__(None, None, None)


async def test_course_staff_cannot_use_privacy_operations(settings: Settings, redis_url: str) -> None:
    """Logged out: 401. The privacy page and API are the operator's only (a course's staff get 403: see
    test_accounts for the staff side)."""
    async with AsyncTestClient(
        create_app(settings, services_factory=services_factory(ScriptedModel()))
    ) as client:
        await csrf_ready(client)
        assert (await client.post("/staff/api/privacy/delete", json={"email": "a@b.edu"})).status_code == 401
        assert (await client.get("/staff/privacy", follow_redirects=False)).status_code == 303


async def test_retention_bounds_every_key_and_old_mail(
    settings: Settings, services: Services, redis_url: str
) -> None:
    """After a student's intake is set up, every Redis key either expires or belongs to a family the
    hourly sweep prunes; mail older than the retention period is deleted, newer mail stays."""
    record = await _student(redis_url, settings, services, f"keys.{secrets.token_hex(3)}@example.edu")
    redis = services.redis
    unbounded = [
        key.decode()
        async for key in redis.scan_iter(count=500)
        if await redis.ttl(key) == -1 and not key.decode().startswith(privacy.PRUNED_PREFIXES)
    ]
    assert unbounded == []
    assert await redis.ttl(f"intake:staff:{record.staff_id}") > 0
    mail = settings.data_path / "mail"
    old = mail / "20000101T000000-invite-old.eml"
    old.write_text("Subject: old\n\nold")
    past = time.time() - (settings.retention_days + 1) * 86400
    os.utime(old, (past, past))
    done = await privacy.enforce_retention(services)
    assert done["mail_files"] == 1 and not old.exists()
    assert any(mail.glob("*.eml"))


async def test_the_data_folder_is_private(settings: Settings) -> None:
    """The gateway creates (or tightens) its data folder to mode 0700: mail files hold summaries."""
    settings.data_path.mkdir(parents=True, exist_ok=True)
    settings.data_path.chmod(0o755)
    async with AsyncTestClient(
        create_app(settings, services_factory=services_factory(ScriptedModel()))
    ) as client:
        assert (await client.get("/healthz")).status_code == 200
    assert settings.data_path.stat().st_mode & 0o777 == 0o700
