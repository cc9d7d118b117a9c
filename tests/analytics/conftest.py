"""The analytics tests: a flushed real Redis (the session's), and helpers to emit and fold events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis

from services.analytics.consumer import Consumer
from services.analytics.events import EventLog
from services.settings import Settings


@pytest.fixture
def settings(tmp_path: Path, redis_url: str) -> Settings:
    return msgspec.convert(
        {"data_dir": str(tmp_path / "data"), "redis_url": redis_url, "analytics_claim_idle_s": 0.2}, Settings
    )


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def log(redis: aioredis.Redis, settings: Settings) -> EventLog:
    return EventLog(redis, settings.retention_days)


async def fold_all(consumer: Consumer) -> int:
    """Fold until the stream has nothing new for this consumer."""
    await consumer.ensure_group()
    total = 0
    while handled := await consumer.step(wait=False):
        total += handled
    return total


async def snapshot(redis: aioredis.Redis) -> dict[str, dict[bytes, bytes]]:
    """Every aggregate hash, for comparing two folds."""
    keys = sorted([k.decode() async for k in redis.scan_iter(match="analytics:agg:*")])
    return {k: await redis.hgetall(k) for k in keys}
