"""Prometheus metrics of the gateway, served at ``/metrics`` next to Litestar's Prometheus plugin's own
HTTP metrics (``intake_http_requests_total``, ``intake_http_request_duration_seconds``, by route template).

Latency is measured twice: per model call (first token and whole call, as the inference server gave
them) and per student turn (first reply text and ``done``, as the student saw them, so template answers
and the breaker's fast path count too). The queue lives in Redis and the worker is another process, so
queue depth, dead jobs and job outcomes are read from Redis when ``/metrics`` is scraped: they are the
same on every gateway (take ``max``, not ``sum``, across gateways). Labels never carry a token, a booking
uid or anything a student wrote.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import msgspec
import redis.asyncio as aioredis
import structlog
from litestar.plugins.prometheus import PrometheusConfig
from litestar.response import ServerSentEventMessage
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from services.analytics.consumer import fold_lag

if TYPE_CHECKING:
    from services.gateway.delivery.queue import Jobs

JOB_OUTCOMES_KEY = "metrics:jobs"  # Redis hash "<kind>:<outcome>" -> count, written by the worker
_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 45, 60, 90, 120)
log = structlog.get_logger()

MODEL_FIRST_TOKEN = Histogram(
    "intake_model_first_token_seconds",
    "Model call: seconds from the request to the first streamed piece",
    buckets=_LATENCY_BUCKETS,
)
MODEL_CALL_SECONDS = Histogram(
    "intake_model_call_seconds", "Model call: seconds for the whole call", buckets=_LATENCY_BUCKETS
)
MODEL_CALLS = Counter(
    "intake_model_calls",
    "Model calls by outcome: ok, error, timeout, rejected (refused by the open circuit breaker)",
    ["outcome"],
)
MODEL_TOKENS = Counter(
    "intake_model_tokens",
    "Tokens the inference server reported: prompt, cached_prompt (served from its prompt cache), completion",
    ["kind"],
)
MODEL_CACHED_SHARE = Histogram(
    "intake_model_cached_prompt_share",
    "Per model call, the share of prompt tokens the server took from its prompt cache (when it says)",
    buckets=(0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 1.0),
)
TURN_FIRST_TOKEN = Histogram(
    "intake_turn_first_token_seconds",
    "Student turn: seconds from the message to the first reply text",
    buckets=_LATENCY_BUCKETS,
)
TURN_SECONDS = Histogram(
    "intake_turn_seconds", "Student turn: seconds from the message to `done`", buckets=_LATENCY_BUCKETS
)
TURNS = Counter("intake_turns", "Student turns by outcome: ok, or the SSE error event's code", ["outcome"])
WEBHOOKS = Counter(
    "intake_webhooks",
    "Cal.com deliveries by outcome: the acknowledgement (created, duplicate, ignored, ...) or the HTTP "
    "status of a refusal",
    ["outcome"],
)
RATE_LIMITED = Counter("intake_rate_limited", "Requests refused with 429, by limit", ["limit"])
BREAKER_STATE = Gauge(
    "intake_model_breaker_state", "The model's circuit breaker: 0 closed, 1 half-open, 2 open"
)
BREAKER_OPENED = Counter("intake_model_breaker_opened", "Times the model's circuit breaker opened")
READINESS_PROBES = Counter(
    "intake_readiness_probes", "Readiness checks actually run (answers shared or reused are not counted)"
)
ANALYTICS_LAG = Gauge(
    "intake_analytics_lag_events",
    "Analytics events the fold (consumer group `fold`) has not folded yet: pending (read, not acknowledged) "
    "and undelivered (not read yet); NaN when Redis could not be read",
    ["state"],
)


def prometheus_config() -> PrometheusConfig:
    """Litestar's request metrics, labelled by route template (a token never becomes a label value)."""
    return PrometheusConfig(
        app_name="gateway",
        prefix="intake_http",
        group_path=True,
        exclude_unhandled_paths=True,
        exclude=["^/metrics", "^/static", "^/staff/queue"],
        buckets=list(_LATENCY_BUCKETS),
    )


# --- the queue, read from Redis at scrape time ------------------------------------------------------


class QueueSnapshot(msgspec.Struct, kw_only=True):
    depth: dict[str, dict[str, int]] = {}  # queue -> queued / active / scheduled
    dead: dict[str, int] = {}  # queue -> dead jobs
    outcomes: dict[str, int] = {}  # "<kind>:<outcome>" -> count
    redis_up: bool = True


class QueueCollector:
    """A custom collector: Prometheus collects synchronously, so ``refresh`` (async) runs first."""

    def __init__(self) -> None:
        self.snapshot = QueueSnapshot()

    async def refresh(self, jobs: Jobs, redis: aioredis.Redis) -> None:
        try:
            depth = {name: await _depth(queue) for name, queue in jobs.queues.items()}
            dead: dict[str, int] = dict.fromkeys(jobs.queues, 0)
            for job in await jobs.dead_letters(limit=100_000):
                dead[job.queue] = dead.get(job.queue, 0) + 1
            raw = await redis.hgetall(JOB_OUTCOMES_KEY)
        except Exception as exc:  # a scrape reports a Redis outage; it never fails because of one
            log.warning("metrics_queue_unavailable", error=type(exc).__name__)
            self.snapshot = msgspec.structs.replace(self.snapshot, redis_up=False)
            return
        outcomes = {_text(k): int(v) for k, v in raw.items()}
        self.snapshot = QueueSnapshot(depth=depth, dead=dead, outcomes=outcomes)

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        depth = GaugeMetricFamily(
            "intake_queue_jobs", "Jobs waiting or running, by queue and state", labels=["queue", "state"]
        )
        for queue, states in snap.depth.items():
            for state, count in states.items():
                depth.add_metric([queue, state], count)
        dead = GaugeMetricFamily(
            "intake_jobs_dead", "Dead jobs (out of attempts) waiting for a staff retry", labels=["queue"]
        )
        for queue, count in snap.dead.items():
            dead.add_metric([queue], count)
        outcomes = CounterMetricFamily(
            "intake_jobs", "Job runs by kind and outcome: delivered, retry, dead", labels=["kind", "outcome"]
        )
        for key, count in snap.outcomes.items():
            kind, _, outcome = key.partition(":")
            outcomes.add_metric([kind, outcome], count)
        up = GaugeMetricFamily("intake_queue_redis_up", "1 when the last scrape could read the queue")
        up.add_metric([], 1 if snap.redis_up else 0)
        yield from (depth, dead, outcomes, up)


QUEUE = QueueCollector()
REGISTRY.register(QUEUE)  # type: ignore[arg-type]  # a collector only needs ``collect``


async def count_job(redis: aioredis.Redis, kind: str, outcome: str) -> None:
    """The worker's record of one job run; a Redis hiccup must not fail the job's bookkeeping."""
    try:
        await redis.hincrby(JOB_OUTCOMES_KEY, f"{kind}:{outcome}", 1)
    except Exception as exc:
        log.warning("job_outcome_not_counted", kind=kind, error=type(exc).__name__)


async def _depth(queue: Any) -> dict[str, int]:
    queued, active, incomplete = [await queue.count(s) for s in ("queued", "active", "incomplete")]
    return {"queued": queued, "active": active, "scheduled": max(0, incomplete - queued - active)}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def refresh_analytics_lag(redis: aioredis.Redis) -> None:
    """Read the fold's lag from Redis (the same on every gateway: take ``max`` across gateways)."""
    lag: tuple[float, float]
    try:
        lag = await fold_lag(redis)
    except Exception as exc:  # a scrape reports a Redis outage; it never fails because of one
        log.warning("metrics_analytics_lag_unavailable", error=type(exc).__name__)
        lag = (math.nan, math.nan)
    ANALYTICS_LAG.labels(state="pending").set(lag[0])
    ANALYTICS_LAG.labels(state="undelivered").set(lag[1])


# --- a student's turn, as the student saw it --------------------------------------------------------


async def observe_turn(
    events: AsyncIterator[ServerSentEventMessage], started: float
) -> AsyncIterator[ServerSentEventMessage]:
    """Pass the turn's events through, timing the first ``token`` and the ``done`` from ``started``
    (``time.perf_counter()`` when the message arrived). A dropped connection records nothing."""
    first: float | None = None
    outcome = "ok"
    async for event in events:
        if event.event == "token" and first is None:
            first = time.perf_counter() - started
            TURN_FIRST_TOKEN.observe(first)
        elif event.event == "error":
            outcome = msgspec.json.decode(str(event.data), type=dict[str, Any]).get("code", "internal")
        elif event.event == "done":
            TURN_SECONDS.observe(time.perf_counter() - started)
            TURNS.labels(outcome=outcome).inc()
        yield event


# --- model calls and assessments, read from Redis at scrape time -------------------------------------


class QualitySnapshot(msgspec.Struct, kw_only=True):
    """What the model-call log and the assessments say (``quality/exported.py`` fills it): the same on
    every gateway, whichever process (gateway or worker) made the calls. Labels are model ids, purposes,
    statuses and rubric versions: never a token or anything a student wrote."""

    calls: list[tuple[str, str, str, int]] = []  # model, purpose, status, calls (all time)
    tokens: list[tuple[str, str, str, int]] = []  # model, purpose, prompt|completion|cached, tokens
    latency: list[tuple[str, str, str, str, float]] = []  # model, purpose, first_token|total, quantile, s
    scores: list[tuple[str, str, str, float]] = []  # rubric version, model, kind, mean score
    assessed: list[tuple[str, str, int]] = []  # rubric version, model, intakes
    redis_up: bool = True


class QualityCollector:
    def __init__(self) -> None:
        self.snapshot = QualitySnapshot()

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        calls = CounterMetricFamily(
            "intake_model_call_records",
            "Model calls in the call log by model, purpose and status (every process's calls)",
            labels=["model", "purpose", "status"],
        )
        for model, purpose, status, count in snap.calls:
            calls.add_metric([model, purpose, status], count)
        tokens = CounterMetricFamily(
            "intake_model_call_tokens",
            "Tokens in the call log by model, purpose and kind (prompt, completion, cached)",
            labels=["model", "purpose", "kind"],
        )
        for model, purpose, kind, count in snap.tokens:
            tokens.add_metric([model, purpose, kind], count)
        latency = GaugeMetricFamily(
            "intake_model_call_latency_seconds",
            "Today's (UTC) model-call latency percentiles by model and purpose: first token and whole call",
            labels=["model", "purpose", "kind", "quantile"],
        )
        for model, purpose, kind, quantile, seconds in snap.latency:
            latency.add_metric([model, purpose, kind, quantile], seconds)
        scores = GaugeMetricFamily(
            "intake_assessment_score",
            "Mean rubric score (0-1) of assessed intakes by rubric version, model and kind",
            labels=["rubric_version", "model", "kind"],
        )
        for rubric, model, kind, score in snap.scores:
            scores.add_metric([rubric, model, kind], score)
        assessed = CounterMetricFamily(
            "intake_assessed_intakes",
            "Intakes assessed by rubric version and model",
            labels=["rubric_version", "model"],
        )
        for rubric, model, count in snap.assessed:
            assessed.add_metric([rubric, model], count)
        up = GaugeMetricFamily("intake_quality_redis_up", "1 when the last scrape could read the call log")
        up.add_metric([], 1 if snap.redis_up else 0)
        yield from (calls, tokens, latency, scores, assessed, up)


QUALITY = QualityCollector()
REGISTRY.register(QUALITY)  # type: ignore[arg-type]  # a collector only needs ``collect``
