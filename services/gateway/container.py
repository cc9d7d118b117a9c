"""The long-lived clients every request shares, opened once per process and closed at shutdown."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from openai import AsyncOpenAI

from services.coursepack import Catalog, load_catalog
from services.gateway.ports import CourseRetriever
from services.settings import Settings


@dataclass
class Services:
    settings: Settings
    redis: aioredis.Redis
    openai: AsyncOpenAI
    http: httpx.AsyncClient
    catalog: Catalog
    retriever: CourseRetriever | None
    extras: dict[str, Any] = field(default_factory=dict)

    async def aclose(self) -> None:
        await self.redis.aclose()
        await self.openai.close()
        await self.http.aclose()

    def reload_catalog(self) -> Catalog:
        self.catalog = load_catalog(Path(self.settings.corpus_dir))
        return self.catalog


def open_openai(settings: Settings) -> AsyncOpenAI:
    """An OpenAI client for the local inference server; retries are ours, not the SDK's."""
    return AsyncOpenAI(
        base_url=settings.inference_url,
        api_key="not-needed-locally",
        timeout=settings.inference_timeout_s,
        max_retries=0,
    )


async def open_services(settings: Settings) -> Services:
    from services.indexer.retrieval import open_retriever  # heavy imports: only when serving

    return Services(
        settings=settings,
        redis=aioredis.from_url(settings.redis_url, decode_responses=False),
        openai=open_openai(settings),
        http=httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0)),
        catalog=load_catalog(Path(settings.corpus_dir)),
        retriever=open_retriever(settings),
    )
