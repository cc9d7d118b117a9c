"""The model-call log: one record for every request to a model, and the figures staff and Prometheus read.

Redis keys (every one expires or is trimmed):

- ``quality:calls`` — a stream of every call (``CallRecord`` as JSON), trimmed to the retention period by
  ``MINID`` on every write and expiring with it: the records name the intake (its token), so they are
  student data and follow ``INTAKE_RETENTION_DAYS``. No prompt or reply text is kept, only counts.
- ``quality:calls:intake:<token>`` — the intake's own calls (the last ``INTAKE_CALLS_KEPT``), same expiry.
- ``quality:calls:day:<YYYY-MM-DD>`` — a hash of counters per model and purpose (calls, statuses, prompt,
  completion and cached tokens): no personal data, kept ``AGGREGATE_KEEP_DAYS``.
- ``quality:calls:lat:<day>:<model>|<purpose>:<first|total>`` — sorted sets of seconds by call id, so a
  p95 over any window is exact (``ZUNIONSTORE`` of the days, then one rank look-up); kept
  ``LATENCY_KEEP_DAYS``.
- ``quality:calls:course:<slug>:day:<day>`` and ``quality:calls:course:<slug>:lat:<day>:...`` — the same
  counters and latency sets again for the calls of one course's intakes, so a staff member's read-out holds
  only their own courses (calls outside an intake, such as readiness probes, are in the global keys only).
- ``quality:calls:totals`` — all-time counters for the Prometheus export (same on every gateway and the
  worker, whichever process made the call).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import math
import secrets
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec
import redis.asyncio as aioredis
import structlog

from services.gateway.intake import prompt as _prompt_module
from services.gateway.intake import wording as _wording_module
from services.inference.probe import PROBE_MESSAGES

CallStatus = Literal["ok", "error", "timeout", "abandoned", "rejected"]
STATUSES: tuple[CallStatus, ...] = ("ok", "error", "timeout", "abandoned", "rejected")
STREAM = "quality:calls"
_BY_INTAKE = "quality:calls:intake:{}"
_DAY = "quality:calls:day:{}"
_LATENCY = "quality:calls:lat:{}:{}:{}"  # day, "<model>|<purpose>", first | total
_COURSE = "quality:calls:course:{}:"  # the prefix of one course's day hashes and latency sets
TOTALS = "quality:calls:totals"
INTAKE_CALLS_KEPT = 200
AGGREGATE_KEEP_DAYS = 400
LATENCY_KEEP_DAYS = 35
_SEP = "|"
log = structlog.get_logger()


def _digest(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:12]


# The prompt version: a hash of the code that writes the prompts (the system prompt, the steers, the
# summary request), so a call record says which prompts it was made with; the probe's is its message.
PROMPT_VERSION = _digest(
    Path(_prompt_module.__file__).read_bytes(), Path(_wording_module.__file__).read_bytes()
)
PROBE_PROMPT_VERSION = _digest(msgspec.json.encode(PROBE_MESSAGES))


class CallRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One model request as the log keeps it: counts and timings, never the prompt or the reply."""

    id: str  # the call's own id
    request_id: str  # the HTTP request or job it served (``X-Request-ID``, also sent to inference)
    intake: str  # the intake's token; "" for a probe or a call outside an intake
    course: str = ""  # the intake's course slug; "" outside an intake (and in records kept before)
    purpose: str
    model: str  # the model id (``INTAKE_MODEL_ID`` / ``INTAKE_MODEL_B_ID``)
    prompt_version: str
    # None: the server did not say (it reports usage at the end of a stream: one the interviewer closed at
    # its question mark has none)
    prompt_tokens: int | None = None
    completion_tokens: int = 0  # the server's count, else the pieces streamed
    cached_tokens: int | None = None
    first_token_s: float | None = None
    total_s: float = 0.0
    status: CallStatus = "ok"
    created_at: str  # RFC 3339, UTC


class DayFigures(msgspec.Struct, frozen=True, kw_only=True):
    """One day's calls of one model for one purpose."""

    day: str
    model: str
    purpose: str
    calls: int
    failed: int  # any status but ok
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int


class LatencyFigures(msgspec.Struct, frozen=True, kw_only=True):
    """Latency of one model's calls for one purpose over the window (nearest-rank percentiles)."""

    model: str
    purpose: str
    calls: int
    first_token_p50_s: float | None
    first_token_p95_s: float | None
    total_p50_s: float | None
    total_p95_s: float | None


class ModelCalls(msgspec.Struct, frozen=True, kw_only=True):
    """One model's calls over the window, for the side-by-side comparison."""

    model: str
    calls: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cached_share: float | None  # cached / prompt tokens, when any prompt tokens were reported


class CallsReport(msgspec.Struct, frozen=True, kw_only=True):
    since: str  # first day of the window (UTC)
    until: str  # last day of the window (UTC)
    days: list[DayFigures]
    latency: list[LatencyFigures]
    models: list[ModelCalls]


class Totals(msgspec.Struct, frozen=True, kw_only=True):
    """All-time counters for Prometheus, keyed (model, purpose, status) and (model, purpose, kind)."""

    calls: dict[tuple[str, str, str], int]
    tokens: dict[tuple[str, str, str], int]


def new_call_id() -> str:
    return secrets.token_hex(8)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _clean(label: str) -> str:
    """Model ids and purposes go into keys and field names: no separator, bounded length."""
    return label.replace(_SEP, "/").replace(":", "/")[:80] or "unknown"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class CallLog:
    """Writes and reads the model-call log. Writes never fail a model call: ``spawn`` runs them in the
    background (``drain`` waits for them, at shutdown and in tests) and a failed write is logged."""

    def __init__(self, redis: aioredis.Redis, retention_days: int) -> None:
        self._redis = redis
        self._keep_s = max(1, retention_days) * 24 * 3600
        self._pending: set[asyncio.Task[None]] = set()

    def spawn(self, call: CallRecord) -> None:
        task = asyncio.get_running_loop().create_task(self._record_quietly(call))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait for the records still being written."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def _record_quietly(self, call: CallRecord) -> None:
        try:
            await self.record(call)
        except Exception as exc:  # the log is bookkeeping: a Redis hiccup must not surface anywhere
            log.warning("model_call_not_recorded", purpose=call.purpose, error=type(exc).__name__)

    async def record(self, call: CallRecord) -> None:
        """The record, its intake's list, the day's counters, the latency sets and the totals, in one trip."""
        created = dt.datetime.fromisoformat(call.created_at.replace("Z", "+00:00"))
        day = created.date().isoformat()
        model, purpose = _clean(call.model), _clean(call.purpose)
        group = f"{model}{_SEP}{purpose}"
        body = msgspec.json.encode(call)
        cutoff_ms = int((created.timestamp() - self._keep_s) * 1000)
        aggregate_s, latency_s = AGGREGATE_KEEP_DAYS * 86400, LATENCY_KEEP_DAYS * 86400
        scopes = ["", _course_prefix(call.course)] if call.course else [""]
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(STREAM, {"r": body}, minid=max(0, cutoff_ms), approximate=False)
            pipe.expire(STREAM, self._keep_s)
            if call.intake:
                key = _BY_INTAKE.format(call.intake)
                pipe.rpush(key, body)
                pipe.ltrim(key, -INTAKE_CALLS_KEPT, -1)
                pipe.expire(key, self._keep_s)
            counts = {
                "calls": 1,
                f"status:{call.status}": 1,
                "prompt_tokens": call.prompt_tokens or 0,
                "completion_tokens": call.completion_tokens,
                "cached_tokens": call.cached_tokens or 0,
            }
            for field, amount in counts.items():
                pipe.hincrby(TOTALS, f"{group}{_SEP}{field}", amount)
            pipe.expire(TOTALS, aggregate_s)
            timings = {"total": call.total_s, "first": call.first_token_s}
            for scope in scopes:
                day_key = scope + _DAY.format(day)
                for field, amount in counts.items():
                    pipe.hincrby(day_key, f"{group}{_SEP}{field}", amount)
                pipe.expire(day_key, aggregate_s)
                for kind, seconds in timings.items():
                    if seconds is not None and call.status == "ok":
                        latency_key = scope + _LATENCY.format(day, group, kind)
                        pipe.zadd(latency_key, {call.id: seconds})
                        pipe.expire(latency_key, latency_s)
            await pipe.execute()

    # --- reading ------------------------------------------------------------------------------------

    async def for_intake(self, token: str) -> list[CallRecord]:
        """The intake's calls, oldest first (by when they ended: records are written concurrently)."""
        raw = await self._redis.lrange(_BY_INTAKE.format(token), 0, -1)
        return sorted((msgspec.json.decode(r, type=CallRecord) for r in raw), key=lambda c: c.created_at)

    async def recent(self, limit: int = 50) -> list[CallRecord]:
        """The latest calls, newest first."""
        entries: list[Any] = await self._redis.xrevrange(STREAM, count=limit) or []
        return [msgspec.json.decode(fields[b"r"], type=CallRecord) for _, fields in entries]

    async def report(
        self, days: int, today: dt.date | None = None, courses: Sequence[str] | None = None
    ) -> CallsReport:
        """Tokens and calls per day, latency percentiles and per-model totals over the last ``days`` days:
        of every call (``courses`` None), or only of the intakes of ``courses`` (slugs) added together."""
        last = today or now_utc().date()
        window = [(last - dt.timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]
        scopes = [""] if courses is None else [_course_prefix(c) for c in sorted(set(courses))]
        async with self._redis.pipeline(transaction=False) as pipe:
            for day in window:
                for scope in scopes:
                    pipe.hgetall(scope + _DAY.format(day))
            hashes = iter(await pipe.execute())
        per_day = [row for day in window for row in _day_rows(day, [next(hashes) for _ in scopes])]
        groups = sorted({(r.model, r.purpose) for r in per_day})
        latency = [await self._latency(model, purpose, window, per_day, scopes) for model, purpose in groups]
        return CallsReport(
            since=window[0], until=window[-1], days=per_day, latency=latency, models=_per_model(per_day)
        )

    async def _latency(
        self,
        model: str,
        purpose: str,
        window: Sequence[str],
        per_day: Sequence[DayFigures],
        scopes: Sequence[str],
    ) -> LatencyFigures:
        group = f"{model}{_SEP}{purpose}"
        first = await self._percentiles(
            [s + _LATENCY.format(d, group, "first") for d in window for s in scopes]
        )
        total = await self._percentiles(
            [s + _LATENCY.format(d, group, "total") for d in window for s in scopes]
        )
        calls = sum(r.calls for r in per_day if (r.model, r.purpose) == (model, purpose))
        return LatencyFigures(
            model=model,
            purpose=purpose,
            calls=calls,
            first_token_p50_s=first[0],
            first_token_p95_s=first[1],
            total_p50_s=total[0],
            total_p95_s=total[1],
        )

    async def _percentiles(self, keys: Sequence[str]) -> tuple[float | None, float | None]:
        """(p50, p95) by nearest rank over the union of the day sets, computed in Redis."""
        scratch = f"quality:calls:tmp:{secrets.token_hex(6)}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zunionstore(scratch, list(keys))
            pipe.expire(scratch, 60)
            count, _ = await pipe.execute()
        try:
            return (
                await _rank(self._redis, scratch, count, 0.50),
                await _rank(self._redis, scratch, count, 0.95),
            )
        finally:
            await self._redis.delete(scratch)

    async def totals(self) -> Totals:
        raw = await self._redis.hgetall(TOTALS)
        calls: dict[tuple[str, str, str], int] = {}
        tokens: dict[tuple[str, str, str], int] = {}
        for field, value in raw.items():
            model, purpose, name = _text(field).split(_SEP, 2)
            if name.startswith("status:"):
                calls[(model, purpose, name.removeprefix("status:"))] = int(value)
            elif name.endswith("_tokens"):
                tokens[(model, purpose, name.removesuffix("_tokens"))] = int(value)
        return Totals(calls=calls, tokens=tokens)


async def _rank(redis: aioredis.Redis, key: str, count: int, share: float) -> float | None:
    if not count:
        return None
    found = await redis.zrange(
        key, max(0, math.ceil(share * count) - 1), max(0, math.ceil(share * count) - 1), withscores=True
    )
    return round(float(found[0][1]), 4) if found else None


def _course_prefix(slug: str) -> str:
    return _COURSE.format(_clean(slug))


def _day_rows(day: str, hashes: Sequence[dict[Any, Any]]) -> list[DayFigures]:
    """One day's rows from its counter hashes (one per course in scope), added together."""
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for raw in hashes:
        for field, value in raw.items():
            model, purpose, name = _text(field).split(_SEP, 2)
            counts[(model, purpose)][name] += int(value)
    return [
        DayFigures(
            day=day,
            model=model,
            purpose=purpose,
            calls=c.get("calls", 0),
            failed=sum(v for k, v in c.items() if k.startswith("status:") and k != "status:ok"),
            prompt_tokens=c.get("prompt_tokens", 0),
            completion_tokens=c.get("completion_tokens", 0),
            cached_tokens=c.get("cached_tokens", 0),
        )
        for (model, purpose), c in sorted(counts.items())
    ]


def _per_model(rows: Sequence[DayFigures]) -> list[ModelCalls]:
    sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        for name in ("calls", "failed", "prompt_tokens", "completion_tokens", "cached_tokens"):
            sums[row.model][name] += getattr(row, name)
    return [
        ModelCalls(
            model=model,
            calls=s["calls"],
            failed=s["failed"],
            prompt_tokens=s["prompt_tokens"],
            completion_tokens=s["completion_tokens"],
            cached_tokens=s["cached_tokens"],
            cached_share=round(s["cached_tokens"] / s["prompt_tokens"], 3) if s["prompt_tokens"] else None,
        )
        for model, s in sorted(sums.items())
    ]
