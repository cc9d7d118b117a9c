"""Rate limits: Litestar's rate-limit middleware, counting in Redis (so every gateway shares the counts).

A handler opts in with ``opt={LIMIT: "chat" | "webhook" | "login"}``; each kind is limited per client
address (``peers.client_address``: behind the tunnel, its ``CF-Connecting-IP``) and the chat also per
intake link, so one student's retry storm cannot use up a whole campus's shared address. Limits are
requests per minute from the settings (0 switches one off). A refused request is a 429 problem with
``Retry-After`` (seconds until the window resets) and the ``RateLimit-*`` headers.

Each request is one atomic ``INCR`` on a fixed one-minute window in Redis, so every gateway shares the
exact count. (Litestar's own middleware keeps a list of every request's time, reads it and writes it back
under a process-wide lock: O(n) per request for a window of n, every limited request in the process in
single file, and two gateways racing between the read and the write. Measured: it halved the webhook
ingest rate.)

A handler marked ``opt={COUNTED_BY_HANDLER: True}`` (the Cal.com webhook) counts its request itself, in
the Redis script its work starts with (``count_lua``: one round trip fewer); every path of it that fails or
returns before that script counts with ``Deferred.check`` first, so it is limited exactly as if the
middleware had counted (a request that still went uncounted is counted once its answer is out).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import time
from typing import Any, Literal, cast

import redis.asyncio as aioredis
import structlog
from litestar.connection import ASGIConnection, Request
from litestar.middleware.base import DefineMiddleware
from litestar.middleware.rate_limit import (
    DURATION_VALUES,
    CacheObject,
    RateLimitConfig,
    RateLimitMiddleware,
)
from litestar.types import Receive, Scope, Send

from services.gateway import locks, metrics
from services.gateway.errors import TooManyRequests
from services.gateway.peers import client_address
from services.settings import Settings

LIMIT = "rate_limit"  # the handler ``opt`` key naming the limit that applies to it
COUNTED_BY_HANDLER = "rate_limit_counted_by_handler"  # handler ``opt``: it counts with ``deferred_count``
_DEFERRED = "rate_limit_deferred"  # the scope state key of a request's ``Deferred`` count
KEY_PREFIX = "intake:ratelimit:"  # Redis keys of the windows
STORE = "rate_limit"  # the Litestar store name (a Redis store, registered at start-up)
Kind = Literal["chat", "webhook", "login"]
Key = Literal["token", "client"]


def count_lua(key: str, window_s: str) -> str:
    """Lua that counts one request in the fixed window ``key`` of ``window_s`` seconds (Lua expressions),
    into the caller's locals ``hits`` (this request included) and ``ttl`` (seconds until it resets)."""
    return f"""hits = redis.call('INCR', {key})
ttl = redis.call('TTL', {key})
if ttl < 0 then
  redis.call('EXPIRE', {key}, {window_s})
  ttl = tonumber({window_s})
end
"""


_HIT = "local hits, ttl\n" + count_lua("KEYS[1]", "ARGV[1]") + "return {hits, ttl}\n"
_HIT_SHA = locks.script_sha(_HIT)
log = structlog.get_logger()


@dataclass
class NamedLimit(RateLimitConfig):
    """One limit, named for logs, metrics and the 429's text."""

    name: str = ""
    kind: str = ""  # the ``opt[LIMIT]`` of the handlers it applies to


@dataclass
class Window:
    """One key's fixed window: requests counted so far (this one included), and when it resets (epoch s)."""

    count: int
    reset: int


class Limiter(RateLimitMiddleware):
    """Litestar's limiter (configuration, keys, headers) counting with one atomic Redis call per request,
    refusing with our problem type and ``Retry-After``."""

    config: NamedLimit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = scope.get("route_handler")
        if handler is not None and handler.opt.get(LIMIT) != self.config.kind:
            await self.app(scope, receive, send)  # not limited here: no Request built, nothing awaited
            return
        app = scope["litestar_app"]
        request: Request[Any, Any, Any] = app.request_class(scope)
        if await self.should_check_request(request=request):
            if handler is not None and handler.opt.get(COUNTED_BY_HANDLER):
                await self._deferred(app.state.services.redis, request, scope, receive, send)
                return
            window = await self._hit(app.state.services.redis, self.cache_key_from_request(request))
            if window.count > self.max_requests:
                self._refuse(window)
            if self.config.set_rate_limit_headers:
                send = self.create_send_wrapper(send=send, cache_object=cast(CacheObject, window))
        await self.app(scope, receive, send)

    async def _hit(self, redis: aioredis.Redis, key: str) -> Window:
        return await hit(redis, key, DURATION_VALUES[self.unit])

    async def _deferred(
        self,
        redis: aioredis.Redis,
        request: Request[Any, Any, Any],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Let the request through uncounted: its handler counts it (``deferred_count``), and the headers
        show the count it took. Uncounted when its answer is out (a path that forgot): counted then."""
        deferred = Deferred(self, redis, self.cache_key_from_request(request))
        scope.setdefault("state", {})[_DEFERRED] = deferred
        if self.config.set_rate_limit_headers:
            send = self.create_send_wrapper(send=send, cache_object=cast(CacheObject, deferred.window))
        try:
            await self.app(scope, receive, send)
        finally:
            if not deferred.counted:
                try:
                    await deferred.count()
                except Exception as exc:  # the answer is out; the request's own error, if any, is raised
                    log.warning("rate_limit_count_failed", limit=self.config.name, error=type(exc).__name__)

    def _refuse(self, window: Window) -> None:
        retry_after = max(1, window.reset - int(time()))
        metrics.RATE_LIMITED.labels(limit=self.config.name).inc()
        log.warning("rate_limited", limit=self.config.name, retry_after_s=retry_after)
        raise TooManyRequests(
            f"Too many requests; try again in {retry_after} seconds.",
            headers={**self._headers(window), "Retry-After": str(retry_after)},
        )

    def create_response_headers(self, cache_object: CacheObject) -> dict[str, str]:
        return self._headers(cast(Window, cache_object))

    def _headers(self, window: Window) -> dict[str, str]:
        return {
            self.config.rate_limit_policy_header_key: f"{self.max_requests}; w={DURATION_VALUES[self.unit]}",
            self.config.rate_limit_limit_header_key: str(self.max_requests),
            self.config.rate_limit_remaining_header_key: str(max(0, self.max_requests - window.count)),
            self.config.rate_limit_reset_header_key: str(max(0, window.reset - int(time()))),
        }


async def hit(redis: aioredis.Redis, key: str, window_s: int) -> Window:
    """Count one request against ``key``'s fixed window of ``window_s`` seconds (one atomic call); also
    for limits that are not per route (login links per address, resends per booking)."""
    count, ttl = await locks.run_script(redis, _HIT, _HIT_SHA, [f"{KEY_PREFIX}{key}"], [window_s])
    return _window(count, ttl)


def _window(count: int | bytes, ttl: int | bytes) -> Window:
    return Window(count=int(count), reset=int(time()) + max(1, int(ttl)))


class Deferred:
    """A request its limiter let through uncounted, for its handler to count: with ``settle`` on what its
    own Redis script counted (``count_lua`` on ``key`` with ``window_s``, ``limit``), or with ``check``
    (a round trip of its own). Either refuses it (429) when it is over the limit."""

    def __init__(self, limiter: Limiter, redis: aioredis.Redis, key: str) -> None:
        self.limiter = limiter
        self.redis = redis
        self.key = f"{KEY_PREFIX}{key}"
        self.window_s = DURATION_VALUES[limiter.unit]
        self.limit = limiter.max_requests
        self.window = Window(count=0, reset=int(time()) + self.window_s)  # the headers read it when sent
        self.counted = False

    def settle(self, count: int | bytes, ttl: int | bytes) -> None:
        """The count a script took for this request: 429 when it is over the limit."""
        counted = _window(count, ttl)
        self.window.count, self.window.reset, self.counted = counted.count, counted.reset, True
        if self.window.count > self.limit:
            self.limiter._refuse(self.window)

    async def count(self) -> None:
        """Count it in a round trip of its own (refusing nothing)."""
        count, ttl = await locks.run_script(self.redis, _HIT, _HIT_SHA, [self.key], [self.window_s])
        counted = _window(count, ttl)
        self.window.count, self.window.reset, self.counted = counted.count, counted.reset, True

    async def check(self) -> None:
        """Count it now unless it is counted already: 429 when it is over the limit."""
        if not self.counted:
            await self.count()
            if self.window.count > self.limit:
                self.limiter._refuse(self.window)


def deferred_count(connection: ASGIConnection[Any, Any, Any, Any]) -> Deferred | None:
    """The request's uncounted limit (a handler with ``COUNTED_BY_HANDLER``), or None (no limit is on)."""
    deferred = connection.scope.get("state", {}).get(_DEFERRED)
    return deferred if isinstance(deferred, Deferred) else None


def rate_limits(settings: Settings) -> list[DefineMiddleware]:
    """The middleware for every limit that is switched on."""
    limits: list[tuple[Kind, Key, int]] = [
        ("chat", "token", settings.rate_limit_chat_per_token),
        ("chat", "client", settings.rate_limit_chat_per_client),
        ("webhook", "client", settings.rate_limit_webhook_per_client),
        ("login", "client", settings.rate_limit_login_per_client),
    ]
    return [_limit(kind, key, per_minute).middleware for kind, key, per_minute in limits if per_minute > 0]


def _limit(kind: Kind, key: Key, per_minute: int) -> NamedLimit:
    name = f"{kind}_per_{key}"
    return NamedLimit(
        rate_limit=("minute", per_minute),
        identifier_for_request=_identify(name, key),
        check_throttle_handler=_applies_to(kind),
        middleware_class=Limiter,
        store=STORE,
        name=name,
        kind=kind,
    )


def _identify(name: str, key: Key) -> Callable[[Request[Any, Any, Any]], str]:
    def identify(request: Request[Any, Any, Any]) -> str:
        if key == "token":
            return f"{name}:{_digest(str(request.path_params.get('token', '')))}"
        return f"{name}:{client_address(request)}"

    return identify


def _applies_to(kind: Kind) -> Callable[[Request[Any, Any, Any]], Awaitable[bool]]:
    async def applies(request: Request[Any, Any, Any]) -> bool:  # async: a sync one would run in a thread
        return bool(request.route_handler.opt.get(LIMIT) == kind)

    return applies


def _digest(value: str) -> str:
    """Redis keys carry a digest: the token is a capability and has no business in a key listing."""
    return hashlib.sha256(value.encode()).hexdigest()[:24]
