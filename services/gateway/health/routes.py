"""``/healthz`` (the process is up) and ``/readyz`` (Redis, Chroma and a real generation answer)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
from litestar import Response, get
from litestar.datastructures import State

from services.gateway.container import Services
from services.inference.probe import probe_generation

INDEXER_STATUS_KEY = "intake:indexer:status"
_PROBE_CACHE_S = 5.0


class Check(msgspec.Struct, frozen=True):
    ok: bool
    latency_ms: float
    error: str | None = None


class Readiness(msgspec.Struct, frozen=True):
    status: str  # ok | degraded
    checks: dict[str, Check]
    indexer: dict[str, Any] | None = None
    course_problems: list[str] = []


@get("/healthz", sync_to_thread=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz")
async def readyz(state: State) -> Response[Readiness]:
    services: Services = state.services
    redis_check, chroma_check, inference_check = await asyncio.gather(
        _timed(_check_redis(services)), _timed(_check_chroma(services)), _inference_check(state, services)
    )
    checks = {"redis": redis_check, "chroma": chroma_check, "inference": inference_check}
    ok = all(c.ok for c in checks.values())
    body = Readiness(
        status="ok" if ok else "degraded",
        checks=checks,
        indexer=await _indexer_status(services),
        course_problems=[str(p) for p in services.catalog.problems],
    )
    return Response(body, status_code=200 if ok else 503)


async def _timed(check: Any) -> Check:
    start = time.perf_counter()
    try:
        await asyncio.wait_for(check, timeout=5.0)
    except Exception as exc:  # a readiness check reports every failure, whatever its type
        return Check(False, _ms(start), f"{type(exc).__name__}: {exc}"[:300])
    return Check(True, _ms(start))


async def _check_redis(services: Services) -> None:
    await services.redis.ping()


async def _check_chroma(services: Services) -> None:
    response = await services.http.get(services.settings.chroma_url.rstrip("/") + "/api/v2/heartbeat")
    response.raise_for_status()


async def _inference_check(state: State, services: Services) -> Check:
    """A tiny real completion (a hung generator keeps the port open); cached briefly to spare the CPU."""
    cached: tuple[float, Check] | None = state.get("inference_probe")
    if cached and time.monotonic() - cached[0] < _PROBE_CACHE_S and cached[1].ok:
        return cached[1]
    settings = services.settings
    result = await probe_generation(settings.inference_url, settings.model_name, settings.probe_timeout_s)
    check = Check(result.ok, round(result.latency_s * 1000, 1), result.error)
    state["inference_probe"] = (time.monotonic(), check)
    return check


async def _indexer_status(services: Services) -> dict[str, Any] | None:
    try:
        raw = await services.redis.get(INDEXER_STATUS_KEY)
    except Exception:
        return None
    return msgspec.json.decode(raw) if raw else None


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


ROUTES = [healthz, readyz]
