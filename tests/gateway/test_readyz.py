"""``/readyz``: details for this machine only, one check shared by concurrent callers, answers (failures
too) reused for a few seconds. The inference server here is a hung one: its port accepts and never answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.gateway import metrics
from tests.gateway.live import ELSEWHERE, LOOPBACK, HungServer, client, running_app
from tests.gateway.staff.harness import make_settings, services_factory


def _probes() -> float:
    return metrics.REGISTRY.get_sample_value("intake_readiness_probes_total") or 0.0


async def test_details_only_for_callers_on_this_machine(tmp_path: Path, redis_url: str) -> None:
    """Loopback without forwarding headers sees checks, errors (internal URLs) and the indexer; another
    host, or a student through the tunnel (loopback with CF-Connecting-IP), sees only the verdict."""
    settings = make_settings(tmp_path, redis_url, readiness_cache_s=60)
    app_running = running_app(settings, services_factory(None))
    async with app_running as app, client(app, LOOPBACK) as local, client(app, ELSEWHERE) as remote:
        mine = await local.get("/readyz")
        theirs = await remote.get("/readyz")
        tunnelled = await local.get("/readyz", headers={"CF-Connecting-IP": "203.0.113.9"})
        forwarded = await local.get("/readyz", headers={"X-Forwarded-For": "203.0.113.9"})
    assert mine.status_code == 503, "nothing listens for Chroma or inference here"
    detail = mine.json()
    assert detail["checks"]["redis"]["ok"] is True
    assert settings.inference_url in detail["checks"]["inference"]["error"]
    assert "indexer" in detail and detail["checked_at"]
    for response in (theirs, tunnelled, forwarded):
        assert response.status_code == 503
        assert response.json() == {"status": "degraded"}


async def test_concurrent_callers_share_one_probe_and_its_failure_is_reused(
    tmp_path: Path, redis_url: str
) -> None:
    """Eight callers while inference hangs: one probe (one connection to the server), one answer for
    all; a caller right after gets the same failed answer without a new probe."""
    async with HungServer() as hung:
        settings = make_settings(
            tmp_path, redis_url, inference_url=hung.url, probe_timeout_s=0.5, readiness_cache_s=60
        )
        async with running_app(settings, services_factory(None)) as app, client(app) as http:
            before = _probes()
            answers = await asyncio.gather(*(http.get("/readyz") for _ in range(8)))
            later = await http.get("/readyz")
            probes = _probes() - before
            connections = hung.connections
    assert probes == 1 and connections == 1
    bodies = [a.json() for a in [*answers, later]]
    assert {a.status_code for a in [*answers, later]} == {503}
    assert len({b["checked_at"] for b in bodies}) == 1, "every caller got the one answer"
    assert "within 0.5s" in bodies[0]["checks"]["inference"]["error"]


async def test_the_answer_is_checked_again_once_it_is_stale(tmp_path: Path, redis_url: str) -> None:
    """With no reuse window, each call runs its own check (the reuse above is the cache's doing)."""
    settings = make_settings(tmp_path, redis_url, readiness_cache_s=0)
    async with running_app(settings, services_factory(None)) as app, client(app) as http:
        before = _probes()
        first = (await http.get("/readyz")).json()["checked_at"]
        second = (await http.get("/readyz")).json()["checked_at"]
    assert _probes() - before == 2 and first != second
