"""The fold's lag on ``/metrics``: events on the stream that the ``fold`` group has not folded, as
undelivered (not read) and pending (read, not acknowledged), back to zero once folded."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from services.analytics.consumer import GROUP, Consumer, fold_lag
from services.analytics.events import STREAM, Event, EventLog, event_id
from services.settings import Settings
from tests.analytics.conftest import fold_all
from tests.gateway.live import client, running_app
from tests.gateway.staff.harness import make_settings, services_factory
from tests.gateway.test_metrics import scrape, value


def _events(n: int) -> list[Event]:
    week = (dt.date.today() - dt.timedelta(days=dt.date.today().weekday())).isoformat()
    return [
        Event(
            id=event_id("lag", str(i)),
            kind="intake_consented",
            course="stat150",
            week=week,
            at=1.8e9 + i,
            intake=f"lag-{i}",
        )
        for i in range(n)
    ]


async def _lag_metric(http: Any) -> tuple[float, float]:
    text = await scrape(http)
    return (
        value(text, "intake_analytics_lag_events", state="pending"),
        value(text, "intake_analytics_lag_events", state="undelivered"),
    )


async def test_the_gauge_follows_unfolded_events(
    tmp_path: Path, redis_url: str, redis: aioredis.Redis, log: EventLog, settings: Settings
) -> None:
    async with (
        running_app(make_settings(tmp_path, redis_url), services_factory(None)) as app,
        client(app) as http,
    ):
        assert await _lag_metric(http) == (0, 0)
        await log.append(_events(5))
        assert await fold_lag(redis) == (0, 5)  # the program never started: no group yet
        assert await _lag_metric(http) == (0, 5)

        consumer = Consumer(redis, settings, "lag-test")
        await consumer.ensure_group()
        await redis.xreadgroup(GROUP, "lag-test", {STREAM: ">"}, count=2)  # read, then killed before the ack
        assert await _lag_metric(http) == (2, 3)

        await log.append(_events(7)[5:])
        assert await _lag_metric(http) == (2, 5)

        await fold_all(consumer)
        await asyncio.sleep(0.3)  # the two read before are idle past analytics_claim_idle_s
        await consumer.claim()
        assert await fold_lag(redis) == (0, 0)
        assert await _lag_metric(http) == (0, 0)


class _Redis7:
    """What XINFO GROUPS says on Redis 7: the group's own ``lag``."""

    async def xlen(self, stream: str) -> int:
        return 40

    async def xinfo_groups(self, stream: str) -> list[dict[str, Any]]:
        return [{"name": b"fold", "pending": 3, "last-delivered-id": b"1-0", "entries-read": 30, "lag": 10}]


async def test_redis_7_lag_is_taken_as_it_is() -> None:
    assert await fold_lag(_Redis7()) == (3, 10)  # type: ignore[arg-type]
