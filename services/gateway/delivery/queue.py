"""The job queue: SAQ on Redis. Every slow or external step is a job the worker runs, retries with
backoff and, when it keeps failing, leaves *dead* (SAQ status ``failed``) for staff to retry.

Two queues, so model summaries never hold up the rest: ``model`` has only the complete-intake summaries
(the model refines them: a minute or more each on a CPU); ``intake`` has everything else (preparing the
interview, the invitation, partial / escalated summaries, both delivery channels, the rubric's assessment
of a finished intake). The worker runs each with its own concurrency.

Every job's key is its kind and what it is about (``invite_email.<booking uid>``,
``summary_email.<booking uid>.<summary status>``): SAQ refuses a second job whose key is still queued,
scheduled or running, and ``jobs:done:<key>`` (set after the job's effect, kept for the retention
period) turns a copy that arrives later into a no-op. A retried or duplicated job never sends twice.

Other Redis keys: ``jobs:token:<token>`` (the intake's jobs, for the staff page and cancellation) and
``jobs:running:<key>`` (a lock held while a job runs, so a swept-and-retried copy cannot overlap it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal, NamedTuple, get_args

import msgspec
import redis.asyncio as aioredis
import structlog
from saq.job import Job, Status
from saq.queue.redis import RedisQueue
from saq.utils import now as saq_now

from services.gateway.intake.models import Booking, IntakeRecord, Person, Summary, SummaryStatus
from services.gateway.intake.store import IntakeStore, parse_time
from services.gateway.logs import current_request_id
from services.gateway.quality.assignment import assign_model
from services.settings import Settings

JobKind = Literal[
    "prepare",
    "invite_email",
    "summarize",
    "partial_summary",
    "summary_email",
    "summary_calcom",
    "assess",
    "staff_alert",
    "broadcast_email",
    "reminder_email",
    "calcom_note_remove",
]
JobState = Literal["pending", "running", "delivered", "dead"]
INTAKE_QUEUE = "intake"
MODEL_QUEUE = "model"
SUMMARY_STATUSES: tuple[SummaryStatus, ...] = get_args(SummaryStatus)
REMINDER_MIN_LEAD_S = 3600  # a reminder due sooner than this after booking is not sent (the invite is fresh)
DONE_TTL_S = 24 * 3600  # a finished job's record; its done marker lives as long as the intake
_DONE = "jobs:done:{}"
_BY_TOKEN = "jobs:token:{}"
# Queue several jobs, each only if it is not done already, in one step: ``enqueue(k, a, count, ttl)`` for
# ``count`` jobs whose KEYS start after index k and ARGV after index a. Per job KEYS: its done marker, its
# intake's job list, then SAQ's keys (the queue's incomplete set, the job id, the queue's queued list, the
# job's abort id); per job ARGV: its entry in the intake's list, the job as SAQ stores it, its scheduled
# time; ``ttl``: the list's (s). Per job 1 when it is done already, 2 when SAQ has it queued, scheduled or
# running already (the part after the done check is SAQ 0.26's RedisQueue._enqueue script), 0 when it was
# queued now. Either way it is in its intake's list.
ENQUEUE_LUA = """
local function enqueue(k0, a0, count, ttl)
  local outcome = {}
  for j = 0, count - 1 do
    local k, a = k0 + j * 6, a0 + j * 3
    if redis.call('EXISTS', KEYS[k + 1]) == 1 then
      outcome[#outcome + 1] = 1
    else
      redis.call('SADD', KEYS[k + 2], ARGV[a + 1])
      redis.call('EXPIRE', KEYS[k + 2], ttl)
      if not redis.call('ZSCORE', KEYS[k + 3], KEYS[k + 4]) and redis.call('EXISTS', KEYS[k + 6]) == 0 then
        redis.call('SET', KEYS[k + 4], ARGV[a + 2])
        redis.call('ZADD', KEYS[k + 3], ARGV[a + 3], KEYS[k + 4])
        if ARGV[a + 3] == '0' then redis.call('RPUSH', KEYS[k + 5], KEYS[k + 4]) end
        outcome[#outcome + 1] = 0
      else
        outcome[#outcome + 1] = 2
      end
    end
  end
  return outcome
end
"""
# KEYS and ARGV: the jobs' (as above), then the list's ttl as the last ARGV
_ENQUEUE = ENQUEUE_LUA + "return enqueue(0, 0, #KEYS / 6, ARGV[#ARGV])"
_STATES: dict[Status, JobState] = {
    Status.NEW: "pending",
    Status.QUEUED: "pending",
    Status.ACTIVE: "running",
    Status.ABORTING: "running",
    Status.COMPLETE: "delivered",
    Status.FAILED: "dead",
    Status.ABORTED: "dead",
}
log = structlog.get_logger()


class JobArgs(msgspec.Struct, kw_only=True):
    """A job's arguments as stored in the queue. Summary jobs carry a snapshot of what to deliver and
    where, so the two channels are independent (Cal.com down for a day delays only the note)."""

    token: str
    course_slug: str = ""
    status: SummaryStatus | None = None  # summarize: which summary to write
    start_time: str | None = None  # partial_summary: the meeting time it was scheduled for
    summary: Summary | None = None  # summary_email / summary_calcom
    booking: Booking | None = None  # summary_email / summary_calcom
    reason: str | None = None  # staff_alert: distress | person
    note: str | None = None  # broadcast_email: the staff member's message
    sender: str | None = None  # broadcast_email: who sent it (their name)


class QueuedJob(msgspec.Struct, frozen=True, kw_only=True):
    """One job as the staff pages (and tests) see it."""

    id: str  # the job's key
    queue: str
    kind: str
    token: str
    state: JobState
    attempts: int
    max_attempts: int
    last_error: str | None
    updated_at: str
    scheduled_at: float | None = None  # epoch seconds, for a job that waits for its time
    summary: Summary | None = None
    booking: Booking | None = None


UNSTARTED_GRACE_S = 30.0  # how long a taken job may sit in the active list before it is marked active


class LenientRedisQueue(RedisQueue):
    """SAQ's Redis queue with two changes to what its sweep takes for an orphan.

    - A job record that cannot be decoded reads as missing: the sweep drops the id from its lists (the
      raw record stays under its key for inspection), so one corrupt job never stops the worker or the
      sweep of every other job.
    - A job in the active list that is not yet marked active is an orphan only when an earlier sweep
      already found it so at least ``UNSTARTED_GRACE_S`` ago. A worker moves a job into that list when it
      takes it and marks it active a moment later; SAQ's own sweep aborted and retried a job caught in
      between, so it ran twice (seen at worker start, when the first dequeues race the first sweep).
      A job a dead worker took and never started is swept by the next sweep (sweeps run once a minute);
      an active job whose worker stopped beating is swept at once, as in SAQ.
    """

    def __init__(self, redis: aioredis.Redis, name: str = "default") -> None:
        super().__init__(redis, name=name, dump=_dump)  # msgspec: the same JSON, several times faster
        self._list_active = self.redis.register_script(_SWEEP_LIST)
        # SAQ's sweep lists the active jobs with this script and sweeps what it returns: it gets the list
        # without the jobs still in their grace, and SAQ does the rest (abort, retry, clean-up, logs)
        self._cleanup_script = self._orphan_candidates  # type: ignore[assignment]

    async def _orphan_candidates(self, keys: list[str], args: list[int], client: aioredis.Redis) -> list[Any]:
        """SAQ's listing of the active jobs (empty while another worker holds the sweep lock), less each job
        taken but not started that no sweep has found so for ``UNSTARTED_GRACE_S`` yet."""
        id_jobs = await self._list_active(keys=keys, args=args, client=client)
        if not id_jobs:
            return []
        # "<job id>:<attempts>" -> when a sweep first found that attempt taken but not started (the
        # attempt count tells a job retried since from the one seen then)
        unstarted = self.namespace("unstarted")
        seen = {k: float(v) for k, v in (await client.hgetall(unstarted)).items()}
        now = time.time()
        candidates, waiting = [], {}
        for job_id, job_bytes in id_jobs:
            job = self.deserialize(job_bytes)
            if job is not None and job.status != Status.ACTIVE:
                attempt = b"%s:%d" % (job_id, job.attempts)
                first_seen = seen.get(attempt, now)
                if now - first_seen < UNSTARTED_GRACE_S:
                    waiting[attempt] = first_seen  # taken a moment ago, perhaps: the next sweep decides
                    continue
            candidates.append((job_id, job_bytes))
        async with client.pipeline(transaction=True) as pipe:
            pipe.delete(unstarted)
            for attempt, first_seen in waiting.items():
                pipe.hset(unstarted, attempt, first_seen)
            pipe.expire(unstarted, args[0] * 3)
            await pipe.execute()
        return candidates

    def serialize(self, job: Job) -> bytes | str:
        return self._dump(job_dict(job))

    def deserialize(
        self, payload: dict | str | bytes | None, status: Status | str | None = None
    ) -> Job | None:
        try:
            return super().deserialize(payload, status)
        except Exception as exc:  # any corruption: JSON, a missing field, another queue's job
            digest = hashlib.sha256(str(payload).encode()).hexdigest()[:12]
            log.error("job_undecodable", queue=self.name, error=type(exc).__name__, payload_sha=digest)
            return None

    async def ready(self, job: Job) -> tuple[list[str], bytes | str]:
        """What SAQ's ``enqueue`` does to a job before its script runs (the queue, the time, the status,
        the before-enqueue hooks); then the script's keys for it and the job as SAQ stores it."""
        if job.queue and job.queue.name != self.name:
            raise ValueError(f"Job {job} registered to a different queue")
        job.queue = self
        job.queued = saq_now()
        job.status = Status.QUEUED
        await self._before_enqueue(job)
        return [self._incomplete, job.id, self._queued, job.abort_id], self.serialize(job)


# ``Job.to_dict`` lists the dataclass's fields on every call: listed once here (name, default)
_JOB_FIELDS = tuple((f.name, f.default) for f in dataclasses.fields(Job))


def job_dict(job: Job) -> dict[str, Any]:
    """``Job.to_dict``'s dict (fields at their default left out, the queue by name, no empty meta)."""
    result: dict[str, Any] = {}
    for name, default in _JOB_FIELDS:
        value = getattr(job, name)
        try:
            if value == default:
                continue
        except ValueError:  # (SAQ's ``_safe_eq``: a value that cannot be compared is kept)
            pass
        if name == "meta" and not value:
            continue
        if name == "queue" and value:
            value = value.name
        result[name] = value
    return result


def _dump(job: Mapping[Any, Any]) -> bytes:
    """A job as SAQ stores it: JSON (read back with ``json.loads``, as SAQ's default dump would be)."""
    return msgspec.json.encode(job)


# SAQ's own sweep script: take the sweep lock, then list the active jobs (id, record)
_SWEEP_LIST = """
local id_jobs = {}
if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('SETEX', KEYS[1], ARGV[1], 1)
    for i, v in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
        id_jobs[i] = {v, redis.call('GET', v)}
    end
end
return id_jobs
"""


class Planned(NamedTuple):
    """A job to queue: its kind and what it is about (its key), its arguments, queue and time."""

    kind: JobKind
    about: tuple[str, ...]
    args: JobArgs
    queue: str = INTAKE_QUEUE
    at: float | None = None


class Batch(NamedTuple):
    """Jobs made ready for the enqueue script: its KEYS and ARGV for them (the list's ttl not included)."""

    planned: list[Planned]
    job_keys: list[str]
    jobs: list[Job]
    keys: list[str]
    args: list[bytes | str | int]


def job_key(kind: JobKind, *about: str) -> str:
    return ".".join([kind, *about])


def _bookkeeping_keys(planned: Planned, key: str) -> tuple[str, str]:
    return _DONE.format(key), _BY_TOKEN.format(planned.args.token)


def partial_due_at(settings: Settings, start_time: str, now: float | None = None) -> float:
    """``partial_before_meeting_s`` before the meeting; for a booking made later than that, halfway there."""
    now = time.time() if now is None else now
    start = parse_time(start_time).timestamp()
    due = start - settings.partial_before_meeting_s
    return due if due > now else now + max(0.0, start - now) / 2


class Jobs:
    """Queue adapter: enqueue by key, inspect, retry dead jobs, cancel an intake's jobs.

    Also the ``SummaryDelivery`` port: the chat hands a finished interview over with ``summary_ready``.
    """

    def __init__(self, redis: aioredis.Redis, settings: Settings, broker: aioredis.Redis) -> None:
        self._redis = redis
        self._settings = settings
        self.intake = LenientRedisQueue(broker, name=INTAKE_QUEUE)
        self.model = LenientRedisQueue(broker, name=MODEL_QUEUE)
        self._enqueue = broker.register_script(_ENQUEUE)  # sent as EVALSHA, loaded when Redis lacks it

    @property
    def queues(self) -> dict[str, LenientRedisQueue]:
        return {INTAKE_QUEUE: self.intake, MODEL_QUEUE: self.model}

    async def aclose(self) -> None:
        """Close the queues' connections; a Redis that is already gone must not break the shutdown."""
        for queue in self.queues.values():
            try:
                await queue.disconnect()
            except Exception:  # SAQ unsubscribes over the network first; without Redis that fails
                await queue.redis.aclose()

    # --- enqueue -----------------------------------------------------------------------------------

    async def enqueue(
        self, kind: JobKind, *about: str, args: JobArgs, queue: str = INTAKE_QUEUE, at: float | None = None
    ) -> str | None:
        """Queue a job (at epoch ``at``, or now); None when a job with its key is queued or already done."""
        (key,) = await self.enqueue_many([Planned(kind, about, args, queue, at)])
        return key

    async def enqueue_many(self, planned: Sequence[Planned]) -> list[str | None]:
        """``enqueue`` for several jobs (of either queue) in one round trip: one script skips the ones that
        are done, puts the others in their intakes' lists and queues them as SAQ's ``enqueue`` would.
        SAQ's own per-job log line is not written: ``job_enqueued`` / ``jobs_enqueued`` says it."""
        if not planned:
            return []
        batch = await self.batch(planned)
        outcomes = await self._enqueue(keys=batch.keys, args=[*batch.args, self._keep_s()])
        return self.queued(batch, outcomes)

    async def batch(self, planned: Sequence[Planned]) -> Batch:
        """What the enqueue script (``ENQUEUE_LUA``) takes for ``planned``, each job made ready as SAQ's
        ``enqueue`` would; ``queued`` reads the script's outcomes."""
        batch = Batch(list(planned), [job_key(p.kind, *p.about) for p in planned], [], [], [])
        request_id = current_request_id() or ""  # (read once: it copies and walks the whole context)
        for p, key in zip(planned, batch.job_keys, strict=True):
            job = self._job(p, key, request_id)
            saq_keys, stored = await self.queues[p.queue].ready(job)
            batch.jobs.append(job)
            batch.keys.extend([*_bookkeeping_keys(p, key), *saq_keys])
            batch.args.extend([f"{p.queue}/{key}", stored, job.scheduled])
        return batch

    def queued(
        self, batch: Batch, outcomes: Sequence[Any], note: dict[str, Any] | None = None
    ) -> list[str | None]:
        """The keys of the jobs the script queued now (None for one done or queued already), logged; with
        ``note``, the jobs queued go into it (as ``jobs``) for the caller's own line instead."""
        enqueued: list[dict[str, Any]] = []
        for p, job, outcome in zip(batch.planned, batch.jobs, outcomes, strict=True):
            if outcome:
                log.info("job_duplicate", job_id=job.key, kind=p.kind, reason=("", "done", "queued")[outcome])
                continue
            enqueued.append(
                {"job_id": job.key, "kind": p.kind, "queue": p.queue, "scheduled": job.scheduled or None}
            )
        if note is not None:
            note["jobs"] = enqueued
        elif len(enqueued) == 1:
            log.info("job_enqueued", **enqueued[0])
        elif enqueued:  # one line for the batch: each line is a flushed write to the log
            log.info("jobs_enqueued", jobs=enqueued)
        done_keys = {e["job_id"] for e in enqueued}
        return [key if key in done_keys else None for key in batch.job_keys]

    def keep_s(self) -> int:
        """How long a job's bookkeeping (its done marker, its intake's list) is kept."""
        return self._keep_s()

    def _job(self, planned: Planned, key: str, request_id: str) -> Job:
        attempts = self._max_attempts(planned.kind)
        at = planned.at
        return Job(
            function=planned.kind,
            kwargs=msgspec.to_builtins(planned.args),
            key=key,
            timeout=self._timeout_s(planned.kind),
            retries=attempts,
            ttl=self._keep_s(),
            retry_delay=self._settings.outbox_backoff_base_s,
            retry_backoff=self._settings.outbox_backoff_max_s,
            scheduled=math.ceil(at) if at and at > time.time() else 0,
            meta={"max_attempts": attempts, "request_id": request_id},
        )

    async def start_intake(self, record: IntakeRecord, *, fresh: bool = False) -> None:
        """Everything a new intake needs queued (``intake_jobs``). ``fresh``: the intake was created just
        now, so it has no jobs yet that these replace."""
        if not fresh:
            await self.drop(record.token, kinds={"partial_summary", "reminder_email"})
        await self.enqueue_many(self.intake_jobs(record))

    def intake_jobs(self, record: IntakeRecord) -> list[Planned]:
        """A new intake's jobs: the partial summary, the reminder, preparation, the invitation."""
        uid, args = record.booking.uid, JobArgs(token=record.token, course_slug=record.course_slug)
        planned = [self._partial(record), *self._reminder(record), Planned("prepare", (uid,), args)]
        if record.booking.student.email:
            planned.append(Planned("invite_email", (uid,), args))
        return planned

    async def schedule_reminder(self, record: IntakeRecord) -> None:
        """A reminder to a student who has not started the chat, ``reminder_before_s`` before the meeting.
        Keyed by the intake and the meeting time: it goes once (a moved meeting gets its own)."""
        await self.drop(record.token, kinds={"reminder_email"})
        await self.enqueue_many(self._reminder(record))

    def _reminder(self, record: IntakeRecord) -> list[Planned]:
        before, start = self._settings.reminder_before_s, record.booking.start_time
        due = parse_time(start).timestamp() - before
        if not before or not record.booking.student.email or due < time.time() + REMINDER_MIN_LEAD_S:
            return []
        args = JobArgs(token=record.token, course_slug=record.course_slug, start_time=start)
        about = str(int(parse_time(start).timestamp()))
        return [Planned("reminder_email", (record.token, about), args, at=due)]

    async def purge_for(self, record: IntakeRecord) -> int:
        """A cancellation: every job of the intake goes, finished ones too (their records hold summary
        snapshots), and if a summary reached the booking's Cal.com note, a job takes our block out."""
        uid = record.booking.uid
        noted = [await self.is_done(job_key("summary_calcom", uid, s)) for s in SUMMARY_STATUSES]
        dropped = await self.cancel_for(record.token)
        needles = [n.encode() for n in (record.token, record.booking.uid) if n]
        for queue in self.queues.values():
            async for key in self._redis.scan_iter(match=queue.job_id("*"), count=500):
                if any(n in key for n in needles):
                    await self._redis.delete(key)
                    dropped += 1
        if any(noted) and record.booking.booking_id is not None:
            booking = msgspec.structs.replace(record.booking, student=Person("", ""), notes="")
            args = JobArgs(token=record.token, course_slug=record.course_slug, booking=booking)
            await self.enqueue("calcom_note_remove", record.booking.uid, args=args)
        return dropped

    async def schedule_partial(self, record: IntakeRecord) -> None:
        """A partial (or no-intake) summary before the meeting, unless the interview finishes first."""
        await self.drop(record.token, kinds={"partial_summary"})
        await self.enqueue_many([self._partial(record)])

    def _partial(self, record: IntakeRecord) -> Planned:
        start = record.booking.start_time
        args = JobArgs(token=record.token, course_slug=record.course_slug, start_time=start)
        about = str(int(parse_time(start).timestamp()))
        return Planned(
            "partial_summary", (record.token, about), args, at=partial_due_at(self._settings, start)
        )

    async def summary_ready(self, token: str, booking_uid: str, *, escalated: bool) -> None:
        """The interview is over: write the final summary and deliver it (escalations skip the model)."""
        status: SummaryStatus = "escalated" if escalated else "complete"
        await self.drop(token, kinds={"partial_summary"})
        queue = INTAKE_QUEUE if escalated else MODEL_QUEUE
        await self.enqueue(
            "summarize", booking_uid, status, args=JobArgs(token=token, status=status), queue=queue
        )

    async def deliver_summary(self, record: IntakeRecord, summary: Summary, *, calcom: bool = True) -> None:
        """Both channels for one summary, each keyed by the booking and the summary's status."""
        args = JobArgs(
            token=record.token, course_slug=record.course_slug, summary=summary, booking=record.booking
        )
        about = (record.booking.uid, summary.status)
        await self.enqueue("summary_email", *about, args=args)
        if calcom:
            await self.enqueue("summary_calcom", *about, args=args)

    async def assess(self, record: IntakeRecord, rubric_version: str) -> None:
        """The rubric's assessment of a finished intake, once per rubric version."""
        args = JobArgs(token=record.token, course_slug=record.course_slug)
        await self.enqueue("assess", record.booking.uid, rubric_version, args=args)

    def assign_model(self, record: IntakeRecord) -> bool:
        """Write the intake's model (A or B) on a record that has none; False when it has one."""
        if record.model:
            return False
        record.model = assign_model(self._settings, record.token)
        return True

    async def write_note(self, record: IntakeRecord, summary: Summary) -> None:
        """Only the Cal.com note (after a reschedule, onto the new booking)."""
        args = JobArgs(
            token=record.token, course_slug=record.course_slug, summary=summary, booking=record.booking
        )
        await self.enqueue("summary_calcom", record.booking.uid, summary.status, args=args)

    async def alert_staff(self, token: str, booking_uid: str, reason: str, *, key: str | None = None) -> None:
        """Email the course's staff at once (distress, or the student asked for a person): once per
        booking and ``key`` (the reason; a request after the staff acknowledged one has its own key)."""
        await self.enqueue(
            "staff_alert", booking_uid, key or reason, args=JobArgs(token=token, reason=reason)
        )

    async def broadcast(self, record: IntakeRecord, note: str, sender: str, broadcast_id: str) -> str | None:
        """One student's copy of a staff broadcast (running late, room changed)."""
        args = JobArgs(token=record.token, course_slug=record.course_slug, note=note, sender=sender)
        return await self.enqueue("broadcast_email", record.booking.uid, broadcast_id, args=args)

    # --- idempotency -------------------------------------------------------------------------------

    async def is_done(self, key: str) -> bool:
        return bool(await self._redis.exists(_DONE.format(key)))

    async def mark_done(self, key: str) -> None:
        await self._redis.set(_DONE.format(key), b"1", ex=self._keep_s())

    # --- inspection and staff actions ----------------------------------------------------------------

    async def get(self, job_id: str) -> QueuedJob | None:
        job = await self._find(job_id)
        return self.view(job) if job else None

    async def jobs_for(self, token: str) -> list[QueuedJob]:
        """The intake's unfinished jobs (pending, running, dead), oldest first."""
        found = [await self._member(m) for m in sorted(await self._redis.smembers(_BY_TOKEN.format(token)))]
        jobs = [j for j in found if j is not None and j.status != Status.COMPLETE]
        return [self.view(j) for j in sorted(jobs, key=lambda j: (j.queued, j.key))]

    async def dead_letters(self, limit: int = 100) -> list[QueuedJob]:
        """Dead jobs (failed for good, or aborted), most recent first."""
        dead = [
            job
            for queue in self.queues.values()
            async for job in queue.iter_jobs(statuses=[Status.FAILED, Status.ABORTED])
        ]
        dead.sort(key=lambda j: j.completed or j.touched, reverse=True)
        return [self.view(j) for j in dead[:limit]]

    async def requeue(self, job_id: str) -> bool:
        """Give a dead job a fresh set of attempts, due now; False if it is not dead."""
        job = await self._find(job_id)
        if job is None or _STATES[job.status] != "dead":
            return False
        job.attempts, job.retries = 0, int(job.meta.get("max_attempts") or job.retries)
        job.error, job.result, job.scheduled = None, None, 0
        job.started = job.completed = 0
        job.meta.pop("error", None)
        queue = job.get_queue()
        await self._redis.sadd(_BY_TOKEN.format(_token_of(job)), f"{queue.name}/{job.key}")
        return await queue.enqueue(job) is not None

    async def cancel_for(self, token: str) -> int:
        """Drop the intake's waiting and dead jobs (their snapshots go too); a running one checks the
        intake itself before it delivers anything."""
        return await self.drop(token)

    async def drop(self, token: str, kinds: Collection[str] | None = None) -> int:
        dropped = 0
        for member in await self._redis.smembers(_BY_TOKEN.format(token)):
            job = await self._member(member)
            if job is None or (kinds is not None and job.function not in kinds):
                continue
            if _STATES[job.status] in ("pending", "dead"):
                await self._delete(job, member)
                dropped += 1
        return dropped

    async def finished(self, job: Job) -> None:
        """After a run (the worker's hook): a delivered job's record is kept a day and leaves its intake's
        list; a dead one stays (with its snapshot) until staff retry it or retention ends."""
        if job.status == Status.COMPLETE:
            await self._redis.expire(job.id, DONE_TTL_S)
            await self._redis.srem(_BY_TOKEN.format(_token_of(job)), f"{job.get_queue().name}/{job.key}")

    async def retry_delay_s(self, job: Job) -> float | None:
        """When a retried job runs next (SAQ picks the delay with backoff and jitter)."""
        queue = job.get_queue()
        due = await self._redis.zscore(queue.namespace("incomplete"), job.id)  # type: ignore[attr-defined]
        return None if due is None else max(0.0, due - job.touched / 1000)

    def view(self, job: Job) -> QueuedJob:
        args = _args(job)
        return QueuedJob(
            id=job.key,
            queue=job.get_queue().name,
            kind=job.function,
            token=args.token if args else "",
            state=_STATES[job.status],
            attempts=job.attempts,
            max_attempts=int(job.meta.get("max_attempts") or job.retries),
            last_error=_last_error(job),
            updated_at=_iso(max(job.touched, job.completed, job.queued)),
            scheduled_at=float(job.scheduled) if job.scheduled else None,
            summary=args.summary if args else None,
            booking=args.booking if args else None,
        )

    # --- internals ---------------------------------------------------------------------------------

    async def _find(self, job_id: str) -> Job | None:
        if not job_id or len(job_id) > 200:
            return None
        for queue in self.queues.values():
            job = await queue.job(job_id)
            if job is not None:
                return job
        return None

    async def _member(self, member: bytes | str) -> Job | None:
        text = member.decode() if isinstance(member, bytes) else member
        name, _, key = text.partition("/")
        queue = self.queues.get(name)
        return await queue.job(key) if queue else None

    async def _delete(self, job: Job, member: bytes | str) -> None:
        queue = job.get_queue()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.lrem(queue.namespace("queued"), 0, job.id)  # type: ignore[attr-defined]
            pipe.zrem(queue.namespace("incomplete"), job.id)  # type: ignore[attr-defined]
            pipe.delete(job.id)
            pipe.srem(_BY_TOKEN.format(_token_of(job)), member)
            await pipe.execute()
        log.info("job_dropped", job_id=job.key, kind=job.function)

    def _max_attempts(self, kind: JobKind) -> int:
        # a failed preparation or summary has a fallback, so retrying it for hours buys nothing
        if kind in ("prepare", "summarize", "partial_summary", "assess"):
            return 3
        return self._settings.outbox_max_attempts

    def _timeout_s(self, kind: JobKind) -> int:
        if kind == "summarize":
            return math.ceil(self._settings.inference_timeout_s * 3 + 30)
        return 120

    def _keep_s(self) -> int:
        return max(7, self._settings.retention_days) * 24 * 3600


def _args(job: Job) -> JobArgs | None:
    try:
        return msgspec.convert(job.kwargs or {}, JobArgs)
    except msgspec.ValidationError:
        return None


def _token_of(job: Job) -> str:
    token: Any = (job.kwargs or {}).get("token", "")
    return str(token)


def _last_error(job: Job) -> str | None:
    """Our own log-safe note when the job set one, else the last line of SAQ's traceback."""
    note = job.meta.get("error")
    if note:
        return str(note)[:300]
    if not job.error:
        return None
    return job.error.strip().splitlines()[-1][:300]


def _iso(epoch_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_ms / 1000)) if epoch_ms else ""


async def finish_setup(store: IntakeStore, jobs: Jobs, token: str) -> None:
    """Write the intake's model on it and queue its jobs (each idempotent by key), then clear its *setup
    pending* mark: an intake whose creation stopped half-way (a delivery creates an intake with its jobs in
    one step, so only a step that failed in the middle, or an older gateway, leaves one)."""
    record = await store.get(token)
    if record is not None and not record.model and record.status != "cancelled":
        record = await store.update(token, jobs.assign_model) or record
    if record is not None and record.status != "cancelled":
        await jobs.start_intake(record)
    await store.setup_done(token)
