"""The Redis side of the aggregates: one Lua script applies an event's operations exactly once.

The script takes a batch of events; for each it first adds the event id to the day's *seen* set
(``analytics:seen:<day of the event>``): an id seen before is skipped, so a replayed or re-claimed entry is
harmless. Everything an event does happens inside one script call (atomic in Redis), so two consumers
folding at once never count anything twice.

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
SCRIPT_BATCH = 100  # events per script call: few round trips, and Redis is never blocked for long
STATE_PATTERNS = (
    "analytics:agg:*",
    "analytics:bk:*",
    "analytics:in:*",
    "analytics:stuck:*",
    "analytics:seen:*",
)

APPLY = """
local ttl = tonumber(ARGV[1])
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
local function apply(op)
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
local new = 0
for i = 1, #KEYS do
  if redis.call('SADD', KEYS[i], ARGV[2 * i]) == 1 then
    redis.call('EXPIRE', KEYS[i], ttl)
    for _, op in ipairs(cjson.decode(ARGV[2 * i + 1])) do apply(op) end
    new = new + 1
  end
end
return new
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
        """Apply events, ``SCRIPT_BATCH`` per script call; returns how many were new (not seen before)."""
        new = 0
        for start in range(0, len(events), SCRIPT_BATCH):
            batch = events[start : start + SCRIPT_BATCH]
            args: list[str | bytes | int] = [self._ttl]
            for event in batch:
                args += [event.id, msgspec.json.encode(ops_for(event))]
            new += int(await self._script(keys=[seen_key(e) for e in batch], args=args))
        return new

    async def week(self, course: str, week: str) -> dict[str, int | str]:
        """One course-week hash: counts as ints, labels (``label:*``) and anything unreadable as text (which
        no figure counts)."""
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
        name, text = key.decode(), value.decode(errors="replace")
        out[name] = (
            int(text)
            if not name.startswith("label:") and text.lstrip("-").isdecimal() and text.isascii()
            else text
        )
    return out
