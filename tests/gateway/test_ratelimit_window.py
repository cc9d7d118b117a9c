"""The rate limit's window under concurrency: two gateways on one Redis count exactly, and a window is one
counter whatever the limit (the real app, the real Redis)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from services.gateway.ratelimit import KEY_PREFIX
from tests.gateway.live import ELSEWHERE, client, running_app, services_of
from tests.gateway.staff.harness import make_settings, services_factory

OFF = {f"rate_limit_{name}": 0 for name in ("chat_per_token", "chat_per_client", "login_per_client")}


async def test_two_gateways_share_one_exact_count(tmp_path: Path, redis_url: str) -> None:
    """30 requests at once from one client, half to each of two gateways, limit 10: exactly 10 get through
    (a read-then-write count lets requests racing between the two processes slip past the limit)."""
    settings = make_settings(tmp_path, redis_url, **{**OFF, "rate_limit_webhook_per_client": 10})
    factory = services_factory(None)
    async with running_app(settings, factory) as one, running_app(settings, factory) as two:
        redis = services_of(one).redis
        await redis.delete(*[k async for k in redis.scan_iter(f"{KEY_PREFIX}*")] or ["-"])
        async with client(one, ELSEWHERE) as a, client(two, ELSEWHERE) as b:
            posts = [http.post("/webhooks/calcom", content=b"{}") for http in (a, b) for _ in range(15)]
            statuses = Counter(r.status_code for r in await asyncio.gather(*posts))
        keys = [k async for k in redis.scan_iter(f"{KEY_PREFIX}*")]
        values = [await redis.get(k) for k in keys]
    assert statuses == {401: 10, 429: 20}  # 401: past the limiter, refused for the missing signature
    assert values == [b"30"]  # one counter for the client's window, not a list of request times


async def test_the_remaining_budget_counts_down(tmp_path: Path, redis_url: str) -> None:
    """``RateLimit-Remaining`` on each answer is what is left of the window; the refusal says 0."""
    settings = make_settings(tmp_path, redis_url, **{**OFF, "rate_limit_webhook_per_client": 3})
    async with running_app(settings, services_factory(None)) as app:
        redis = services_of(app).redis
        await redis.delete(*[k async for k in redis.scan_iter(f"{KEY_PREFIX}*")] or ["-"])
        async with client(app, "198.51.100.99") as http:
            answers = [await http.post("/webhooks/calcom", content=b"{}") for _ in range(4)]
    assert [r.headers["ratelimit-remaining"] for r in answers] == ["2", "1", "0", "0"]
    assert [r.status_code for r in answers] == [401, 401, 401, 429]
