"""Analytics ingest: how fast the ``analytics`` consumer folds events on one core, and how long an event
takes from the webhook to the aggregate, against raw ``XADD`` on the same Redis.

    .venv/bin/python -m bench.analytics                       # own Redis (append-only, as the stack), ~1 min
    .venv/bin/python -m bench.analytics --events 100000 --rate 3000 --seconds 30

Four phases on a Redis of its own (temp folder, free port):
1. peer: raw pipelined ``XADD`` of the same encoded events (what the stream alone takes);
2. drain: a backlog of ``--events`` realistic events (the demo semester's mix, repeated with fresh ids)
   folded by one consumer process pinned to one core (``taskset``): events/s;
3. sustained: events emitted at ``--rate``/s for ``--seconds`` while the consumer runs; latency from emit to
   the aggregate showing it (a watcher polls the counter every 10 ms): p50 / p95;
4. webhooks: signed BOOKING_CREATED deliveries through the real gateway app (in-process, no rate limit) at
   ``--webhook-rate``/s: latency from the POST to the host's booking count in the aggregate, p50 / p95.
Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio as aioredis

from services.analytics import semester
from services.analytics.aggregates import Aggregates
from services.analytics.consumer import GROUP
from services.analytics.events import FIELD, STREAM, Event, EventLog, event_id, week_of
from services.analytics.fold import agg_key
from services.coursepack import Catalog, load_catalog
from services.gateway.logs import configure_logging
from services.settings import REPO_ROOT, Settings

REDIS_SERVER = Path(sys.executable).parent / "redis-server"
BATCH = 500


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_redis(folder: Path, port: int) -> subprocess.Popen[bytes]:
    args = [str(REDIS_SERVER), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
    args += ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL)


def _events(catalog: Catalog, count: int) -> list[Event]:
    """``count`` events of the demo semester's mix (bookings, moves, intakes, ratings), fresh ids."""
    today = dt.datetime.now(dt.UTC).date()
    pattern = [e for course in catalog.courses.values() for e in semester.semester(course, today)]
    out = []
    for n in range(count):
        event, copy = pattern[n % len(pattern)], f"~{n // len(pattern)}"
        out.append(
            msgspec.structs.replace(
                event,
                id=event_id("bench", str(n)),
                booking=event.booking and event.booking + copy,
                previous=event.previous and event.previous + copy,
                intake=event.intake and event.intake + copy,
            )
        )
    return out


def _consumer(url: str, cpu: int, name: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "INTAKE_REDIS_URL": url, "INTAKE_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "services.analytics.consumer", "--name", name]
    return subprocess.Popen(["taskset", "-c", str(cpu), *command], env=env, cwd=REPO_ROOT)


async def _consumer_ready(redis: aioredis.Redis, name: str) -> None:
    """Wait until the consumer process has started and is reading (its imports take a while on a busy
    machine): latency is measured from there, not from a process start."""
    for _ in range(3000):
        if await redis.exists(STREAM) and await _has_group(redis):
            names = [c["name"] for c in await redis.xinfo_consumers(STREAM, GROUP)]
            if name.encode() in names or name in names:
                return
        await asyncio.sleep(0.01)
    raise SystemExit("the consumer did not start")


async def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    await asyncio.to_thread(proc.wait, 10)


async def _acked_all(redis: aioredis.Redis) -> bool:
    last = await redis.xrevrange(STREAM, count=1)
    if not last:
        return True
    groups = {g["name"]: g for g in await redis.xinfo_groups(STREAM)}
    group = groups.get(GROUP.encode()) or groups.get(GROUP)
    return bool(group and group["pending"] == 0 and group["last-delivered-id"] == last[0][0])


async def peer_xadd(redis: aioredis.Redis, events: list[Event]) -> float:
    """Raw pipelined XADD of the encoded events: the stream's own speed."""
    encoded = [msgspec.json.encode(e) for e in events]
    started = time.perf_counter()
    for i in range(0, len(encoded), BATCH):
        async with redis.pipeline(transaction=False) as pipe:
            for raw in encoded[i : i + BATCH]:
                pipe.xadd("bench:peer", {FIELD: raw})
            await pipe.execute()
    rate = len(encoded) / (time.perf_counter() - started)
    await redis.delete("bench:peer")
    return rate


async def drain(redis: aioredis.Redis, url: str, events: list[Event], cpu: int) -> float:
    """A backlog folded by one consumer process on one core: events/s."""
    log = EventLog(redis, 30)
    for i in range(0, len(events), BATCH):
        await log.append(events[i : i + BATCH])
    proc = _consumer(url, cpu, "drain")
    try:
        while not await _has_group(redis):  # the process is up (imports take a second): start the clock
            await asyncio.sleep(0.002)
        started = time.perf_counter()
        while not await _acked_all(redis):
            await asyncio.sleep(0.02)
            if proc.poll() is not None:
                raise SystemExit("the consumer died")
        return len(events) / (time.perf_counter() - started)
    finally:
        await _stop(proc)


async def _has_group(redis: aioredis.Redis) -> bool:
    return any(g["name"] in (GROUP, GROUP.encode()) for g in await redis.xinfo_groups(STREAM))


async def sustained(redis: aioredis.Redis, url: str, rate: int, seconds: float, cpu: int) -> dict[str, float]:
    """Bookings for one host emitted at ``rate``/s; latency from emit to the host's count showing it."""
    week = week_of(time.time())
    key, field = agg_key("bench", week), "host:bench@example.edu:bookings"
    log = EventLog(redis, 30)
    proc = _consumer(url, cpu, "sustained")
    await _consumer_ready(redis, "sustained")
    sent: list[float] = []
    seen: list[tuple[float, int]] = []
    done = asyncio.Event()

    async def watch() -> None:
        while not done.is_set() or (seen and seen[-1][1] < len(sent)):
            count = int(await redis.hget(key, field) or 0)
            seen.append((time.perf_counter(), count))
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    started, n, tick = time.perf_counter(), 0, 0.05
    try:
        while time.perf_counter() - started < seconds:
            due = int((time.perf_counter() - started) * rate) - n
            batch = []
            for _ in range(max(0, due)):
                uid = f"sustained-{n}"
                batch.append(
                    Event(
                        id=event_id(uid),
                        kind="booking_created",
                        course="bench",
                        week=week,
                        at=time.time(),
                        booking=uid,
                        host="bench@example.edu",
                    )
                )
                n += 1
            if batch:
                stamp = time.perf_counter()
                await log.append(batch)
                sent.extend([stamp] * len(batch))
            await asyncio.sleep(tick)
        done.set()
        await asyncio.wait_for(watcher, 120)
    finally:
        await _stop(proc)
    latencies = _latencies(sent, seen)
    return {
        "sustained_events": len(sent),
        "sustained_rate": len(sent) / seconds,
        **_quantiles("emit", latencies),
    }


def _latencies(sent: list[float], seen: list[tuple[float, int]]) -> list[float]:
    """For the i-th event: the first poll that saw the count reach i, minus when it was sent."""
    out, j = [], 0
    for i, stamp in enumerate(sent, start=1):
        while j < len(seen) and seen[j][1] < i:
            j += 1
        if j < len(seen):
            out.append(seen[j][0] - stamp)
    return out


def _quantiles(name: str, values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        f"{name}_p50_s": round(statistics.median(ordered), 3),
        f"{name}_p95_s": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
        f"{name}_max_s": round(ordered[-1], 3),
    }


async def webhooks(url: str, rate: int, count: int, cpu: int, folder: Path) -> dict[str, float]:
    """Signed BOOKING_CREATED deliveries through the real app; latency from POST to the host's count."""
    from litestar.testing import AsyncTestClient

    from services.gateway.app import create_app
    from services.gateway.container import Services, build_services
    from services.gateway.demo import demo_payload
    from services.gateway.webhooks.signature import SIGNATURE_HEADER, sign

    settings = msgspec.convert(
        {
            "redis_url": url,
            "data_dir": str(folder / "data"),
            "calcom_webhook_secret": "bench-secret",
            "rate_limit_webhook_per_client": 0,
            "log_level": "WARNING",
        },
        Settings,
    )
    catalog = load_catalog(REPO_ROOT / "corpus")
    course = catalog.courses["writ101"]

    async def services(settings: Settings) -> Services:
        return build_services(settings, catalog=catalog, retriever=None)

    payload = demo_payload(course)
    week = week_of(payload["payload"]["startTime"])
    redis = aioredis.from_url(url)
    field = f"host:{course.instructor_email.lower()}:bookings"
    before = int(await redis.hget(agg_key(course.slug, week), field) or 0)
    proc = _consumer(url, cpu, "webhooks")
    await _consumer_ready(redis, "webhooks")
    sent: list[float] = []
    seen: list[tuple[float, int]] = []
    done = asyncio.Event()

    async def watch() -> None:
        while not done.is_set() or (seen and seen[-1][1] < len(sent)):
            count_now = int(await redis.hget(agg_key(course.slug, week), field) or 0) - before
            seen.append((time.perf_counter(), count_now))
            await asyncio.sleep(0.01)

    try:
        async with AsyncTestClient(create_app(settings, services_factory=services)) as client:
            watcher = asyncio.create_task(watch())
            started = time.perf_counter()
            for n in range(count):
                await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
                payload["payload"]["uid"] = f"bench-webhook-{n}-{time.time_ns()}"
                payload["createdAt"] = dt.datetime.now(dt.UTC).isoformat()
                body = json.dumps(payload).encode()
                stamp = time.perf_counter()
                response = await client.post(
                    "/webhooks/calcom", content=body, headers={SIGNATURE_HEADER: sign(body, "bench-secret")}
                )
                if response.status_code != 200:
                    raise SystemExit(f"webhook answered {response.status_code}: {response.text[:200]}")
                sent.append(stamp)
            elapsed = time.perf_counter() - started
            done.set()
            await asyncio.wait_for(watcher, 120)
    finally:
        await _stop(proc)
        await redis.aclose()
    return {
        "webhooks": count,
        "webhooks_per_s": count / elapsed,
        **_quantiles("webhook", _latencies(sent, seen)),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-analytics-") as tmp:
        folder, port = Path(tmp), _free_port()
        proc = _start_redis(folder, port)
        url = f"redis://127.0.0.1:{port}/0"
        redis = aioredis.from_url(url)
        try:
            for _ in range(100):
                try:
                    await redis.ping()
                    break
                except Exception:
                    await asyncio.sleep(0.1)
            catalog = load_catalog(REPO_ROOT / "corpus")
            events = _events(catalog, args.events)
            figures: dict[str, Any] = {"events": len(events), "cpu": args.cpu}
            figures["xadd_per_s"] = round(await peer_xadd(redis, events))
            print(f"peer: raw XADD {figures['xadd_per_s']:,} events/s", flush=True)
            figures["drain_per_s"] = round(await drain(redis, url, events, args.cpu))
            print(
                f"drain: {figures['drain_per_s']:,} events/s folded by one consumer on one core", flush=True
            )
            await _check_fold(redis, events)
            figures.update(await sustained(redis, url, args.rate, args.seconds, args.cpu))
            print(
                f"sustained {args.rate}/s for {args.seconds:g} s: emit -> aggregate p50 "
                f"{figures.get('emit_p50_s')} s, p95 {figures.get('emit_p95_s')} s",
                flush=True,
            )
            figures.update(await webhooks(url, args.webhook_rate, args.webhooks, args.cpu, folder))
            print(
                f"webhooks: {figures['webhooks_per_s']:.0f}/s through the app; POST -> aggregate p50 "
                f"{figures.get('webhook_p50_s')} s, p95 {figures.get('webhook_p95_s')} s",
                flush=True,
            )
            return {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}
        finally:
            await redis.aclose()
            proc.terminate()
            proc.wait(10)


async def _check_fold(redis: aioredis.Redis, events: list[Event]) -> None:
    """The drain counted every booking event of one course-week (a fast fold that folds wrongly is no use)."""
    sample = next(e for e in events if e.kind == "booking_created")
    expected = sum(
        1
        for e in events
        if e.kind == "booking_created" and (e.course, e.week) == (sample.course, sample.week)
    )
    figures = await Aggregates(redis, 3600).week(sample.course, sample.week)
    if figures.get("bookings") != expected:
        raise SystemExit(f"fold check failed: {figures.get('bookings')} bookings, expected {expected}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.analytics", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="backlog size for the drain phase")
    parser.add_argument("--rate", type=int, default=2_000, help="events/s in the sustained phase")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the sustained phase")
    parser.add_argument("--webhooks", type=int, default=600, help="signed deliveries in the webhook phase")
    parser.add_argument("--webhook-rate", type=int, default=100, help="deliveries/s in the webhook phase")
    parser.add_argument("--cpu", type=int, default=0, help="the core the consumer is pinned to")
    configure_logging("WARNING")
    for noisy in ("httpx", "saq"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    figures = asyncio.run(run(parser.parse_args()))
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
