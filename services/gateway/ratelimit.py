"""Rate limits: Litestar's rate-limit middleware, counting in Redis (so every gateway shares the counts).

A handler opts in with ``opt={LIMIT: "chat" | "webhook" | "login"}``; each kind is limited per client
address (``peers.client_address``: behind the tunnel, its ``CF-Connecting-IP``) and the chat also per
intake link, so one student's retry storm cannot use up a whole campus's shared address. Limits are
requests per minute from the settings (0 switches one off). A refused request is a 429 problem with
``Retry-After`` (seconds until the window resets) and the ``RateLimit-*`` headers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import time
from typing import Any, Literal

import structlog
from litestar.connection import Request
from litestar.middleware.base import DefineMiddleware
from litestar.middleware.rate_limit import CacheObject, RateLimitConfig, RateLimitMiddleware
from litestar.stores.base import Store

from services.gateway import metrics
from services.gateway.errors import TooManyRequests
from services.gateway.peers import client_address
from services.settings import Settings

LIMIT = "rate_limit"  # the handler ``opt`` key naming the limit that applies to it
STORE = "rate_limit"  # the Litestar store name (a Redis store, registered at start-up)
Kind = Literal["chat", "webhook", "login"]
Key = Literal["token", "client"]
log = structlog.get_logger()


@dataclass
class NamedLimit(RateLimitConfig):
    """One limit, named for logs, metrics and the 429's text."""

    name: str = ""


class Limiter(RateLimitMiddleware):
    """Litestar's limiter, refusing with our problem type and ``Retry-After``."""

    config: NamedLimit

    async def retrieve_cached_history(self, key: str, store: Store) -> CacheObject:
        cache = await super().retrieve_cached_history(key, store)
        if len(cache.history) >= self.max_requests:
            retry_after = max(1, cache.reset - int(time()))
            metrics.RATE_LIMITED.labels(limit=self.config.name).inc()
            log.warning("rate_limited", limit=self.config.name, retry_after_s=retry_after)
            raise TooManyRequests(
                f"Too many requests; try again in {retry_after} seconds.",
                headers={**self.create_response_headers(cache), "Retry-After": str(retry_after)},
            )
        return cache


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
