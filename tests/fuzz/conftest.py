"""A gateway of its own for the fuzzers: the real program (uvicorn, every middleware) on a free port, on its
own Redis database, the fixture course pack, staff login on, and no model or Chroma behind it (a fuzzed
request never needs them: the chat's model calls fail fast and the interview falls back to its own
questions)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.gateway.staff.password import hash_password
from tests.chaos import harness
from tests.fixtures.ports import free_port, wait_until
from tests.fixtures.stack import TEST_CORPUS, WEBHOOK_SECRET

STAFF_PASSWORD = "fuzz-staff-password"
_NOTHING_LISTENS = "http://127.0.0.1:9"


@dataclass
class FuzzGateway:
    url: str
    redis_url: str
    log: Path

    def new_intake(self, n: int) -> str:
        """A real intake (signed booking), so fuzzed chat requests can reach past the token lookup."""
        payload = harness.booking(
            f"fuzz-{n}-{uuid.uuid4().hex[:12]}", 90_000 + n, harness.student(f"fuzz{n}")
        )
        return harness.book(self.url, self.redis_url, payload)


@pytest.fixture(scope="session")
def fuzz_gateway(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[FuzzGateway]:
    folder = tmp_path_factory.mktemp("fuzz-gateway")
    port = free_port()
    database = redis_url.rsplit("/", 1)[0] + "/7"  # other tests flush database 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")}
    env.update(
        INTAKE_PORT=str(port),
        INTAKE_DATA_DIR=str(folder),
        INTAKE_CORPUS_DIR=str(TEST_CORPUS),
        INTAKE_REDIS_URL=database,
        INTAKE_CHROMA_URL=_NOTHING_LISTENS,
        INTAKE_INFERENCE_URL=_NOTHING_LISTENS + "/v1",
        INTAKE_INFERENCE_TIMEOUT_S="2",
        INTAKE_CALCOM_WEBHOOK_SECRET=WEBHOOK_SECRET,
        INTAKE_STAFF_PASSWORD_HASH=hash_password(STAFF_PASSWORD),
        INTAKE_SESSION_SECRET="fuzz-session-secret",
        INTAKE_RATE_LIMIT_WEBHOOK_PER_CLIENT="1000000",
        INTAKE_RATE_LIMIT_CHAT_PER_CLIENT="1000000",
    )
    import redis

    redis.Redis.from_url(database).flushdb()
    log = folder / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.gateway.app"], env=env, stdout=out, stderr=out
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: _answers(url), 120, "fuzz gateway")
            yield FuzzGateway(url, database, log)
        finally:
            proc.terminate()
            proc.wait(30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
