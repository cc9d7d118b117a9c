"""The one place that builds the adapters: every long-lived client and store, built once per process.

The gateway hands ``Services`` to its routes through Litestar's dependency injection (a handler asks for
``services: Services``); the worker puts it into SAQ's job context. Tests build it with their own
catalog, no retriever and a scripted ``ChatModel`` through ``build_services``'s typed arguments.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis.asyncio as aioredis
import redis.exceptions
from openai import AsyncOpenAI
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.connection import HiredisRespSerializer
from redis.typing import EncodableT

from services.analytics.events import EventLog
from services.coursepack import Catalog, load_catalog
from services.gateway.breaker import CircuitBreaker
from services.gateway.delivery.queue import Jobs
from services.gateway.intake.llm import OpenAIChatModel
from services.gateway.intake.models import IntakeRecord
from services.gateway.intake.store import IntakeStore
from services.gateway.live import LiveHub
from services.gateway.ports import ChatModel, CourseRetriever, MessageReader, StaffAlerts, SummaryDelivery
from services.gateway.quality.assess import AssessmentStore
from services.gateway.quality.assignment import assign_model, default_model_id, model_b_id
from services.gateway.quality.calls import CallLog
from services.gateway.quality.recording import RecordingChatModel
from services.settings import Settings


@dataclass
class Services:
    settings: Settings
    redis: aioredis.Redis
    openai: AsyncOpenAI
    http: httpx.AsyncClient
    catalog: Catalog
    retriever: CourseRetriever | None
    model: ChatModel
    intakes: IntakeStore
    jobs: Jobs
    session_secret: bytes  # signs staff cookies; INTAKE_SESSION_SECRET, else random per process
    calls: CallLog  # a record of every model call
    assessments: AssessmentStore  # the rubric's assessment of every finished intake
    reader: MessageReader | None = None  # the message classifier and course map; None: rules only
    events: EventLog | None = None  # the analytics stream (services/analytics); built with the rest
    model_b: ChatModel | None = None  # the second model a share of new intakes goes to (INTAKE_MODEL_B_*)
    live: LiveHub | None = None  # announces intake changes to the open live pages (built with the rest)

    @property
    def summaries(self) -> SummaryDelivery:
        """Where the chat hands a finished interview (the queue, through its port)."""
        return self.jobs

    def model_for(self, record: IntakeRecord | None) -> ChatModel:
        """The one place a model is chosen: the intake's own (A, or B for the share ``INTAKE_MODEL_B_SHARE``
        of intakes, as written on its record), every call recorded against the intake. ``None``: the
        default model, recorded without an intake."""
        model_id = self.model_id_of(record) if record is not None else default_model_id(self.settings)
        return self.model_by_id(model_id, record)

    def model_by_id(self, model_id: str, record: IntakeRecord | None = None) -> ChatModel:
        """The model with id ``model_id`` (the default one for an id no longer configured), its calls
        recorded against ``record`` if given (``model_for``'s choice; the warm-up names each model)."""
        inner = self.model
        if model_id == model_b_id(self.settings) and self.model_b is not None:
            inner = self.model_b
        elif model_id != default_model_id(self.settings):
            model_id = default_model_id(self.settings)  # its model was taken away: the default goes on
        if record is None:
            return RecordingChatModel(inner, self.calls, model_id)
        return RecordingChatModel(inner, self.calls, model_id, record.token, record.course_slug)

    def model_id_of(self, record: IntakeRecord) -> str:
        """The model id on the record. One set up before records had one gets it now: from the same hash
        if it has not started, else the default (a conversation never changes model half-way)."""
        if not record.model:
            started = bool(record.interview.messages)
            record.model = (
                default_model_id(self.settings) if started else assign_model(self.settings, record.token)
            )
        return record.model

    @property
    def alerts(self) -> StaffAlerts:
        """Where the chat reports distress and requests for a person (the queue, through its port)."""
        return self.jobs

    async def aclose(self) -> None:
        if self.live is not None:
            await self.live.aclose()
        await self.calls.drain()
        await self.jobs.aclose()
        await self.redis.aclose()
        await self.openai.close()
        client = getattr(self.model_b, "client", None)
        if isinstance(client, AsyncOpenAI):
            await client.close()
        await self.http.aclose()

    def reload_catalog(self) -> Catalog:
        self.catalog = load_catalog(Path(self.settings.corpus_dir))
        return self.catalog


def open_openai(settings: Settings, http_client: httpx.AsyncClient | None = None) -> AsyncOpenAI:
    """An OpenAI client for the local inference server; retries are ours, not the SDK's."""
    return AsyncOpenAI(
        base_url=settings.inference_url,
        api_key="not-needed-locally",
        timeout=settings.inference_timeout_s,
        max_retries=0,
        http_client=http_client,  # type: ignore[arg-type]  # openai takes an httpx client as well as its own
    )


def open_model_b(settings: Settings) -> ChatModel | None:
    """The second model (``INTAKE_MODEL_B_URL``), with a client and a circuit breaker of its own."""
    if not settings.model_b_url:
        return None
    client = AsyncOpenAI(
        base_url=settings.model_b_url,
        api_key="not-needed-locally",
        timeout=settings.inference_timeout_s,
        max_retries=0,
    )
    return OpenAIChatModel(client, settings.model_b_name, breaker=open_breaker(settings))


def open_breaker(settings: Settings) -> CircuitBreaker:
    """The model's circuit breaker: one per process, shared by every student."""
    return CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s)


def open_redis(settings: Settings) -> aioredis.Redis:
    """A Redis client that rides out a Redis restart: a pooled connection the old server closed (or a
    server still loading its append-only file) is retried with backoff instead of failing the request.
    Its connections pack commands with hiredis (``HiredisPacking``)."""
    client = aioredis.from_url(
        settings.redis_url,
        decode_responses=False,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=5),
        retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
    )
    pool = client.connection_pool
    pool.connection_class = hiredis_packing(pool.connection_class)
    return client


class HiredisPacking(AbstractConnection):
    """A connection that packs its commands in C with redis-py's own ``HiredisRespSerializer`` (what its
    synchronous client uses when hiredis is installed): the asyncio client packs in Python, argument by
    argument into a growing buffer, which cost a webhook delivery (one script with some sixty arguments)
    ~8% of its gateway CPU. The same bytes on the wire; an argument of a type Redis has no form for is a
    ``DataError``."""

    _packer = HiredisRespSerializer()

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        return self._packer.pack(*args)  # type: ignore[arg-type]


def hiredis_packing(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    """``connection_class`` (TCP, TLS or a Unix socket, as the URL chose) packing with hiredis."""
    if issubclass(connection_class, HiredisPacking):
        return connection_class
    return type(f"Hiredis{connection_class.__name__}", (HiredisPacking, connection_class), {})


def build_services(
    settings: Settings,
    *,
    catalog: Catalog,
    retriever: CourseRetriever | None,
    model: ChatModel | None = None,
    openai: AsyncOpenAI | None = None,
    reader: MessageReader | None = None,
    model_b: ChatModel | None = None,
) -> Services:
    """Every adapter, from what the caller chose (the course catalog, retrieval, the model)."""
    redis = open_redis(settings)
    openai = openai or open_openai(settings)
    secret = settings.session_secret.encode() or secrets.token_bytes(32)
    return Services(
        settings=settings,
        redis=redis,
        openai=openai,
        http=httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0)),
        catalog=catalog,
        retriever=retriever,
        model=model or OpenAIChatModel(openai, settings.model_name, breaker=open_breaker(settings)),
        intakes=IntakeStore(redis, settings.retention_days),
        calls=CallLog(redis, settings.retention_days),
        assessments=AssessmentStore(redis, settings.retention_days),
        jobs=Jobs(redis, settings, broker=open_redis(settings)),  # SAQ blocks on its own connections
        session_secret=secret,
        reader=reader,
        events=EventLog(redis, settings.retention_days),
        model_b=model_b or open_model_b(settings),
        live=LiveHub(redis),
    )


async def open_services(settings: Settings) -> Services:
    """What the gateway and the worker run with: the corpus catalog and the real retriever."""
    from services.gateway.intake.reader import EmbeddingReader  # heavy imports: only when serving
    from services.indexer.retrieval import open_retriever

    catalog = load_catalog(Path(settings.corpus_dir))
    return build_services(
        settings, catalog=catalog, retriever=open_retriever(settings), reader=EmbeddingReader()
    )
