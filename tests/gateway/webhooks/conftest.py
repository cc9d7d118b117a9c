from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.gateway.delivery.harness import Gateway, open_gateway


@pytest.fixture
async def gw(tmp_path: Path, redis_url: str) -> AsyncIterator[Gateway]:
    """The real app and an in-process worker's Services on a flushed Redis, with default test settings."""
    async with open_gateway(tmp_path, redis_url) as gateway:
        yield gateway
