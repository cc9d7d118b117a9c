"""One place builds the adapters: the request id reaches inference on every call, an outage of a
dependency is a 502/504 problem (never a bare 500), and the error families are what they say."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis.exceptions
import structlog
from litestar.testing import AsyncTestClient
from redis.asyncio.connection import Connection, UnixDomainSocketConnection

from services.coursepack import Catalog
from services.gateway import errors
from services.gateway.app import create_app
from services.gateway.container import HiredisPacking, build_services, open_openai, open_redis
from services.gateway.delivery.queue import JobArgs
from services.gateway.intake.llm import OpenAIChatModel
from services.gateway.ports import PromptMessage
from services.settings import Settings
from tests.fixtures.ports import free_port, port_open, wait_until
from tests.fixtures.redis import REDIS_SERVER
from tests.gateway.staff.harness import make_settings, seed_intake, services_factory


class SentHeaders:
    """Records the ``X-Request-ID`` of every request the OpenAI client sends (an httpx event hook)."""

    def __init__(self) -> None:
        self.ids: list[str | None] = []

    async def __call__(self, request: httpx.Request) -> None:
        self.ids.append(request.headers.get("x-request-id"))

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(event_hooks={"request": [self]})


async def test_every_model_call_carries_the_current_request_id(tmp_path: Path, redis_url: str) -> None:
    """Streamed and whole completions both send ``X-Request-ID`` from the log context."""
    sent = SentHeaders()
    settings = make_settings(tmp_path, redis_url)
    model = OpenAIChatModel(open_openai(settings, sent.client()), settings.model_name)
    messages = [PromptMessage("user", "hello")]
    with structlog.contextvars.bound_contextvars(request_id="req-42"):
        with pytest.raises(openai.APIConnectionError):
            await model.complete(messages, max_tokens=5)
        with pytest.raises(openai.APIConnectionError):
            async for _ in model.stream(messages, max_tokens=5):
                pass
    assert sent.ids == ["req-42", "req-42"]


async def test_the_clients_request_id_reaches_inference_through_a_chat_turn(
    tmp_path: Path, redis_url: str
) -> None:
    """A student's message sent with ``X-Request-ID`` reaches the model with that id (the inference
    server is down here, so the policy's own question answers; the id went out all the same)."""
    sent = SentHeaders()
    settings = make_settings(tmp_path, redis_url)
    factory = services_factory(None)

    async def with_recording_client(settings: Settings) -> Any:
        services = await factory(settings)
        services.model = OpenAIChatModel(open_openai(settings, sent.client()), settings.model_name)
        return services

    record = await seed_intake(redis_url, settings)
    async with AsyncTestClient(create_app(settings, services_factory=with_recording_client)) as client:
        consent = await client.post(
            f"/api/intakes/{record.token}/consent", headers={"X-Request-ID": "consent-1"}
        )
        assert consent.status_code == 200
        response = await client.post(
            f"/api/intakes/{record.token}/messages",
            json={"text": "I am stuck on problem set 3."},
            headers={"X-Request-ID": "student-turn-7"},
        )
    assert response.status_code == 200 and "event: done" in response.text
    assert "student-turn-7" in sent.ids, "the turn's model calls carry the student's request id"
    assert set(sent.ids) <= {"consent-1", "student-turn-7"}, "consent warms the model under its own id"


@pytest.fixture
async def no_redis(tmp_path: Path) -> AsyncIterator[AsyncTestClient[Any]]:
    """The app with Redis unreachable (nothing listens on its port)."""
    settings = make_settings(tmp_path, f"redis://127.0.0.1:{free_port()}/0")
    async with AsyncTestClient(create_app(settings, services_factory=services_factory(None))) as client:
        yield client


async def test_redis_down_is_a_502_problem_not_a_bare_500(no_redis: AsyncTestClient[Any]) -> None:
    """A dependency outage escaping a handler is mapped onto the upstream family (RFC 9457 JSON)."""
    response = await no_redis.get("/api/intakes/some-token")
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"].endswith("/upstream") and "ConnectionError" in problem["detail"]


def test_client_errors_are_4xx_and_upstream_errors_502_or_504() -> None:
    """Two families under one base; each status says whose fault it is."""
    client = [errors.BadRequest, errors.Unauthorized, errors.Forbidden, errors.NotFound, errors.Conflict]
    client += [errors.Gone, errors.PayloadTooLarge, errors.Unprocessable, errors.TooManyRequests]
    assert all(issubclass(e, errors.ClientError) and 400 <= e.status < 500 for e in client)
    assert errors.UpstreamError.status == 502 and errors.UpstreamTimeout.status == 504
    assert issubclass(errors.UpstreamTimeout, errors.UpstreamError)
    assert not issubclass(errors.UpstreamError, errors.ClientError)
    problem = errors.PROBLEM_MAP[openai.APITimeoutError](
        openai.APITimeoutError(request=httpx.Request("GET", "/"))
    )
    assert isinstance(problem, errors.UpstreamTimeout)


async def test_the_services_ride_out_a_redis_restart(tmp_path: Path) -> None:
    """Redis killed and restarted (supervisord does that in a second): the next store read and job
    enqueue work, although every pooled connection was closed by the old server."""
    port = free_port()
    start = [str(REDIS_SERVER), "--port", str(port), "--save", "", "--dir", str(tmp_path)]
    server = subprocess.Popen(start, stdout=subprocess.DEVNULL)
    services = build_services(
        make_settings(tmp_path, f"redis://127.0.0.1:{port}/0"), catalog=Catalog({}, []), retriever=None
    )
    try:
        wait_until(lambda: port_open(port), 10, "redis")
        assert await services.intakes.get("some-token") is None
        assert await services.jobs.enqueue("invite_email", "b1", args=JobArgs(token="t1"))
        server.kill()
        server.wait()
        server = subprocess.Popen(start, stdout=subprocess.DEVNULL)
        wait_until(lambda: port_open(port), 10, "redis again")
        assert await services.intakes.get("some-token") is None
        assert await services.jobs.enqueue("invite_email", "b2", args=JobArgs(token="t1"))
    finally:
        await services.aclose()
        server.kill()
        server.wait()


@pytest.mark.parametrize(
    "command",
    [
        ("EVALSHA", "ab" * 20, 2, "k1", b"k2", 0, -7, 1.5, 1e20, 0.1, "ünï", b"\x00\xff" * 4000),
        ("SET", "k", bytearray(b"v"), memoryview(b"w")),
        (b"CONFIG GET", "maxmemory"),
        ("CLIENT SETNAME", "x"),
        ("GET", "x" * 20_000),
    ],
)
def test_the_clients_connections_pack_with_hiredis_and_send_the_same_bytes(
    tmp_path: Path, redis_url: str, command: tuple[Any, ...]
) -> None:
    """The Services' Redis connections pack commands in C; what goes on the wire is byte for byte what
    redis-py's own packer sends, and a value Redis has no form for is still a ``DataError``."""
    client = open_redis(make_settings(tmp_path, redis_url))
    packing = client.connection_pool.connection_class
    assert issubclass(packing, HiredisPacking) and issubclass(packing, Connection)
    ours, theirs = packing(), Connection()
    assert b"".join(ours.pack_command(*command)) == b"".join(theirs.pack_command(*command))
    unsendable: Any
    for unsendable in (None, True, object()):
        with pytest.raises(redis.exceptions.DataError):
            ours.pack_command("SET", "k", unsendable)
    unix = open_redis(make_settings(tmp_path, "unix:///tmp/nothing.sock"))
    assert issubclass(unix.connection_pool.connection_class, UnixDomainSocketConnection)
