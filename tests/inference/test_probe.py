"""The readiness probe's failure report (the success case runs against a real server in test_server)."""

from __future__ import annotations

from services.inference.probe import probe_generation
from tests.fixtures.ports import free_port


async def test_probe_reports_a_closed_port() -> None:
    """Nothing listening: not ok, quickly, with an error naming the URL it could not reach."""
    url = f"http://127.0.0.1:{free_port()}/v1"
    result = await probe_generation(url, "default_model", timeout=5)
    assert not result.ok
    assert result.error is not None
    assert result.error.startswith(f"cannot reach inference at {url}")
    assert result.latency_s < 5
