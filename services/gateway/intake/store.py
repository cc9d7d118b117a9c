"""Intakes in Redis: one record per capability token, an index by booking uid, and a per-intake turn lock.

Every write goes through one Lua script that also bumps the intake's version (``intake:ver:{token}``), so
``save(record, expect=version)`` is a compare-and-set: a turn that read the record before a cancellation
or a reschedule cannot write its stale copy over it (it reads again and re-applies, or gives up).
Creating an intake is one script too: the record, its booking index and a *setup pending* mark appear
together or not at all, and the mark stays until the invitation and the scheduled work are queued.
Both scripts publish the token on ``intake:changed`` (``services/gateway/live.py``): the live pages.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import cast

import msgspec
import redis.asyncio as aioredis

from services.gateway import locks
from services.gateway.errors import Conflict
from services.gateway.intake.models import IntakeRecord
from services.gateway.live import CHANNEL

_RECORD = "intake:tok:{}"
_BY_BOOKING = "intake:booking:{}"
_VERSION = "intake:ver:{}"
_BY_STAFF = "intake:staff:{}"  # staff_id -> token, for the staff links
_LOCK = "intake:lock:{}"
_ALL = "intake:all"  # sorted set token -> appointment start (epoch), for staff lists
_SETUP = "intake:setup"  # sorted set token -> creation epoch, while its jobs are not all queued
_UPDATE_ATTEMPTS = 20
# the turn lock is a lease renewed while its turn runs: after a gateway dies mid-turn, the page's resend
# (same client_turn_id) runs the turn once this has passed, not when the turn's whole deadline has
TURN_LEASE_S = 15.0
_decoder = msgspec.json.Decoder(IntakeRecord)

# KEYS record, by_booking, all, version, by_staff; ARGV json, token, ttl, start, expected version ('' = any)
_SAVE = """
if ARGV[5] ~= '' and (redis.call('GET', KEYS[4]) or '0') ~= ARGV[5] then return -1 end
local version = redis.call('INCR', KEYS[4])
redis.call('EXPIRE', KEYS[4], ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
redis.call('SET', KEYS[5], ARGV[2], 'EX', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
redis.call('PUBLISH', 'intake:changed', ARGV[2])
return version
"""
# Creating an intake, as a Lua function for the scripts that create one: KEYS record, by_booking, all,
# version, setup, by_staff and ARGV json, token, ttl, start, now come first. ``create()`` returns the token
# of the intake the booking has already (then it wrote nothing), else false (created, *setup pending*).
CREATE_LUA = """
local function create()
  local existing = redis.call('GET', KEYS[2])
  if existing then return existing end
  redis.call('SET', KEYS[4], 1, 'EX', ARGV[3])
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
  redis.call('SET', KEYS[6], ARGV[2], 'EX', ARGV[3])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
  redis.call('ZADD', KEYS[5], ARGV[5], ARGV[2])
  redis.call('PUBLISH', 'intake:changed', ARGV[2])
  return false
end
"""
# Returns the token that owns the booking.
_CREATE = CREATE_LUA + "return create() or ARGV[2]"


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
        self._save = redis.register_script(_SAVE)
        self._create = redis.register_script(_CREATE)

    async def get(self, token: str) -> IntakeRecord | None:
        record, _ = await self.get_versioned(token)
        return record

    async def get_versioned(self, token: str) -> tuple[IntakeRecord | None, int]:
        """The record and the version to pass to ``save(..., expect=)``, read in one round trip."""
        if not token or len(token) > 64:
            return None, 0
        for _ in range(3):
            raw, version = await self._redis.mget([_RECORD.format(token), _VERSION.format(token)])
            record = _decoder.decode(raw) if raw else None
            if record is None or b'"staff_id"' in cast(bytes, raw):  # decode_responses=False: bytes
                return record, int(version or 0)
            # stored before intakes had a staff id: the decoder just drew one; keep it (and its index), or
            # every read would draw another and the staff link would never resolve
            await self.save(record, expect=int(version or 0))
        return record, int(version or 0)

    async def token_for_booking(self, booking_uid: str) -> str | None:
        raw = await self._redis.get(_BY_BOOKING.format(booking_uid))
        return _text(raw) if raw else None

    async def token_for_staff(self, staff_id: str) -> str | None:
        """The token behind a staff link's id (None for an unknown or expired one)."""
        if not staff_id or len(staff_id) > 64:
            return None
        raw = await self._redis.get(_BY_STAFF.format(staff_id))
        return _text(raw) if raw else None

    async def get_by_booking(self, booking_uid: str) -> IntakeRecord | None:
        token = await self.token_for_booking(booking_uid)
        return await self.get(token) if token else None

    async def save(self, record: IntakeRecord, *, expect: int | None = None) -> bool:
        """Write the record and its booking index with a TTL of meeting end plus retention.

        With ``expect`` the write happens only if nobody wrote since that version was read (False if
        someone did); without it the write is unconditional.
        """
        args = self._script_args(record)
        version = await self._save(
            keys=[*self._keys(record), _BY_STAFF.format(record.staff_id)],
            args=[*args, "" if expect is None else str(expect)],
        )
        return int(version) > 0

    def _script_args(self, record: IntakeRecord) -> list[bytes | str | int | float]:
        """What the save and create scripts take: the record (stamped now), its token, TTL and start."""
        record.updated_at = now_iso()
        start = parse_time(record.booking.start_time).timestamp()
        return [msgspec.json.encode(record), record.token, self._ttl_seconds(record), start]

    async def update(self, token: str, apply: Callable[[IntakeRecord], bool | None]) -> IntakeRecord | None:
        """Read, change with ``apply`` and write back, again on the fresh record if someone wrote meanwhile.

        ``apply`` returns False to leave the record as it is (e.g. it was cancelled). Returns the record
        as stored, or None if there is none.
        """
        for _ in range(_UPDATE_ATTEMPTS):
            record, version = await self.get_versioned(token)
            if record is None or apply(record) is False:
                return record
            if await self.save(record, expect=version):
                return record
        raise Conflict("This chat is changing too fast right now. Please try again.")

    async def create(self, record: IntakeRecord) -> tuple[str, bool]:
        """Store a new intake unless its booking already has one: (token of the booking's intake, created).

        The new intake is marked *setup pending* in the same step; ``setup_done`` clears the mark once its
        jobs are queued, and ``pending_setups`` finds intakes whose setup was interrupted.
        """
        keys, args = self.creation(record)
        token = _text(cast(bytes, await self._create(keys=keys, args=args)))
        return token, token == record.token

    def creation(self, record: IntakeRecord) -> tuple[list[str], list[bytes | str | int | float]]:
        """The KEYS and ARGV that ``CREATE_LUA`` takes to create ``record``."""
        args = [*self._script_args(record), time.time()]
        return [*self._keys(record), _SETUP, _BY_STAFF.format(record.staff_id)], args

    async def setup_pending(self, token: str) -> bool:
        return await self._redis.zscore(_SETUP, token) is not None

    async def setup_done(self, token: str) -> None:
        await self._redis.zrem(_SETUP, token)

    async def pending_setups(self, older_than_s: float, limit: int = 50) -> list[str]:
        """Intakes whose setup started over ``older_than_s`` ago and never finished (a crash mid-way)."""
        raw = await self._redis.zrangebyscore(_SETUP, "-inf", time.time() - older_than_s, 0, limit)
        return [_text(t) for t in raw if isinstance(t, (bytes, str))]

    async def move_booking(self, record: IntakeRecord, old_uid: str, *, expect: int | None = None) -> bool:
        """After a reschedule: the old booking uid no longer resolves; the record keeps its token."""
        if not await self.save(record, expect=expect):
            return False
        if old_uid != record.booking.uid:
            await self._redis.delete(_BY_BOOKING.format(old_uid))
        return True

    async def delete(self, token: str) -> None:
        record = await self.get(token)
        keys = [_RECORD.format(token), _VERSION.format(token)]
        if record:
            keys += [_BY_BOOKING.format(record.booking.uid), _BY_STAFF.format(record.staff_id)]
        await self._redis.delete(*keys)
        await self._redis.zrem(_ALL, token)
        await self._redis.publish(CHANNEL, token)  # open staff pages drop it

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

        def busy() -> Conflict:
            return Conflict("Another reply for this chat is already being written. Wait for it, then retry.")

        key = _LOCK.format(token)
        async with locks.hold(self._redis, key, ttl_s=ttl_s, wait_s=wait_s, busy=busy, lease_s=TURN_LEASE_S):
            yield

    async def try_turn_lock(self, token: str, wait_s: float, ttl_s: int = 30) -> locks.RedisLock | None:
        """The turn lock for background work, or None if a turn still holds it after ``wait_s``."""
        return await locks.acquire(self._redis, _LOCK.format(token), ttl_s=ttl_s, wait_s=wait_s)

    def _keys(self, record: IntakeRecord) -> list[str]:
        token = record.token
        return [_RECORD.format(token), _BY_BOOKING.format(record.booking.uid), _ALL, _VERSION.format(token)]

    def _ttl_seconds(self, record: IntakeRecord) -> int:
        end = parse_time(record.booking.end_time or record.booking.start_time)
        expires = end + self._retention + dt.timedelta(days=1)
        return max(3600, int((expires - dt.datetime.now(dt.UTC)).total_seconds()))
