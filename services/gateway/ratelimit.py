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
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import time
from typing import Any, Literal, cast

import redis.asyncio as aioredis
import structlog
from litestar.connection import Request
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
KEY_PREFIX = "intake:ratelimit:"  # Redis keys of the windows
STORE = "rate_limit"  # the Litestar store name (a Redis store, registered at start-up)
Kind = Literal["chat", "webhook", "login"]
Key = Literal["token", "client"]
_HIT = """
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
"""
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
            window = await self._hit(app.state.services.redis, self.cache_key_from_request(request))
            if window.count > self.max_requests:
                self._refuse(window)
            if self.config.set_rate_limit_headers:
                send = self.create_send_wrapper(send=send, cache_object=cast(CacheObject, window))
        await self.app(scope, receive, send)

    async def _hit(self, redis: aioredis.Redis, key: str) -> Window:
        return await hit(redis, key, DURATION_VALUES[self.unit])

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
    return Window(count=int(count), reset=int(time()) + max(1, int(ttl)))


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
