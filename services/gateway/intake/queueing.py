"""The line for a generation slot (``ports.GenerationSlots``) in Redis, shared by every gateway.

On two cores the model server answers a handful of students at a time; more at once only makes every
reply slower. So a turn takes a numbered ticket (``INCR``) and waits until it is among the first
``limit - held`` tickets in line, then holds a slot for the generation. One Lua script per poll keeps it
atomic across gateways: it drops holders whose lease ran out (a gateway that died mid-reply) and
waiters that stopped polling (their gateway died), so nobody waits behind a ghost. Served in ticket
order: the place in line a student sees only ever goes down.

Keys (all under ``intake:gen:``, each with a TTL refreshed on use): ``seq`` (ticket counter),
``line`` (waiting tickets by number), ``seen`` (waiting tickets by last poll), ``held`` (holders by lease
end). When Redis is unreachable the line is skipped (the chat must not stop for it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
import redis.exceptions
import structlog

from services.gateway.ports import LineTimeout

log = structlog.get_logger()

PREFIX = "intake:gen:"
KEY_TTL_S = 3600

# KEYS: line, seen, held. ARGV: ticket, now_ms, limit, stale_ms, lease_ms, ttl_s.
# Returns 0 when the ticket holds a slot, else its place in line (1 = next to be served).
_TAKE = """
local line, seen, held = KEYS[1], KEYS[2], KEYS[3]
local ticket, now = ARGV[1], tonumber(ARGV[2])
local limit, stale, lease, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', held, '-inf', now)
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', seen, '-inf', now - stale)) do
  redis.call('ZREM', line, gone)
  redis.call('ZREM', seen, gone)
end
for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ttl) end
if redis.call('ZSCORE', held, ticket) then return 0 end
redis.call('ZADD', line, 'NX', tonumber(ticket), ticket)
redis.call('ZADD', seen, now, ticket)
local rank = redis.call('ZRANK', line, ticket)
local free = limit - redis.call('ZCARD', held)
if rank < free then
  redis.call('ZREM', line, ticket)
  redis.call('ZREM', seen, ticket)
  redis.call('ZADD', held, now + lease, ticket)
  return 0
end
return rank - math.max(free, 0) + 1
"""


class GenerationLine:
    """``GenerationSlots`` over Redis: at most ``limit`` generations at once, first come first served.

    ``max_wait_s``: a turn that waited this long gets ``LineTimeout`` from its positions (the
    interviewer then answers with the policy's own question). ``lease_s``: how long a holder may keep
    its slot without giving it back (a dead gateway's slot frees itself after that).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        limit: int,
        max_wait_s: float,
        lease_s: float,
        poll_s: float = 0.2,
        stale_s: float = 10.0,
    ) -> None:
        self.redis = redis
        self.limit = limit
        self.max_wait_s = max_wait_s
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.stale_s = stale_s
        self._keys = [f"{PREFIX}line", f"{PREFIX}seen", f"{PREFIX}held"]

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[AsyncIterator[int]]:
        """Take a ticket; iterate the positions to wait for the slot; leaving gives it back."""
        ticket = await self._ticket()
        try:
            yield self._wait(ticket)
        finally:
            if ticket is not None:
                await asyncio.shield(self._leave(ticket))

    async def waiting(self) -> int:
        """How many tickets are in line right now (for metrics and tests)."""
        return int(await self.redis.zcard(self._keys[0]))

    async def _ticket(self) -> str | None:
        try:
            number = await self.redis.incr(f"{PREFIX}seq")
            await self.redis.expire(f"{PREFIX}seq", KEY_TTL_S)
            return str(number)
        except redis.exceptions.RedisError as exc:
            log.warning("generation_line_unavailable", error=type(exc).__name__)
            return None

    async def _wait(self, ticket: str | None) -> AsyncIterator[int]:
        if ticket is None:
            return  # no Redis: no line
        deadline = time.monotonic() + self.max_wait_s
        shown = 0
        while position := await self._take(ticket):
            if position != shown:
                shown = position
                yield position
            if time.monotonic() > deadline:
                log.warning("generation_line_timeout", position=position)
                raise LineTimeout("waited too long for a generation slot")
            await asyncio.sleep(self.poll_s)

    async def _take(self, ticket: str) -> int:
        now_ms = int(time.time() * 1000)
        args: list[str | int] = [
            ticket,
            now_ms,
            self.limit,
            int(self.stale_s * 1000),
            int(self.lease_s * 1000),
            KEY_TTL_S,
        ]
        try:
            return int(await self.redis.eval(_TAKE, 3, *self._keys, *args))  # type: ignore[misc]
        except redis.exceptions.RedisError as exc:
            log.warning("generation_line_unavailable", error=type(exc).__name__)
            return 0

    async def _leave(self, ticket: str) -> None:
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                for key in self._keys:
                    pipe.zrem(key, ticket)
                await pipe.execute()
        except redis.exceptions.RedisError as exc:
            log.warning("generation_line_unavailable", error=type(exc).__name__)
