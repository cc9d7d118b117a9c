"""An intake stored before records had a staff id gets one on its first read, and keeps it."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import redis.asyncio as aioredis

from services.gateway.intake.store import IntakeStore
from tests.gateway.staff.harness import make_settings, seed_intake


async def test_an_intake_stored_without_a_staff_id_gets_one_that_stays(
    redis_url: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, redis_url)
    record = await seed_intake(redis_url, settings)
    redis = aioredis.from_url(redis_url)
    try:
        old = json.loads(msgspec.json.encode(record))
        del old["staff_id"]  # as the previous version wrote it
        await redis.set(f"intake:tok:{record.token}", json.dumps(old))
        store = IntakeStore(redis, settings.retention_days)
        first = await store.get(record.token)
        again = await store.get(record.token)
        assert first is not None and again is not None and first.staff_id == again.staff_id
        assert await store.token_for_staff(first.staff_id) == record.token  # the staff link resolves
        assert b'"staff_id"' in (await redis.get(f"intake:tok:{record.token}") or b"")
    finally:
        await redis.aclose()
