"""Intakes in Redis: one record per capability token, an index by booking uid, and a per-intake turn lock."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import redis.asyncio as aioredis

from services.gateway.errors import Conflict
from services.gateway.intake.models import IntakeRecord

_RECORD = "intake:tok:{}"
_BY_BOOKING = "intake:booking:{}"
_LOCK = "intake:lock:{}"
_ALL = "intake:all"  # sorted set token -> appointment start (epoch), for staff lists and the scheduler
_decoder = msgspec.json.Decoder(IntakeRecord)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def new_token() -> str:
    """An unguessable capability token (192 bits, URL-safe)."""
    return secrets.token_urlsafe(24)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


class IntakeStore:
    """Redis adapter for intake records. Every key expires: retention is enforced by Redis itself."""

    def __init__(self, redis: aioredis.Redis, retention_days: int) -> None:
        self._redis = redis
        self._retention = dt.timedelta(days=retention_days)

    async def get(self, token: str) -> IntakeRecord | None:
        if not token or len(token) > 64:
            return None
        raw = await self._redis.get(_RECORD.format(token))
        return _decoder.decode(raw) if raw else None

    async def token_for_booking(self, booking_uid: str) -> str | None:
        raw = await self._redis.get(_BY_BOOKING.format(booking_uid))
        return _text(raw) if raw else None

    async def get_by_booking(self, booking_uid: str) -> IntakeRecord | None:
        token = await self.token_for_booking(booking_uid)
        return await self.get(token) if token else None

    async def save(self, record: IntakeRecord) -> None:
        """Write the record and its booking index with a TTL of meeting end plus retention."""
        record.updated_at = now_iso()
        ttl = self._ttl_seconds(record)
        start = parse_time(record.booking.start_time).timestamp()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(_RECORD.format(record.token), msgspec.json.encode(record), ex=ttl)
            pipe.set(_BY_BOOKING.format(record.booking.uid), record.token, ex=ttl)
            pipe.zadd(_ALL, {record.token: start})
            await pipe.execute()

    async def move_booking(self, record: IntakeRecord, old_uid: str) -> None:
        """After a reschedule: the old booking uid no longer resolves; the record keeps its token."""
        await self._redis.delete(_BY_BOOKING.format(old_uid))
        await self.save(record)

    async def delete(self, token: str) -> None:
        record = await self.get(token)
        keys = [_RECORD.format(token)]
        if record:
            keys.append(_BY_BOOKING.format(record.booking.uid))
        await self._redis.delete(*keys)
        await self._redis.zrem(_ALL, token)

    async def tokens(self, limit: int = 200) -> list[str]:
        """Most recent appointments first; tokens whose record expired are pruned on the way."""
        raw = await self._redis.zrevrange(_ALL, 0, limit - 1)
        tokens = [_text(t) for t in raw if isinstance(t, (bytes, str))]
        if tokens:
            exists = await self._redis.mget([_RECORD.format(t) for t in tokens])
            gone = [t for t, value in zip(tokens, exists, strict=True) if value is None]
            if gone:
                await self._redis.zrem(_ALL, *gone)
            tokens = [t for t, value in zip(tokens, exists, strict=True) if value is not None]
        return tokens

    @asynccontextmanager
    async def turn_lock(self, token: str, ttl_s: int = 180, wait_s: float = 0.0) -> AsyncIterator[None]:
        """One turn at a time per intake: a second tab gets a 409 instead of a duplicated turn.

        ``wait_s`` > 0 waits that long for a short holder (the worker preparing the interview) first.
        """
        owner = secrets.token_hex(8)
        deadline = time.monotonic() + wait_s
        while not await self._redis.set(_LOCK.format(token), owner, nx=True, ex=ttl_s):
            if time.monotonic() >= deadline:
                raise Conflict(
                    "Another reply for this chat is already being written. Wait for it, then retry."
                )
            await asyncio.sleep(0.05)
        try:
            yield
        finally:
            await self._release(token, owner)

    async def _release(self, token: str, owner: str) -> None:
        key = _LOCK.format(token)
        if _text(await self._redis.get(key) or b"") == owner:
            await self._redis.delete(key)

    def _ttl_seconds(self, record: IntakeRecord) -> int:
        end = parse_time(record.booking.end_time or record.booking.start_time)
        expires = end + self._retention + dt.timedelta(days=1)
        return max(3600, int((expires - dt.datetime.now(dt.UTC)).total_seconds()))
