"""The real app in the test's own event loop, reached from chosen client addresses.

``httpx.ASGITransport`` lets a test say where a request comes from (loopback, another host) the way
uvicorn would, so the tunnel-header and local-only rules are exercised exactly as in production; and
requests from ``asyncio.gather`` really overlap.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from litestar import Litestar

from services.gateway.app import create_app
from services.gateway.container import Services
from services.settings import Settings

LOOPBACK = "127.0.0.1"
ELSEWHERE = "198.51.100.7"  # a documentation address: some other machine on the network


@asynccontextmanager
async def running_app(settings: Settings, services_factory: Any) -> AsyncIterator[Litestar]:
    app = create_app(settings, services_factory=services_factory)
    async with app.lifespan():
        yield app


def services_of(app: Litestar) -> Services:
    return app.state.services  # type: ignore[no-any-return]


def client(app: Litestar, host: str = LOOPBACK) -> httpx.AsyncClient:
    """An HTTP client whose requests arrive from ``host`` (close it, or use ``async with``)."""
    transport = httpx.ASGITransport(app=app, client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway.test")


class HungServer:
    """A TCP server that accepts connections and never answers: an inference server whose generation
    thread died while its port stays open. Counts the connections it was sent."""

    def __init__(self) -> None:
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> HungServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self._writers:
            writer.close()
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        await reader.read(65536)  # take the request, say nothing
