"""One Redis lock for every mechanism that needs one (a chat turn, a Cal.com booking, a running job).

``SET key owner NX PX ttl`` takes it; the release is one Lua call that deletes the key only while it still
holds our owner token, so a holder whose lock expired can never delete the next holder's lock (a GET then
DEL from Python could, between the two calls).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import redis.asyncio as aioredis

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_POLL_S = 0.05


class RedisLock:
    """A held lock; ``release`` is safe to call twice and after the lock expired."""

    def __init__(self, redis: aioredis.Redis, key: str, owner: str) -> None:
        self.redis = redis
        self.key = key
        self.owner = owner

    async def release(self) -> bool:
        """True when this call deleted our lock; False when it had expired (or was released already)."""
        return bool(await self.redis.eval(_RELEASE, 1, self.key, self.owner))


async def acquire(redis: aioredis.Redis, key: str, *, ttl_s: float, wait_s: float = 0.0) -> RedisLock | None:
    """The lock, or None if someone else still holds it after ``wait_s`` seconds."""
    owner = secrets.token_hex(8)
    deadline = time.monotonic() + wait_s
    while not await redis.set(key, owner, nx=True, px=max(1, int(ttl_s * 1000))):
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(_POLL_S)
    return RedisLock(redis, key, owner)


@asynccontextmanager
async def hold(
    redis: aioredis.Redis,
    key: str,
    *,
    ttl_s: float,
    wait_s: float = 0.0,
    busy: Callable[[], BaseException],
) -> AsyncIterator[RedisLock]:
    """Hold the lock for the block; raise ``busy()`` if it cannot be had within ``wait_s``."""
    lock = await acquire(redis, key, ttl_s=ttl_s, wait_s=wait_s)
    if lock is None:
        raise busy()
    try:
        yield lock
    finally:
        await lock.release()
