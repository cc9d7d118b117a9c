"""The lock as a lease (``locks.hold(..., lease_s=...)``) on a real Redis: a live holder keeps it past its
lease, a dead one frees it after the lease, and the chat's turn lock is one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from services.gateway import locks
from services.gateway.errors import Conflict
from services.gateway.intake.store import IntakeStore

KEY = "test:lease"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    await client.delete(KEY, "intake:lock:lease-token")
    try:
        yield client
    finally:
        await client.aclose()


def _busy() -> Conflict:
    return Conflict("busy")


async def test_a_live_holder_keeps_its_lease_beyond_the_lease_time(redis: aioredis.Redis) -> None:
    """Held for three leases: nobody else gets it meanwhile; after the block it is free at once."""
    async with locks.hold(redis, KEY, ttl_s=30, lease_s=0.3, busy=_busy):
        await asyncio.sleep(0.9)
        assert await locks.acquire(redis, KEY, ttl_s=5) is None
        assert 0 < await redis.pttl(KEY) <= 300
    assert await locks.acquire(redis, KEY, ttl_s=5) is not None


async def test_a_holder_that_died_frees_the_lock_after_its_lease(redis: aioredis.Redis) -> None:
    """A holder that stops renewing (its process was killed: here its renewals are cancelled) blocks the
    next taker for about one lease, not for its whole ``ttl_s``."""
    holding = locks.hold(redis, KEY, ttl_s=300, lease_s=0.5, busy=_busy)
    await holding.__aenter__()
    for task in asyncio.all_tasks():
        if task.get_coro().__name__ == "_renew":  # type: ignore[union-attr]
            task.cancel()  # the process is gone: no more renewals, no release
    assert await locks.acquire(redis, KEY, ttl_s=5, wait_s=0.1) is None
    assert await locks.acquire(redis, KEY, ttl_s=5, wait_s=2.0) is not None


async def test_a_lease_ends_at_the_holders_deadline(redis: aioredis.Redis) -> None:
    """A holder that hangs is renewed only until ``ttl_s`` after it took the lock."""
    async with locks.hold(redis, KEY, ttl_s=0.8, lease_s=0.3, busy=_busy):
        await asyncio.sleep(1.3)
        assert await redis.exists(KEY) == 0


async def test_the_turn_lock_is_a_lease(redis: aioredis.Redis) -> None:
    """The chat's turn lock lives ``TURN_LEASE_S`` at a time, whatever the turn's own deadline."""
    store = IntakeStore(redis, retention_days=1)
    async with store.turn_lock("lease-token", ttl_s=240):
        ttl_ms = await redis.pttl("intake:lock:lease-token")
        assert 0 < ttl_ms <= 15_000
