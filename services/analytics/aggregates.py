"""The Redis side of the aggregates: one Lua script applies an event's operations exactly once.

The script first adds the event id to the day's *seen* set (``analytics:seen:<day of the event>``); an id
seen before makes it a no-op, so a replayed or re-claimed entry is harmless. Everything an event does
happens inside that one script, so two consumers folding at once never count anything twice.

Key lifetimes: ``analytics:agg:*`` (the figures) are kept; the per-booking and per-intake state
(``analytics:bk:*``, ``analytics:in:*``, ``analytics:stuck:*``) and the seen sets expire ``state_ttl_s``
after their last change, which is longer than the stream keeps events, so a replay of the stream never
meets an event whose state has gone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis

from services.analytics.events import Event
from services.analytics.fold import agg_key, ops_for

SEEN = "analytics:seen:{}"
STATE_PATTERNS = (
    "analytics:agg:*",
    "analytics:bk:*",
    "analytics:in:*",
    "analytics:stuck:*",
    "analytics:seen:*",
)

APPLY = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
local ttl = tonumber(ARGV[2])
redis.call('EXPIRE', KEYS[1], ttl)
local function bump(agg, fields, n)
  for _, f in ipairs(fields) do redis.call('HINCRBY', agg, f, n) end
end
local function reconcile(bk)
  local v = redis.call('HMGET', bk, 'h', 'c', 'w', 'ns', 'nsc')
  if not v[1] or not v[2] or not v[3] then return end
  local want = (v[4] == '1') and '1' or '0'
  local have = (v[5] == '1') and '1' or '0'
  if want ~= have then
    local n = (want == '1') and 1 or -1
    bump('analytics:agg:' .. v[2] .. ':' .. v[3], {'no_shows', 'host:' .. v[1] .. ':no_shows'}, n)
    redis.call('HSET', bk, 'nsc', want)
  end
end
local function newer(at, stamp, value, current)
  return at > stamp or (at == stamp and value > (current or ''))
end
for _, op in ipairs(cjson.decode(ARGV[3])) do
  local kind = op[1]
  if kind == 'incr' then
    bump(op[2], op[3], 1)
  elseif kind == 'hset' then
    redis.call('HSET', op[2], op[3], op[4])
  elseif kind == 'once' then
    if redis.call('HSETNX', op[2], op[3], '1') == 1 then bump(op[4], op[5], 1) end
    redis.call('EXPIRE', op[2], ttl)
  elseif kind == 'chain' then
    local counted = false
    for _, k in ipairs(op[2]) do
      if redis.call('HEXISTS', k, 'counted') == 1 then counted = true end
    end
    if not counted then bump(op[3], op[4], 1) end
    for _, k in ipairs(op[2]) do
      redis.call('HSET', k, 'counted', '1')
      redis.call('EXPIRE', k, ttl)
    end
  elseif kind == 'booking' then
    redis.call('HSETNX', op[2], 'h', op[3])
    redis.call('HSETNX', op[2], 'c', op[4])
    redis.call('HSETNX', op[2], 'w', op[5])
    redis.call('EXPIRE', op[2], ttl)
    reconcile(op[2])
  elseif kind == 'noshow' then
    local cur = redis.call('HMGET', op[2], 'ns', 'nsa')
    if newer(tonumber(op[4]), tonumber(cur[2] or '-1'), op[3], cur[1]) then
      redis.call('HSET', op[2], 'ns', op[3], 'nsa', op[4])
    end
    redis.call('EXPIRE', op[2], ttl)
    reconcile(op[2])
  elseif kind == 'latest' then
    local cur = redis.call('HMGET', op[2], op[3], op[3] .. '@')
    if newer(tonumber(op[5]), tonumber(cur[2] or '-1'), op[4], cur[1]) then
      if cur[1] then redis.call('HINCRBY', op[6], op[7] .. cur[1], -1) end
      redis.call('HINCRBY', op[6], op[7] .. op[4], 1)
      redis.call('HSET', op[2], op[3], op[4], op[3] .. '@', op[5])
    end
    redis.call('EXPIRE', op[2], ttl)
  end
end
return 1
"""


def seen_key(event: Event) -> str:
    return SEEN.format(dt.datetime.fromtimestamp(max(0.0, event.at), dt.UTC).date().isoformat())


class Aggregates:
    """Applies events and reads the per-course, per-week hashes back."""

    def __init__(self, redis: aioredis.Redis, state_ttl_s: int) -> None:
        self._redis = redis
        self._ttl = state_ttl_s
        self._script = redis.register_script(APPLY)

    async def apply(self, events: Sequence[Event]) -> int:
        """Apply events in one round trip; returns how many were new (not seen before)."""
        if not events:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for event in events:
                ops = msgspec.json.encode(ops_for(event))
                await self._script(keys=[seen_key(event)], args=[event.id, self._ttl, ops], client=pipe)
            results = await pipe.execute()
        return sum(1 for r in results if r == 1)

    async def week(self, course: str, week: str) -> dict[str, int | str]:
        """One course-week hash: counts as ints, labels (``label:*``) as text."""
        raw = await self._redis.hgetall(agg_key(course, week))
        return _typed(raw)

    async def weeks(self, course: str, weeks: Sequence[str]) -> dict[str, dict[str, int | str]]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for week in weeks:
                pipe.hgetall(agg_key(course, week))
            rows = await pipe.execute()
        return {week: _typed(raw) for week, raw in zip(weeks, rows, strict=True)}

    async def clear(self) -> int:
        """Delete every aggregate and all fold state (before a rebuild from the stream)."""
        deleted = 0
        for pattern in STATE_PATTERNS:
            batch: list[bytes] = []
            async for key in self._redis.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += await self._redis.delete(*batch)
                    batch = []
            if batch:
                deleted += await self._redis.delete(*batch)
        return deleted


def _typed(raw: Mapping[Any, Any]) -> dict[str, int | str]:
    out: dict[str, int | str] = {}
    for key, value in raw.items():
        name = key.decode()
        out[name] = value.decode() if name.startswith("label:") else int(value)
    return out
