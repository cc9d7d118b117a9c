"""The model-call log on a real Redis: what is kept, for how long, and the figures read from it."""

from __future__ import annotations

import datetime as dt

import redis.asyncio as aioredis

from services.gateway.quality.calls import CallLog, CallRecord

DAY = dt.date(2026, 11, 27)


def call(
    n: int, *, day: dt.date = DAY, model: str = "a", purpose: str = "interview_question", **kw: object
) -> CallRecord:
    fields: dict[str, object] = {
        "id": f"call-{model}-{purpose}-{day}-{n}",
        "request_id": f"req-{n}",
        "intake": "tok-1",
        "purpose": purpose,
        "model": model,
        "prompt_version": "p1",
        "prompt_tokens": 100,
        "completion_tokens": 10,
        "cached_tokens": 80,
        "first_token_s": n / 100,
        "total_s": n / 10,
        "created_at": f"{day.isoformat()}T12:00:00.000Z",
    }
    fields.update(kw)
    return CallRecord(**fields)  # type: ignore[arg-type]


async def test_tokens_per_day_and_exact_percentiles_on_known_records(redis: aioredis.Redis) -> None:
    """100 calls with first tokens 0.01..1.00 s give p50 0.50 and p95 0.95 (nearest rank); tokens and calls
    add up per day, model and purpose; failed calls count as failed and stay out of the latency."""
    log = CallLog(redis, retention_days=30)
    for n in range(1, 101):
        await log.record(call(n))
    await log.record(call(101, status="timeout", first_token_s=None, total_s=60.0))
    await log.record(call(1, day=DAY - dt.timedelta(days=1), model="b", prompt_tokens=7, cached_tokens=None))
    report = await log.report(days=2, today=DAY)
    assert (report.since, report.until) == ("2026-11-26", "2026-11-27")
    rows = {(d.day, d.model, d.purpose): d for d in report.days}
    today = rows[("2026-11-27", "a", "interview_question")]
    assert (today.calls, today.failed) == (101, 1)
    assert (today.prompt_tokens, today.completion_tokens, today.cached_tokens) == (10_100, 1_010, 8_080)
    assert rows[("2026-11-26", "b", "interview_question")].prompt_tokens == 7
    latency = {(r.model, r.purpose): r for r in report.latency}
    a = latency[("a", "interview_question")]
    assert (a.first_token_p50_s, a.first_token_p95_s) == (0.5, 0.95)
    assert (a.total_p50_s, a.total_p95_s) == (5.0, 9.5)  # the 60 s timeout is not in it
    models = {m.model: m for m in report.models}
    assert models["a"].cached_share == 0.8 and models["b"].cached_share == 0.0
    assert not [k async for k in redis.scan_iter("quality:calls:tmp:*")]  # the scratch sets are gone


async def test_a_window_leaves_out_older_days(redis: aioredis.Redis) -> None:
    """A one-day report does not count yesterday's calls, nor their latency."""
    log = CallLog(redis, retention_days=30)
    await log.record(call(1, day=DAY - dt.timedelta(days=1), total_s=50.0))
    await log.record(call(2, total_s=2.0))
    report = await log.report(days=1, today=DAY)
    assert [d.calls for d in report.days] == [1]
    assert report.latency[0].total_p95_s == 2.0


async def test_every_key_expires_and_the_intake_keeps_its_own_calls(redis: aioredis.Redis) -> None:
    """Records follow the retention period; aggregates are kept longer, but nothing is kept for ever."""
    log = CallLog(redis, retention_days=3)
    await log.record(call(1, created_at=_now()))
    keys = [k.decode() async for k in redis.scan_iter("quality:*")]
    ttls = {k: await redis.ttl(k) for k in keys}
    assert ttls and all(t > 0 for t in ttls.values()), ttls
    assert 0 < await redis.ttl("quality:calls") <= 3 * 86400
    assert 0 < await redis.ttl("quality:calls:intake:tok-1") <= 3 * 86400
    assert [c.request_id for c in await log.for_intake("tok-1")] == ["req-1"]
    assert [c.id for c in await log.recent()] == ["call-a-interview_question-2026-11-27-1"]


async def test_old_records_are_trimmed_from_the_stream(redis: aioredis.Redis) -> None:
    """A record older than the retention period leaves the stream when the next one is written."""
    log = CallLog(redis, retention_days=1)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    await redis.xadd("quality:calls", {"r": b"{}"}, id=f"{int(old.timestamp() * 1000)}-0")
    await log.record(call(1, created_at=_now()))
    assert await redis.xlen("quality:calls") == 1


async def test_totals_for_prometheus(redis: aioredis.Redis) -> None:
    """All-time counters by model, purpose and status, and tokens by kind."""
    log = CallLog(redis, retention_days=30)
    await log.record(call(1))
    await log.record(call(2, status="error"))
    totals = await log.totals()
    assert totals.calls == {("a", "interview_question", "ok"): 1, ("a", "interview_question", "error"): 1}
    assert totals.tokens[("a", "interview_question", "prompt")] == 200
    assert totals.tokens[("a", "interview_question", "cached")] == 160


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
