"""The quality tests share the session's real Redis: each starts without any ``quality:*`` key."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    keys = [k async for k in client.scan_iter("quality:*")]
    if keys:
        await client.delete(*keys)
    try:
        yield client
    finally:
        await client.aclose()
