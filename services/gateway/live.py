"""Live updates across gateways: every stored change of an intake is announced on one Redis channel.

The intake store publishes the token of each record it writes on ``intake:changed`` (in the same Lua
script as the write, so no change goes unannounced, whichever process made it: a gateway's chat turn,
a staff action, the worker's summary, a webhook's cancellation). Each gateway process holds one
subscription, started when its first listener arrives, and fans the tokens out to the open event
streams in memory (the student's page and the staff pages). Pub/sub keeps no keys, so nothing here
needs a TTL; a listener that misses a message (a Redis restart) is told to reload (``None``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec
import redis.asyncio as aioredis
import structlog

if TYPE_CHECKING:  # the container builds the hub: a run-time import would be a cycle
    from services.gateway.container import Services

CHANNEL = "intake:changed"
QUEUE_SIZE = 256  # a listener this far behind gets one "reload" instead of every token
RECONNECT_S = 1.0
log = structlog.get_logger()

Change = str | None  # the token that changed; None: something may have been missed, reload everything
HEARTBEAT = ""  # yielded after ``heartbeat_s`` without a change: time to send a keep-alive comment
MAX_LISTENERS = 5000  # per process; one more is refused rather than slowing every other page down


# JSON may carry these raw inside strings, but many line readers (Python's splitlines, httpx's
# aiter_lines) end a line at each of them, which would cut an event's JSON in two for such a client.
_LINE_BREAKS_IN_STRINGS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def event_data(body: object) -> str:
    """The JSON of one server-sent event's ``data``: on one line for every line reader, the browser's and
    others'."""
    return msgspec.json.encode(body).decode().translate(_LINE_BREAKS_IN_STRINGS)


class TooManyListeners(Exception):
    """This process already feeds ``MAX_LISTENERS`` live pages."""


class Subscription:
    def __init__(self, queue: asyncio.Queue[Change]) -> None:
        self._queue = queue

    async def next(self, heartbeat_s: float = 20.0) -> Change:
        """The next changed token, ``None`` (reload), or ``HEARTBEAT`` after ``heartbeat_s`` of silence."""
        try:
            return await asyncio.wait_for(self._queue.get(), heartbeat_s)
        except TimeoutError:
            return HEARTBEAT


class LiveHub:
    """One Redis subscription per process, fanned out to every ``subscription()`` open in it."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._listeners: set[asyncio.Queue[Change]] = set()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    @contextlib.asynccontextmanager
    async def subscription(self) -> AsyncIterator[Subscription]:
        """Changes from the moment this is entered (the subscription is confirmed first, so a page that
        reads the current state inside the block misses nothing)."""
        if len(self._listeners) >= MAX_LISTENERS:
            raise TooManyListeners
        queue: asyncio.Queue[Change] = asyncio.Queue(QUEUE_SIZE)
        self._listeners.add(queue)
        try:
            self._start()
            await asyncio.wait_for(self._ready.wait(), 10)
            yield Subscription(queue)
        finally:
            self._listeners.discard(queue)

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="live-hub")

    async def _run(self) -> None:
        while True:
            try:
                await self._subscribe_and_forward()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis went away: tell everyone to reload, then subscribe again
                log.warning("live_subscription_lost", error=type(exc).__name__)
                self._ready.clear()
                self._fan_out(None)
                await asyncio.sleep(RECONNECT_S)

    async def _subscribe_and_forward(self) -> None:
        pubsub: Any = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(CHANNEL)
            self._ready.set()
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    data = message["data"]
                    self._fan_out(data.decode() if isinstance(data, bytes) else str(data))
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    def _fan_out(self, change: Change) -> None:
        for queue in list(self._listeners):
            try:
                queue.put_nowait(change)
            except asyncio.QueueFull:  # a slow reader: drop its backlog, it reloads once
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)


def hub_of(services: Services) -> LiveHub:
    """The process's hub (``Services`` builds it; one built by hand gets its own on first use)."""
    if services.live is None:
        services.live = LiveHub(services.redis)
    return services.live


async def announce(redis: aioredis.Redis, token: str) -> None:
    """Announce a change that did not go through the store's write (a job given up, an email sent)."""
    await redis.publish(CHANNEL, token)


class Tick(enum.Enum):
    """What ``watch`` yields besides a changed token."""

    READY = "ready"  # subscribed: read the current state now, every later change will follow
    KEEP_ALIVE = "keep_alive"  # nothing changed for a while: send a comment, check the session
    RELOAD = "reload"  # changes may have been missed: send everything again


async def watch(
    hub: LiveHub, *, max_s: float = 1800.0, heartbeat_s: float = 20.0
) -> AsyncIterator[str | Tick]:
    """``Tick.READY``, then changed tokens and ticks until ``max_s`` have passed (the page reconnects:
    a stream never outlives a logout or a deploy by long)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_s
    async with hub.subscription() as sub:
        yield Tick.READY
        while (left := deadline - loop.time()) > 0:
            change = await sub.next(min(heartbeat_s, left))
            if change is None:
                yield Tick.RELOAD
            elif change == HEARTBEAT:
                yield Tick.KEEP_ALIVE
            else:
                yield change
