"""The job queue (SAQ) on a real Redis with the real worker: keys, backoff, dead jobs and their retry,
cancellation, scheduled jobs, a corrupt job, and a job that outlives its timeout."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from saq.job import Job
from structlog.testing import capture_logs

from services.gateway import locks, worker
from services.gateway.container import Services
from services.gateway.delivery import jobs
from services.gateway.delivery.queue import MODEL_QUEUE, JobArgs, Jobs, Planned, job_dict, partial_due_at
from services.gateway.intake.models import Booking, IntakeRecord, Person
from services.gateway.intake.store import parse_time
from tests.gateway.delivery.harness import (
    Gateway,
    make_summary,
    open_gateway,
    wait_for,
    work_until,
    working,
)


def _args(token: str = "tok") -> JobArgs:
    return JobArgs(token=token)


def _summary_args() -> JobArgs:
    booking = Booking(
        uid="b1",
        start_time="2026-12-03T15:00:00Z",
        organizer=Person("Dr. Ana Rivera", "ana.rivera@univ.example.edu"),
        student=Person("Sam Lee", "sam.lee@student.example.edu"),
    )
    record = IntakeRecord(token="tok", booking=booking, course_slug="writ101", created_at="", updated_at="")
    return JobArgs(token="tok", summary=make_summary(record), booking=booking)


async def _state(services: Services, key: str) -> str:
    job = await services.jobs.get(key)
    return job.state if job else "gone"


async def test_backoff_grows_exponentially_with_jitter_and_a_ceiling(gw: Gateway) -> None:
    """Retry n waits a random share of base*2^(n-1), capped at ``outbox_backoff_max_s`` (0.2 s here)."""
    key = await gw.services.jobs.enqueue("summary_calcom", "b1", "complete", args=_args())
    assert key is not None
    job = await gw.services.jobs.intake.job(key)
    assert job is not None
    for attempts, ceiling in [(1, 0.05), (2, 0.1), (3, 0.2), (6, 0.2)]:
        job.attempts = attempts
        delays = {job.next_retry_delay() for _ in range(50)}
        assert all(0 <= d <= ceiling for d in delays)
        assert len(delays) > 1, "jitter spreads retries"


async def test_a_key_is_queued_once_and_a_done_key_never_again(gw: Gateway) -> None:
    """The same kind and subject twice is one job; once its effect is done, a late copy is refused."""
    queue = gw.services.jobs
    first = await queue.enqueue("invite_email", "b1", args=_args())
    assert first == "invite_email.b1"
    assert await queue.enqueue("invite_email", "b1", args=_args()) is None
    assert [j.id for j in await queue.jobs_for("tok")] == [first]
    await queue.mark_done("invite_email.b2")
    assert await queue.enqueue("invite_email", "b2", args=_args()) is None
    assert [j.id for j in await queue.jobs_for("tok")] == [first]


async def test_one_batch_over_both_queues_skips_the_done_and_the_queued_and_queues_the_rest(
    gw: Gateway,
) -> None:
    """A batch is one Redis step for both queues: each job gets its own answer, in order."""
    queue = gw.services.jobs
    assert await queue.enqueue("invite_email", "queued", args=_args()) == "invite_email.queued"
    await queue.mark_done("prepare.done")
    planned = [
        Planned("prepare", ("done",), _args()),
        Planned("invite_email", ("queued",), _args()),
        Planned("summarize", ("new", "complete"), _args(), queue=MODEL_QUEUE),
        Planned("invite_email", ("new",), _args(), at=time.time() + 600),
    ]
    with capture_logs() as logs:
        keys = await queue.enqueue_many(planned)
    assert keys == [None, None, "summarize.new.complete", "invite_email.new"]
    duplicates = {e["job_id"]: e["reason"] for e in logs if e["event"] == "job_duplicate"}
    assert duplicates == {"prepare.done": "done", "invite_email.queued": "queued"}
    summarize, later = await queue.get("summarize.new.complete"), await queue.get("invite_email.new")
    assert summarize is not None and (summarize.queue, summarize.state) == (MODEL_QUEUE, "pending")
    assert later is not None and later.scheduled_at is not None and later.scheduled_at > time.time() + 500
    listed = {j.id for j in await queue.jobs_for("tok")}
    assert listed == {"invite_email.queued", "summarize.new.complete", "invite_email.new"}


async def test_a_job_is_stored_as_saq_would_store_it(gw: Gateway) -> None:
    """The queue writes a job's record with its fields listed once (``job_dict``): the same dict as SAQ's
    ``Job.to_dict`` for a new job, a scheduled one, a retried one with meta and an error, a finished one."""
    queue = gw.services.jobs.intake
    plain = Job("prepare", kwargs={"token": "t"}, key="prepare.x")
    ready = Job("invite_email", kwargs={"token": "t"}, key="invite_email.x", queue=queue, scheduled=99)
    retried = Job(
        "summarize",
        key="summarize.x",
        queue=gw.services.jobs.model,
        attempts=2,
        error="Traceback\nValueError",
        meta={"max_attempts": 3, "request_id": "r"},
        retry_backoff=0.5,
    )
    finished = Job("assess", key="assess.x", result={"score": 1}, completed=5, status="complete", meta={})
    for job in (plain, ready, retried, finished):
        assert job_dict(job) == job.to_dict()
        assert queue.serialize(job) == queue._dump(job.to_dict())


async def test_a_job_for_later_waits_while_a_job_for_now_runs(gw: Gateway) -> None:
    """A job scheduled a minute ahead stays pending while the worker runs one that is due."""
    queue = gw.services.jobs
    later = await queue.enqueue("invite_email", "later", args=_args(), at=time.time() + 60)
    now = await queue.enqueue("invite_email", "now", args=_args())
    assert later and now

    async def ran() -> bool:
        return await _state(gw.services, now) == "delivered"

    await work_until(gw.services, ran)
    waiting = await queue.get(later)
    assert waiting is not None and waiting.state == "pending" and waiting.attempts == 0
    assert waiting.scheduled_at is not None and waiting.scheduled_at > time.time() + 50


async def test_failures_back_off_then_the_job_is_dead_and_a_requeue_revives_it(
    tmp_path: Path, redis_url: str
) -> None:
    """SMTP unreachable: every attempt fails (4 in the test settings), then the job is dead with a
    readable error; requeueing gives it fresh attempts, due at once, and takes it off the dead list."""
    async with open_gateway(tmp_path, redis_url, smtp_host="127.0.0.1", smtp_port=9) as gw:
        queue = gw.services.jobs
        key = await queue.enqueue("summary_email", "b1", "complete", args=_summary_args())
        assert key is not None

        async def dead() -> bool:
            return bool(await queue.dead_letters())

        await work_until(gw.services, dead, timeout=30)
        (job,) = await queue.dead_letters()
        assert (job.id, job.state, job.attempts, job.max_attempts) == (key, "dead", 4, 4)
        assert job.last_error == "EmailError: smtp ConnectionRefusedError"
        assert job.summary is not None and job.summary.booking_uid == "b1", "the snapshot is kept"
        assert await queue.requeue(key)
        revived = await queue.get(key)
        assert revived is not None
        assert (revived.state, revived.attempts, revived.last_error) == ("pending", 0, None)
        assert await queue.dead_letters() == []
        assert not await queue.requeue(key), "only a dead job can be requeued"


async def test_a_permanent_failure_is_dead_after_one_attempt(gw: Gateway) -> None:
    """A summary job without a summary cannot succeed by retrying: dead at the first attempt."""
    queue = gw.services.jobs
    key = await queue.enqueue("summary_email", "b1", "complete", args=_args())

    async def dead() -> bool:
        return await _state(gw.services, key or "") == "dead"

    await work_until(gw.services, dead)
    job = await queue.get(key or "")
    assert job is not None and job.attempts == 1 and job.last_error == "summary job without a summary"


async def test_cancel_for_drops_pending_and_dead_jobs_of_one_intake_only(gw: Gateway) -> None:
    queue = gw.services.jobs
    mine = await queue.enqueue("summary_email", "a", "complete", args=_args("tok-a"))
    dead = await queue.enqueue("summary_calcom", "a", "complete", args=_args("tok-a"))
    other = await queue.enqueue("summary_email", "b", "complete", args=_args("tok-b"))
    assert mine and dead and other
    job = await queue.intake.job(dead)
    assert job is not None
    await job.finish(job.status.FAILED, error="down")
    assert await queue.cancel_for("tok-a") == 2
    assert await queue.get(mine) is None and await queue.get(dead) is None
    assert [j.id for j in await queue.jobs_for("tok-b")] == [other]
    assert await queue.dead_letters() == []


def test_partial_due_time_is_before_the_meeting_or_halfway_for_late_bookings(gw: Gateway) -> None:
    """Due ``partial_before_meeting_s`` (2 h) before; a booking made less than 2 h ahead: halfway there."""
    now = 1_790_000_000.0  # 2026-09-21, well before the meeting
    start = parse_time("2027-01-15T08:00:00Z").timestamp()
    assert partial_due_at(gw.settings, "2027-01-15T08:00:00Z", now=now) == start - 7200
    soon = now + 3600
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(soon))
    assert partial_due_at(gw.settings, iso, now=now) == now + 1800


async def test_a_corrupt_job_does_not_stop_the_worker(gw: Gateway) -> None:
    """An undecodable job record in the queue is skipped (and swept away); the next job still runs."""
    queue = gw.services.jobs.intake
    bad_id = queue.job_id("garbage")
    await gw.services.redis.set(bad_id, b"{not json")
    await gw.services.redis.rpush(queue.namespace("queued"), bad_id)
    key = await gw.services.jobs.enqueue("invite_email", "b1", args=_args())

    async def ran() -> bool:
        return await _state(gw.services, key or "") == "delivered"

    await work_until(gw.services, ran)
    await gw.services.redis.delete(queue.namespace("sweep"))  # SAQ sweeps once a minute: now, here
    await queue.sweep()
    listed = [
        *await gw.services.redis.lrange(queue.namespace("queued"), 0, -1),
        *await gw.services.redis.lrange(queue.namespace("active"), 0, -1),
    ]
    assert bad_id.encode() not in listed, "the sweep dropped the corrupt id from the queue's lists"
    assert await gw.services.redis.get(bad_id) == b"{not json", "kept for the operator to inspect"


async def test_a_job_past_its_timeout_is_cancelled_before_its_retry_runs(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old outbox let a summary outlive its lease and run twice at once. Here the worker cancels
    a job at its timeout, and the retry starts only after the first run has stopped."""
    running: list[str] = []
    events: list[str] = []
    overlap = False

    async def slow(services: Services, args: JobArgs) -> str:
        nonlocal overlap
        overlap = overlap or bool(running)
        running.append("run")
        events.append("start")
        try:
            if len(events) == 1:
                await asyncio.sleep(30)  # the first attempt hangs past its 1-second timeout
            return "done"
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        finally:
            running.pop()

    monkeypatch.setitem(jobs.RUNNERS, "invite_email", slow)
    monkeypatch.setattr(Jobs, "_timeout_s", lambda self, kind: 1)
    key = await gw.services.jobs.enqueue("invite_email", "b1", args=_args())

    async def done() -> bool:
        return await _state(gw.services, key or "") == "delivered"

    await work_until(gw.services, done, timeout=30)
    assert events == ["start", "cancelled", "start"] and not overlap  # two runs, one after the other
    job = await gw.services.jobs.get(key or "")
    # SAQ's counter can also count the timed-out run's clean-up when it lands after the retry finished
    # (seen: delivered at attempt 2, stored as 3 a second later); the runs themselves are counted above
    assert job is not None and job.state == "delivered" and job.attempts >= 2


async def test_a_job_that_ignores_cancellation_does_not_hold_the_stop(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job still running after the grace, and deaf to cancellation, cannot keep the worker from
    stopping (supervisord would kill it): the stop returns and says where that job was waiting."""
    started, release = asyncio.Event(), asyncio.Event()

    async def deaf(services: Services, args: JobArgs) -> str:
        started.set()
        while not release.is_set():
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                continue
        return "done"

    monkeypatch.setitem(jobs.RUNNERS, "invite_email", deaf)
    monkeypatch.setattr(worker, "STOP_GRACE_S", 0.2)
    await gw.services.jobs.enqueue("invite_email", "b1", args=_args())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run_worker(gw.services, stop))
    try:
        await asyncio.wait_for(started.wait(), 15)
        with capture_logs() as logs:
            stop.set()
            began = time.monotonic()
            await asyncio.wait_for(asyncio.shield(task), 10)
        assert time.monotonic() - began < 0.2 + worker.CANCEL_GRACE_S + 1
        stuck = next(e for e in logs if e["event"] == "worker_stop_stuck")
        assert any("deaf" in where for where in stuck["tasks"]), stuck
    finally:
        release.set()
        await asyncio.sleep(0.2)


async def test_a_copy_of_a_running_job_waits_and_then_finds_it_done(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While ``jobs:running:<key>`` is held (a copy running elsewhere, e.g. re-queued by SAQ's sweep),
    this copy does nothing and is retried; once the holder marked the key done, the retry skips."""
    effects: list[str] = []

    async def send(services: Services, args: JobArgs) -> str:
        effects.append("sent")
        return "sent"

    monkeypatch.setitem(jobs.RUNNERS, "invite_email", send)
    key = await gw.services.jobs.enqueue("invite_email", "b1", args=_args())
    assert key is not None
    held = await locks.acquire(gw.services.redis, f"jobs:running:{key}", ttl_s=30)
    assert held is not None
    async with working(gw.services):

        async def retried() -> bool:
            job = await gw.services.jobs.get(key)
            return job is not None and job.attempts >= 1 and job.state == "pending"

        await wait_for(retried)
        assert effects == [] and (await gw.services.jobs.get(key)).last_error == (  # type: ignore[union-attr]
            "another copy of this job is running"
        )
        effects.append("sent elsewhere")
        await gw.services.jobs.mark_done(key)
        await held.release()

        async def finished() -> bool:
            return await _state(gw.services, key) == "delivered"

        await wait_for(finished, timeout=30)
    assert effects == ["sent elsewhere"], "the copy never ran the effect a second time"
    stored: Job | None = await gw.services.jobs.intake.job(key)
    assert stored is not None and stored.result == "skipped: already done"


async def test_the_sweep_leaves_a_job_just_taken_for_the_next_sweep(gw: Gateway) -> None:
    """A worker moves a job into the active list and marks it active a moment later. A sweep that finds
    it in between must not take it for an orphan (SAQ's own sweep aborted and retried it: it ran twice);
    a later sweep that finds the same attempt still not started does sweep it (its worker died)."""
    redis, queue = gw.services.redis, gw.services.jobs.intake
    key = await gw.services.jobs.enqueue("invite_email", "b1", args=_args())
    job_id = queue.job_id(key or "")
    assert await redis.lmove(queue.namespace("queued"), queue.namespace("active")) == job_id.encode()

    async def sweep() -> list[str]:
        await redis.delete(queue.namespace("sweep"))  # SAQ sweeps once a minute: now, here
        return await queue.sweep(abort=0.1)

    assert await sweep() == [], "a job taken a moment ago is not an orphan"
    assert await sweep() == [], "nor at the next sweep within the grace"
    assert await redis.lrange(queue.namespace("active"), 0, -1) == [job_id.encode()]
    job = await queue.job(key or "")
    assert job is not None and job.status == "queued" and job.attempts == 0

    unstarted = queue.namespace("unstarted")
    (attempt,) = await redis.hkeys(unstarted)
    await redis.hset(unstarted, attempt, time.time() - 31)  # found so by a sweep half a minute ago
    assert await sweep() == [job_id], "the same attempt still not started: its worker is gone"
    job = await queue.job(key or "")
    assert job is not None and job.status == "queued", "retried"
    assert await redis.lrange(queue.namespace("active"), 0, -1) == []
    assert await redis.zscore(queue.namespace("incomplete"), job_id) is not None, "waits for its retry"
    assert not await redis.exists(unstarted), "nothing left waiting"
