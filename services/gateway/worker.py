"""The delivery worker: ``python -m services.gateway.worker`` (supervisord program ``worker``).

It loops: move due partial summaries into the outbox, claim due jobs, run each with a timeout, then wait
on Redis (BLPOP on the outbox's wake list) for at most ``worker_poll_s``. SIGTERM sets a stop event; the
jobs in hand finish (or time out) and the loop ends. Tests run it in-process: ``await run_worker(services,
stop)``. Logs: ``job_delivered`` / ``job_retry_scheduled`` / ``job_dead`` with ids, kinds and attempts,
never transcript text or email addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

import structlog

from services.gateway.container import Services, open_services
from services.gateway.delivery.jobs import Permanent, describe, enqueue_due_partials, job_timeout_s, run_job
from services.gateway.delivery.outbox import Job, Outbox
from services.gateway.logs import configure_logging
from services.settings import SettingsError, load_settings

BATCH = 8
CONCURRENCY = 4
MODEL_KINDS = frozenset({"summarize"})  # jobs that wait on the model: a minute or more each on a CPU
MODEL_SLOTS = CONCURRENCY - 1  # one slot always left for invitations and deliveries
DEFER_S = 2.0  # a model job claimed while the model slots are full is due again this much later
STOP_GRACE_S = 8.0  # supervisord waits 10 s before SIGKILL
log = structlog.get_logger()


async def run_worker(services: Services, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set; a failing tick (Redis restarting, say) is logged and retried.

    Jobs run as tasks (at most ``CONCURRENCY``), and model summaries take at most ``MODEL_SLOTS`` of
    them: one claimed while those are full is handed back for ``DEFER_S`` (no attempt counted), so
    students finishing together never hold up the next student's invitation for minutes. On stop, jobs
    in hand get ``STOP_GRACE_S`` to finish; an unfinished one is not lost: its lease runs out and it is
    claimed again after a restart.
    """
    outbox = Outbox(services.redis, services.settings)
    inflight: set[asyncio.Task[None]] = set()
    on_model: set[asyncio.Task[None]] = set()  # the model summaries among them
    log.info("worker_started", poll_s=services.settings.worker_poll_s, concurrency=CONCURRENCY)
    while not stop.is_set():
        try:
            await enqueue_due_partials(services, outbox)
            free = CONCURRENCY - len(inflight)
            jobs = await outbox.claim_due(free) if free > 0 else []
            for job in jobs:
                model_job = job.kind in MODEL_KINDS
                if model_job and len(on_model) >= MODEL_SLOTS:
                    await outbox.defer(job, DEFER_S)
                    continue
                task = asyncio.create_task(_run_one(services, outbox, job))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
                if model_job:
                    on_model.add(task)
                    task.add_done_callback(on_model.discard)
            if not jobs and not stop.is_set():
                await outbox.wait_for_work(services.settings.worker_poll_s)
        except Exception as exc:  # keep the worker alive through any outage; supervisord is the backstop
            log.error("worker_tick_failed", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), services.settings.worker_poll_s)
    if inflight:
        await asyncio.wait(inflight, timeout=STOP_GRACE_S)
    log.info("worker_stopped", unfinished=sum(1 for t in inflight if not t.done()))


async def run_once(services: Services, outbox: Outbox) -> bool:
    """One pass over what is due; returns True when a full batch ran (more may be waiting)."""
    await enqueue_due_partials(services, outbox)
    jobs = await outbox.claim_due(BATCH)
    await asyncio.gather(*(_run_one(services, outbox, job) for job in jobs))
    return len(jobs) >= BATCH


async def _run_one(services: Services, outbox: Outbox, job: Job) -> None:
    started = time.perf_counter()
    try:
        note = await asyncio.wait_for(run_job(services, outbox, job), job_timeout_s(services, job))
    except Permanent as exc:
        await outbox.bury(job, describe(exc))
        log.warning("job_dead", job_id=job.id, kind=job.kind, attempts=job.attempts + 1, error=describe(exc))
    except Exception as exc:  # every other failure is worth another attempt, with backoff
        delay = await outbox.retry_or_bury(job, describe(exc))
        if delay is None:
            log.warning("job_dead", job_id=job.id, kind=job.kind, attempts=job.attempts, error=describe(exc))
        else:
            log.info(
                "job_retry_scheduled",
                job_id=job.id,
                kind=job.kind,
                attempt=job.attempts,
                delay_s=round(delay, 3),
                error=describe(exc),
            )
    else:
        await outbox.mark_delivered(job)
        ms = round((time.perf_counter() - started) * 1000)
        log.info("job_delivered", job_id=job.id, kind=job.kind, attempts=job.attempts + 1, ms=ms, note=note)


async def _serve() -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    # httpx logs every request URL at INFO, and Cal.com API v1 carries the API key in the query string
    logging.getLogger("httpx").setLevel(logging.WARNING)
    services = await open_services(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await run_worker(services, stop)
    finally:
        await services.aclose()


def main() -> None:
    try:
        asyncio.run(_serve())
    except SettingsError as exc:
        raise SystemExit(f"worker: configuration error: {exc}") from None


if __name__ == "__main__":
    main()
