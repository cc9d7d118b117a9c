"""The one Redis lock (services/gateway/locks.py) on a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from services.gateway import locks
from services.gateway.errors import Conflict


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    await client.delete("test:lock")
    try:
        yield client
    finally:
        await client.aclose()


async def test_a_held_lock_is_refused_until_released(redis: aioredis.Redis) -> None:
    """A second taker gets None (after waiting ``wait_s``); once released, it gets the lock."""
    first = await locks.acquire(redis, "test:lock", ttl_s=30)
    assert first is not None
    assert await locks.acquire(redis, "test:lock", ttl_s=30, wait_s=0.1) is None
    assert await first.release()
    assert await locks.acquire(redis, "test:lock", ttl_s=30) is not None


async def test_a_waiting_taker_gets_the_lock_when_it_is_released(redis: aioredis.Redis) -> None:
    first = await locks.acquire(redis, "test:lock", ttl_s=30)
    assert first is not None
    waiting = asyncio.create_task(locks.acquire(redis, "test:lock", ttl_s=30, wait_s=5))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await first.release()
    assert await asyncio.wait_for(waiting, 5) is not None


async def test_releasing_an_expired_lock_never_frees_the_next_holders(redis: aioredis.Redis) -> None:
    """The release is one compare-and-delete: a holder whose lock ran out cannot delete its successor's."""
    stale = await locks.acquire(redis, "test:lock", ttl_s=0.1)
    assert stale is not None
    await asyncio.sleep(0.2)
    current = await locks.acquire(redis, "test:lock", ttl_s=30)
    assert current is not None
    assert not await stale.release()
    assert (await redis.get("test:lock")).decode() == current.owner  # type: ignore[union-attr]
    assert await locks.acquire(redis, "test:lock", ttl_s=30) is None


async def test_hold_raises_the_callers_error_when_busy_and_releases_on_the_way_out(
    redis: aioredis.Redis,
) -> None:
    async with locks.hold(redis, "test:lock", ttl_s=30, busy=lambda: Conflict("busy")):
        with pytest.raises(Conflict):
            async with locks.hold(redis, "test:lock", ttl_s=30, busy=lambda: Conflict("busy")):
                pass
    assert await redis.get("test:lock") is None
