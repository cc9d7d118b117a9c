"""The durable outbox: every slow or external step is a job in Redis that the worker runs, retries and,
when it keeps failing, parks in a dead-letter list instead of dropping it.

Redis keys (Redis runs with append-only persistence, so a job survives a restart of anything):

- ``outbox:job:{id}``   the ``Job`` as JSON (the source of truth for attempts, state, last error)
- ``outbox:due``        sorted set job id -> epoch when it may run next; a claimed job is leased by moving
                        its score into the future, so a worker that dies mid-job only delays it
- ``outbox:dead``       sorted set job id -> epoch it died; the staff page lists it, ``requeue`` revives it
- ``outbox:token:{t}``  set of job ids of one intake, so a cancellation can cancel what is still pending
- ``outbox:wake``       a list the gateway pushes to so the worker's BLPOP returns at once
- ``intake:partial-due`` sorted set token -> epoch when a partial / no-intake summary is due
"""

from __future__ import annotations

import random
import secrets
import time
from typing import TYPE_CHECKING, Literal

import msgspec
import redis.asyncio as aioredis
import structlog

from services.gateway.intake.models import Booking, IntakeRecord, Summary, SummaryStatus
from services.gateway.intake.store import now_iso, parse_time
from services.settings import Settings

if TYPE_CHECKING:
    from services.gateway.container import Services

JobKind = Literal["prepare", "invite_email", "summarize", "summary_email", "summary_calcom"]
JobState = Literal["pending", "delivered", "dead", "cancelled"]
SUMMARY_CHANNELS: tuple[JobKind, ...] = ("summary_email", "summary_calcom")

_JOB = "outbox:job:{}"
_DUE = "outbox:due"
_DEAD = "outbox:dead"
_BY_TOKEN = "outbox:token:{}"
_WAKE = "outbox:wake"
PARTIAL_DUE = "intake:partial-due"
_DONE_TTL_S = 24 * 3600
_LEASE_S = 300.0

# Claim due ids atomically by pushing their score past the lease: two workers never run the same job,
# and a job whose worker died becomes due again when the lease runs out.
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return ids
"""
_CLAIM_PARTIALS = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do redis.call('ZREM', KEYS[1], id) end
return ids
"""

log = structlog.get_logger()


class Job(msgspec.Struct, kw_only=True):
    """One unit of outbox work. Summary jobs carry a snapshot of what to deliver and where."""

    id: str
    kind: JobKind
    token: str
    created_at: str
    next_attempt_at: float  # epoch seconds
    attempts: int = 0
    max_attempts: int = 10
    state: JobState = "pending"
    last_error: str | None = None
    updated_at: str = ""
    summary_status: SummaryStatus | None = None  # summarize: which kind of summary to build
    summary: Summary | None = None  # summary_email / summary_calcom: the summary as delivered
    booking: Booking | None = None  # summary_email / summary_calcom: where it goes
    course_slug: str = ""


_decoder = msgspec.json.Decoder(Job)


def _text(value: object) -> str:
    """Redis answers bytes (the shared client does not decode); accept str too."""
    return value.decode() if isinstance(value, bytes) else str(value)


def backoff_delay(settings: Settings, attempts: int) -> float:
    """Exponential backoff with jitter: half fixed, half random, so retries of many jobs spread out."""
    ceiling = min(settings.outbox_backoff_max_s, settings.outbox_backoff_base_s * 2 ** max(0, attempts - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class Outbox:
    """Redis adapter for jobs: enqueue, claim, finish, retry, dead-letter, cancel."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._claim = redis.register_script(_CLAIM)

    def _max_attempts(self, kind: JobKind) -> int:
        # a failed preparation or model summary has a fallback, so retrying it for hours buys nothing
        return 3 if kind in ("prepare", "summarize") else self._settings.outbox_max_attempts

    async def enqueue(
        self,
        kind: JobKind,
        token: str,
        *,
        delay_s: float = 0.0,
        course_slug: str = "",
        summary_status: SummaryStatus | None = None,
        summary: Summary | None = None,
        booking: Booking | None = None,
    ) -> Job:
        now = time.time()
        job = Job(
            id=secrets.token_hex(10),
            kind=kind,
            token=token,
            created_at=now_iso(),
            next_attempt_at=now + delay_s,
            max_attempts=self._max_attempts(kind),
            updated_at=now_iso(),
            course_slug=course_slug,
            summary_status=summary_status,
            summary=summary,
            booking=booking,
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(_JOB.format(job.id), msgspec.json.encode(job), ex=self._keep_s())
            pipe.zadd(_DUE, {job.id: job.next_attempt_at})
            pipe.sadd(_BY_TOKEN.format(token), job.id)
            pipe.expire(_BY_TOKEN.format(token), self._keep_s())
            pipe.rpush(_WAKE, b"1")
            pipe.ltrim(_WAKE, -16, -1)
            await pipe.execute()
        log.info("job_enqueued", job_id=job.id, kind=kind)
        return job

    async def get(self, job_id: str) -> Job | None:
        raw = await self._redis.get(_JOB.format(job_id))
        return _decoder.decode(raw) if raw else None

    async def claim_due(self, limit: int = 10, now: float | None = None) -> list[Job]:
        """Jobs whose time has come, leased to the caller; ids whose record vanished are dropped."""
        now = time.time() if now is None else now
        ids = await self._claim(keys=[_DUE], args=[now, now + _LEASE_S, limit])
        jobs: list[Job] = []
        for raw_id in ids:
            job = await self.get(_text(raw_id))
            if job is None or job.state != "pending":
                await self._redis.zrem(_DUE, raw_id)
                continue
            jobs.append(job)
        return jobs

    async def defer(self, job: Job, delay_s: float) -> None:
        """Hand a claimed job back, due again in ``delay_s``; not an attempt (it never ran)."""
        await self._redis.zadd(_DUE, {job.id: time.time() + delay_s})

    async def mark_delivered(self, job: Job) -> None:
        job.state, job.updated_at = "delivered", now_iso()
        await self._finish(job, ttl_s=_DONE_TTL_S)

    async def retry_or_bury(self, job: Job, error: str) -> float | None:
        """Count the failed attempt; schedule the next one (returns the delay) or dead-letter (None)."""
        job.attempts += 1
        job.last_error = error[:300]
        job.updated_at = now_iso()
        if job.attempts >= job.max_attempts:
            await self.bury(job, error)
            return None
        delay = backoff_delay(self._settings, job.attempts)
        job.next_attempt_at = time.time() + delay
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(_JOB.format(job.id), msgspec.json.encode(job), ex=self._keep_s())
            pipe.zadd(_DUE, {job.id: job.next_attempt_at})
            await pipe.execute()
        return delay

    async def bury(self, job: Job, error: str) -> None:
        """Dead-letter: kept (never dropped) until staff requeue it or retention expires it."""
        job.state, job.last_error, job.updated_at = "dead", error[:300], now_iso()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(_JOB.format(job.id), msgspec.json.encode(job), ex=self._keep_s())
            pipe.zrem(_DUE, job.id)
            pipe.zadd(_DEAD, {job.id: time.time()})
            await pipe.execute()

    async def requeue(self, job_id: str) -> bool:
        """Give a dead job a fresh set of attempts, due now (for the staff page's "retry" button)."""
        job = await self.get(job_id)
        if job is None or job.state != "dead":
            return False
        job.state, job.attempts, job.next_attempt_at = "pending", 0, time.time()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(_JOB.format(job.id), msgspec.json.encode(job), ex=self._keep_s())
            pipe.zrem(_DEAD, job.id)
            pipe.zadd(_DUE, {job.id: job.next_attempt_at})
            pipe.rpush(_WAKE, b"1")
            await pipe.execute()
        return True

    async def dead_letters(self, limit: int = 100) -> list[Job]:
        """Most recent first; ids whose job expired are pruned on the way."""
        ids = await self._redis.zrevrange(_DEAD, 0, limit - 1)
        jobs = [await self.get(_text(i)) for i in ids]
        gone = [i for i, job in zip(ids, jobs, strict=True) if job is None]
        if gone:
            await self._redis.zrem(_DEAD, *(_text(i) for i in gone))
        return [job for job in jobs if job is not None]

    async def jobs_for(self, token: str) -> list[Job]:
        ids = await self._redis.smembers(_BY_TOKEN.format(token))
        jobs = [await self.get(_text(i)) for i in sorted(ids)]
        return sorted((j for j in jobs if j is not None), key=lambda j: (j.created_at, j.id))

    async def cancel_for(self, token: str) -> int:
        """Cancel the intake's pending and dead jobs (a cancelled booking must not get a summary)."""
        cancelled = 0
        for job in await self.jobs_for(token):
            if job.state in ("pending", "dead"):
                job.state, job.updated_at = "cancelled", now_iso()
                await self._finish(job, ttl_s=_DONE_TTL_S)
                cancelled += 1
        return cancelled

    async def wait_for_work(self, timeout_s: float) -> None:
        """Block until the gateway signals new work or the timeout passes (BLPOP, so no busy polling)."""
        await self._redis.blpop([_WAKE], timeout=timeout_s)

    async def _finish(self, job: Job, ttl_s: int) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(_JOB.format(job.id), msgspec.json.encode(job), ex=ttl_s)
            pipe.zrem(_DUE, job.id)
            pipe.zrem(_DEAD, job.id)
            pipe.srem(_BY_TOKEN.format(job.token), job.id)
            await pipe.execute()

    def _keep_s(self) -> int:
        return max(7, self._settings.retention_days) * 24 * 3600


# --- partial / no-intake summaries ---------------------------------------------------------------


def partial_due_at(settings: Settings, start_time: str, now: float | None = None) -> float:
    """``partial_before_meeting_s`` before the meeting; for a booking made later than that, halfway there."""
    now = time.time() if now is None else now
    start = parse_time(start_time).timestamp()
    due = start - settings.partial_before_meeting_s
    return due if due > now else now + max(0.0, start - now) / 2


async def schedule_partial(redis: aioredis.Redis, settings: Settings, token: str, start_time: str) -> None:
    await redis.zadd(PARTIAL_DUE, {token: partial_due_at(settings, start_time)})


async def unschedule_partial(redis: aioredis.Redis, token: str) -> None:
    await redis.zrem(PARTIAL_DUE, token)


async def claim_due_partials(redis: aioredis.Redis, limit: int = 20, now: float | None = None) -> list[str]:
    """Tokens whose partial summary is due, removed from the schedule so only one worker takes each."""
    script = redis.register_script(_CLAIM_PARTIALS)
    ids = await script(keys=[PARTIAL_DUE], args=[time.time() if now is None else now, limit])
    return [_text(i) for i in ids]


# --- the entry point the chat routes call ----------------------------------------------------------


async def enqueue_summary_delivery(services: Services, record: IntakeRecord) -> None:
    """The interview is over: have the worker write the final summary and deliver it on both channels.

    Called by the chat route after it saved ``record`` with status ``complete`` or ``escalated``. An
    escalated intake skips the model refinement so the professor hears about it at once.
    """
    status: SummaryStatus = "escalated" if record.status == "escalated" else "complete"
    await unschedule_partial(services.redis, record.token)
    await Outbox(services.redis, services.settings).enqueue(
        "summarize", record.token, summary_status=status, course_slug=record.course_slug
    )
