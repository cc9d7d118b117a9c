"""The consumer group that folds the analytics stream: ``python -m services.analytics.consumer``.

It runs as its own supervisord program (``analytics``), not as an SAQ job: a blocking ``XREADGROUP``
answers within milliseconds of an event (a cron job would wait up to a minute), it never queues behind
minute-long model summaries on the worker, and supervisord restarts it within a second. Several copies may
run (each is a consumer of group ``fold``); every event's operations are applied once by id
(``aggregates.APPLY``), so copies and replays cannot double-count.

One loop: read a batch (``>``: new entries), apply it in one pipelined round trip, ``XACK`` it. A consumer
killed mid-batch leaves its entries pending; every ``claim_every_s`` each consumer takes over entries
pending longer than ``claim_idle_s`` (``XAUTOCLAIM``) and applies them again (harmless: by id). At start a
consumer first re-reads its own pending entries. Consumers idle for a day with nothing pending are
removed from the group. An entry that cannot be decoded, or whose operations Redis refuses, is logged
(ids only) and acknowledged, so it cannot block the stream.

``--rebuild`` deletes the aggregates and their state and rewinds the group to the start of the stream:
the running consumers then fold everything again (the stream holds the retention period; older figures
are not in it, so rebuild only after a fold bug, knowing that).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
import structlog

from services.analytics.aggregates import Aggregates
from services.analytics.events import FIELD, STREAM, Event, decode
from services.settings import Settings, SettingsError, load_settings

GROUP = "fold"
GATHER_S = 0.05
LAG_COUNT_CAP = 10_000  # on Redis < 7 the undelivered entries are counted, up to this many
_STALE_CONSUMER_MS = 24 * 3600 * 1000
log = structlog.get_logger()
Entry = tuple[bytes, dict[bytes, bytes]]


def state_ttl_s(settings: Settings) -> int:
    """Fold state outlives the stream's events by two weeks (see ``aggregates``)."""
    return (max(1, settings.retention_days) + 14) * 24 * 3600


class Consumer:
    """One member of the ``fold`` group."""

    def __init__(
        self,
        redis: aioredis.Redis,
        settings: Settings,
        name: str | None = None,
        *,
        batch: int | None = None,
        block_ms: int = 1000,
    ) -> None:
        self.redis = redis
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.batch = batch or settings.analytics_batch
        self.block_ms = block_ms
        self.claim_idle_ms = int(settings.analytics_claim_idle_s * 1000)
        self.claim_every_s = max(0.5, settings.analytics_claim_idle_s / 2)
        self.aggregates = Aggregates(redis, state_ttl_s(settings))
        self.applied = 0

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self, stop: asyncio.Event) -> None:
        """Fold until ``stop`` is set; a Redis outage is waited out."""
        await self.ensure_group()
        await self.drain_own_pending()
        last_claim = 0.0
        log.info("analytics_consumer_started", consumer=self.name)
        while not stop.is_set():
            try:
                if time.monotonic() - last_claim >= self.claim_every_s:
                    await self.claim()
                    last_claim = time.monotonic()
                await self.step()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                log.warning("analytics_redis_unavailable", error=type(exc).__name__)
                await asyncio.sleep(1.0)
            except redis.exceptions.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self.ensure_group()  # the stream was deleted (a flush): start over
        log.info("analytics_consumer_stopped", consumer=self.name, applied=self.applied)

    async def step(self, *, wait: bool = True) -> int:
        """Read (waiting up to ``block_ms`` for one) and fold a batch of new entries; returns how many."""
        block = self.block_ms if wait else None
        reply: Any = await self.redis.xreadgroup(
            GROUP, self.name, {STREAM: ">"}, count=self.batch, block=block
        )
        entries = _entries(reply)
        if wait and 0 < len(entries) < self.batch // 4:
            # a trickle: wait a moment for more, so each round trip folds a batch (costs at most GATHER_S)
            await asyncio.sleep(GATHER_S)
            more: Any = await self.redis.xreadgroup(
                GROUP, self.name, {STREAM: ">"}, count=self.batch - len(entries)
            )
            entries += _entries(more)
        await self.fold(entries)
        return len(entries)

    async def drain_own_pending(self) -> None:
        """Entries this consumer name read but never acknowledged (a restart under the same name)."""
        while True:
            reply: Any = await self.redis.xreadgroup(GROUP, self.name, {STREAM: "0"}, count=self.batch)
            entries = [e for e in _entries(reply) if e[1]]
            if not entries:
                return
            await self.fold(entries)

    async def claim(self) -> int:
        """Take over entries another consumer left pending too long (it died mid-batch), and fold them."""
        claimed, start = 0, "0-0"
        while True:
            reply: Any = await self.redis.xautoclaim(
                STREAM, GROUP, self.name, min_idle_time=self.claim_idle_ms, start_id=start, count=self.batch
            )
            start, entries = reply[0], [e for e in reply[1] if e[1]]
            deleted = reply[2] if len(reply) > 2 else []
            if deleted:  # trimmed away while pending: nothing left to fold
                await self.redis.xack(STREAM, GROUP, *deleted)
            if entries:
                log.info("analytics_claimed", consumer=self.name, entries=len(entries))
                await self.fold(entries)
                claimed += len(entries)
            if start in (b"0-0", "0-0"):
                break
        await self._forget_stale_consumers()
        return claimed

    async def fold(self, entries: Sequence[Entry]) -> None:
        """Apply the entries' events (each once, by id), then acknowledge them all."""
        if not entries:
            return
        events: list[Event] = []
        for entry_id, fields in entries:
            try:
                events.append(decode(fields[FIELD]))
            except Exception:
                log.error("analytics_entry_undecodable", entry_id=entry_id.decode())
        new = await self._apply(events)
        await self.redis.xack(STREAM, GROUP, *[entry_id for entry_id, _ in entries])
        self.applied += new
        stamps = [e.emitted for e in events if e.emitted]
        lag = time.time() - min(stamps) if stamps else 0.0
        log.debug("analytics_folded", entries=len(entries), new=new, lag_s=round(lag, 3))

    async def _apply(self, events: list[Event]) -> int:
        """Apply a batch; if Redis refuses it (a script error), one by one, so a single bad event is
        logged and skipped instead of blocking the stream (its batch would fail on every retry)."""
        try:
            return await self.aggregates.apply(events)
        except redis.exceptions.ResponseError:
            new = 0
            for event in events:
                try:
                    new += await self.aggregates.apply([event])
                except redis.exceptions.ResponseError as exc:
                    log.error(
                        "analytics_event_rejected", kind=event.kind, event_id=event.id, error=str(exc)[:200]
                    )
            return new

    async def _forget_stale_consumers(self) -> None:
        for info in await self.redis.xinfo_consumers(STREAM, GROUP):
            name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
            if name != self.name and info["pending"] == 0 and info["idle"] > _STALE_CONSUMER_MS:
                await self.redis.xgroup_delconsumer(STREAM, GROUP, name)


async def fold_lag(redis: aioredis.Redis) -> tuple[int, int]:
    """How far the ``fold`` group is behind: (pending: read but not acknowledged, undelivered: on the
    stream but not read yet). Redis 7 keeps the group's ``lag``; before 7 (or when Redis cannot tell) the
    entries after the group's last-delivered id are counted, up to ``LAG_COUNT_CAP``. Without the group
    (the program never started) every entry is undelivered."""
    length = int(await redis.xlen(STREAM))
    if not length:
        return 0, 0
    groups = {_text(g["name"]): g for g in await redis.xinfo_groups(STREAM)}
    group = groups.get(GROUP)
    if group is None:
        return 0, length
    pending = int(group["pending"])
    lag = group.get("lag")
    if lag is not None:
        return pending, int(lag)
    last = _text(group["last-delivered-id"])
    if last == "0-0":
        return pending, length
    newer: Any = await redis.xrange(STREAM, min=f"({last}", max="+", count=LAG_COUNT_CAP)
    return pending, len(newer or [])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entries(reply: Any) -> list[Entry]:
    """The entries of a one-stream XREADGROUP reply (a list of [stream, entries], or a dict in RESP3)."""
    if not reply:
        return []
    streams = list(reply.values()) if isinstance(reply, dict) else [r[1] for r in reply]
    return list(streams[0]) if streams else []


async def rebuild(redis: aioredis.Redis, settings: Settings) -> int:
    """Forget every aggregate and rewind the group: the consumers fold the whole stream again."""
    deleted = await Aggregates(redis, state_ttl_s(settings)).clear()
    consumer = Consumer(redis, settings, name="rebuild")
    await consumer.ensure_group()
    await redis.xgroup_setid(STREAM, GROUP, id="0")
    log.info("analytics_rebuild_started", deleted_keys=deleted)
    return deleted


async def _serve(args: argparse.Namespace) -> None:
    from services.gateway.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level)
    client = aioredis.from_url(settings.redis_url)
    try:
        if args.rebuild:
            print(
                f"deleted {await rebuild(client, settings)} analytics keys; the consumers fold it all again"
            )
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Consumer(client, settings, args.name).run(stop)
    finally:
        await client.aclose()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.analytics.consumer", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--name", default=None, help="consumer name (default: host-pid)")
    parser.add_argument(
        "--rebuild", action="store_true", help="delete the aggregates and fold the stream again"
    )
    try:
        asyncio.run(_serve(parser.parse_args(argv)))
    except SettingsError as exc:
        raise SystemExit(f"analytics: configuration error: {exc}") from None


if __name__ == "__main__":
    main()
