"""``/healthz`` (the process is up), ``/readyz`` (Redis, Chroma and a real generation answer) and
``/metrics`` (Prometheus).

``/readyz`` runs one check at a time however many callers ask (they share it), and reuses its answer,
a failure too, for ``INTAKE_READINESS_CACHE_S`` seconds: a probe is a real completion on a busy CPU.
Only a caller on this machine (loopback, not forwarded by the tunnel) sees the details, which name
internal URLs and the indexer's state; everyone else gets the verdict. ``/metrics`` is for this machine
only, like the details.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any, ClassVar

import msgspec
from litestar import Request, Response, get
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.plugins.prometheus import PrometheusController
from litestar.types import ControllerRouterHandler, Guard

from services.gateway import metrics
from services.gateway.container import Services
from services.gateway.errors import Forbidden
from services.gateway.peers import is_local
from services.gateway.quality import exported
from services.gateway.quality.assignment import default_model_id
from services.gateway.quality.recording import record_probe
from services.inference.probe import probe_generation

INDEXER_STATUS_KEY = "intake:indexer:status"


class Check(msgspec.Struct, frozen=True):
    ok: bool
    latency_ms: float
    error: str | None = None


class Readiness(msgspec.Struct, frozen=True):
    status: str  # ok | degraded
    checks: dict[str, Check]
    indexer: dict[str, Any] | None = None
    course_problems: list[str] = []
    checked_at: str = ""  # when this answer was made (answers are shared and reused for a few seconds)


class Verdict(msgspec.Struct, frozen=True):
    """What a caller from elsewhere learns: ready or not."""

    status: str  # ok | degraded


class SharedCheck:
    """One readiness check in flight at a time; its answer is reused for ``cache_s`` seconds."""

    def __init__(self, services: Services, clock: Any = time.monotonic) -> None:
        self.services = services
        self.clock = clock
        self.answer: Readiness | None = None
        self.answered_at = 0.0
        self.running: asyncio.Task[Readiness] | None = None

    async def current(self) -> Readiness:
        fresh = self.clock() - self.answered_at < self.services.settings.readiness_cache_s
        if self.answer is not None and fresh:
            return self.answer
        if self.running is None:
            self.running = asyncio.create_task(self._check())
        # shielded: a caller that hangs up must not cancel the check the others are waiting for
        return await asyncio.shield(self.running)

    async def _check(self) -> Readiness:
        try:
            metrics.READINESS_PROBES.inc()
            answer = await check_readiness(self.services)
            self.answer, self.answered_at = answer, self.clock()
            return answer
        finally:
            self.running = None


@get("/healthz", sync_to_thread=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/readyz",
    responses={
        503: ResponseSpec(
            Verdict, description="Degraded: a check failed (same body as 200)", generate_examples=False
        )
    },
)
async def readyz(request: Request[Any, Any, Any], state: State) -> Response[Readiness | Verdict]:
    shared: SharedCheck | None = state.get("readiness")
    if shared is None:
        shared = state["readiness"] = SharedCheck(state.services)
    answer = await shared.current()
    code = 200 if answer.status == "ok" else 503
    body: Readiness | Verdict = answer if is_local(request) else Verdict(answer.status)
    return Response(body, status_code=code, headers={"Cache-Control": "no-store"})


async def check_readiness(services: Services) -> Readiness:
    redis_check, chroma_check, inference_check = await asyncio.gather(
        _timed(_check_redis(services)), _timed(_check_chroma(services)), _inference_check(services)
    )
    checks = {"redis": redis_check, "chroma": chroma_check, "inference": inference_check}
    return Readiness(
        status="ok" if all(c.ok for c in checks.values()) else "degraded",
        checks=checks,
        indexer=await _indexer_status(services),
        course_problems=[str(p) for p in services.catalog.problems],
        checked_at=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
    )


async def local_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard for the operator's read-outs: this machine only (not through the tunnel)."""
    if not is_local(connection):
        raise Forbidden("This endpoint answers callers on the gateway's own machine only.")


class MetricsController(PrometheusController):
    """Litestar's Prometheus endpoint; the queue's figures are read from Redis just before."""

    path = "/metrics"
    include_in_schema = False
    guards: ClassVar[list[Guard]] = [local_only]  # type: ignore[misc]

    @get()
    async def get(self, services: NamedDependency[Services]) -> Response[bytes]:
        await metrics.QUEUE.refresh(services.jobs, services.redis)
        await exported.refresh(services.calls, services.assessments)
        await metrics.refresh_analytics_lag(services.redis)
        return await PrometheusController.get.fn(self)  # type: ignore[no-any-return]


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


async def _inference_check(services: Services) -> Check:
    """A tiny real completion: a hung generator keeps the port open."""
    settings = services.settings
    result = await probe_generation(settings.inference_url, settings.model_name, settings.probe_timeout_s)
    record_probe(services.calls, default_model_id(settings), result.ok, result.latency_s)
    return Check(result.ok, round(result.latency_s * 1000, 1), result.error)


async def _indexer_status(services: Services) -> dict[str, Any] | None:
    try:
        raw = await services.redis.get(INDEXER_STATUS_KEY)
    except Exception:
        return None
    return msgspec.json.decode(raw) if raw else None


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


ROUTES: list[ControllerRouterHandler] = [healthz, readyz, MetricsController]
