"""One Redis lock for every mechanism that needs one (a chat turn, a Cal.com booking, a running job).

``SET key owner NX PX ttl`` takes it; the release is one Lua call that deletes the key only while it still
holds our owner token, so a holder whose lock expired can never delete the next holder's lock (a GET then
DEL from Python could, between the two calls).

A lock held for long (a chat turn: minutes, if the model is slow) can be a *lease*: the key lives only
``lease_s`` at a time and is renewed while its holder runs, so a holder that dies without releasing it
(kill -9, a lost machine) blocks the next one for ``lease_s``, not for the whole ``ttl_s``.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_POLL_S = 0.05
log = structlog.get_logger()


def script_sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


async def run_script(
    redis: aioredis.Redis,
    script: str,
    sha: str,
    keys: Sequence[str],
    args: Sequence[str | int | float | bytes],
) -> Any:
    """``script`` by its SHA (EVALSHA), its text sent only when Redis does not have it yet (then EVAL, which
    also caches it): a hot path's script is not sent, nor hashed by Redis, with every call."""
    try:
        return await redis.evalsha(sha, len(keys), *keys, *args)  # type: ignore[misc]
    except NoScriptError:
        return await redis.eval(script, len(keys), *keys, *args)  # type: ignore[misc]


class RedisLock:
    """A held lock; ``release`` is safe to call twice and after the lock expired."""

    def __init__(self, redis: aioredis.Redis, key: str, owner: str) -> None:
        self.redis = redis
        self.key = key
        self.owner = owner

    async def release(self) -> bool:
        """True when this call deleted our lock; False when it had expired (or was released already)."""
        return bool(await self.redis.eval(_RELEASE, 1, self.key, self.owner))

    def release_with(self, pipe: Pipeline) -> None:
        """Queue the release on ``pipe``, to go with its other commands in one round trip."""
        pipe.eval(_RELEASE, 1, self.key, self.owner)

    async def extend(self, ttl_s: float) -> bool:
        """Let our lock live ``ttl_s`` from now; False when it is no longer ours."""
        return bool(await self.redis.eval(_RENEW, 1, self.key, self.owner, max(1, int(ttl_s * 1000))))


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
    lease_s: float | None = None,
) -> AsyncIterator[RedisLock]:
    """Hold the lock for the block (at most ``ttl_s``); raise ``busy()`` if it cannot be had within
    ``wait_s``. With ``lease_s``, a holder that dies frees it after ``lease_s`` (see the module doc)."""
    leased = lease_s is not None and lease_s < ttl_s
    lock = await acquire(redis, key, ttl_s=lease_s if leased and lease_s else ttl_s, wait_s=wait_s)
    if lock is None:
        raise busy()
    keeper = asyncio.create_task(_renew(lock, lease_s, ttl_s)) if leased and lease_s else None
    try:
        yield lock
    finally:
        if keeper is not None:
            keeper.cancel()
        await lock.release()


async def _renew(lock: RedisLock, lease_s: float, ttl_s: float) -> None:
    """Renew the lease three times per ``lease_s`` until cancelled, lost, or ``ttl_s`` after it was taken."""
    deadline = time.monotonic() + ttl_s
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(lease_s / 3, left))
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            if not await lock.extend(min(lease_s, left)):
                return  # expired meanwhile and maybe taken: never take it back
        except Exception as exc:  # Redis away for a moment: the lease still runs, try again
            log.warning("lock_renew_failed", key_kind=lock.key.split(":")[0], error=type(exc).__name__)
