"""The job worker: ``python -m services.gateway.worker`` (supervisord program ``worker``).

Two SAQ workers in one process, one per queue (see ``delivery/queue.py``): ``intake`` runs up to
``INTAKE_CONCURRENCY`` jobs at once (invitations, preparation, deliveries, partial summaries, and the
``finish_setups`` cron every minute); ``model`` runs up to ``MODEL_CONCURRENCY`` complete-intake summaries.
Students finishing together therefore never hold up the next student's invitation: it is on the other
queue, with slots of its own. SAQ moves retries and scheduled jobs into the queue every second, enforces
each job's timeout (the job is cancelled, then retried), and its sweep re-queues a job whose worker died.

Both share one ``Services`` (built once here, put into every job's context). SIGTERM stops both; a job in
hand gets ``STOP_GRACE_S`` to finish, else it is cancelled and retried after the restart. Logs:
``job_delivered`` / ``job_retry_scheduled`` / ``job_dead`` with the job's key, kind and attempts, and the
request id of the request that queued it, never transcript text or email addresses.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from saq.job import CronJob, Job, Status
from saq.queue.redis import RedisQueue
from saq.worker import Worker

from services.analytics import weekly
from services.gateway import live, metrics, privacy
from services.gateway.container import Services, open_services
from services.gateway.delivery import jobs
from services.gateway.logs import configure_logging
from services.settings import SettingsError, load_settings

INTAKE_CONCURRENCY = 4
MODEL_CONCURRENCY = 3  # model summaries: a minute or more each on a CPU, on their own queue
STOP_GRACE_S = 8  # supervisord waits 10 s before SIGKILL
CANCEL_GRACE_S = 1.5  # then SAQ cancels what is left; on Python 3.11 that waits for every task to obey
SETUP_CRON = "* * * * *"
log = structlog.get_logger()


def build_workers(services: Services) -> list[Worker[Any]]:
    """The two SAQ workers over the services' queues; every job sees ``ctx["services"]``."""
    settings = services.settings
    return [
        _worker(
            services,
            services.jobs.intake,
            INTAKE_CONCURRENCY,
            [
                CronJob(jobs.finish_setups, SETUP_CRON),
                CronJob(privacy.retention_cron, privacy.RETENTION_CRON),
                CronJob(weekly.report_job, settings.analytics_report_cron),
            ],
        ),
        _worker(services, services.jobs.model, MODEL_CONCURRENCY, []),
    ]


def _worker(services: Services, queue: RedisQueue, concurrency: int, cron: list[CronJob[Any]]) -> Worker[Any]:
    async def startup(ctx: dict[str, Any]) -> None:
        ctx["services"] = services

    async def before(ctx: dict[str, Any]) -> None:
        job: Job = ctx["job"]
        request_id = job.meta.get("request_id") or f"job-{job.key}"[:64]
        structlog.contextvars.bind_contextvars(request_id=request_id)

    async def after(ctx: dict[str, Any]) -> None:
        await _report(services, ctx["job"])

    worker: Worker[Any] = _GracefulWorker(
        queue,
        functions=[(kind, _job_function(kind)) for kind in jobs.RUNNERS],
        concurrency=concurrency,
        cron_jobs=cron,
        startup=startup,
        before_process=before,
        after_process=after,
        shutdown_grace_period_s=0,  # the grace for jobs in hand is ``_GracefulWorker.stop``'s
        dequeue_timeout=services.settings.worker_poll_s,
    )
    worker.SIGNALS = []  # one SIGTERM handler for both workers: ``_serve``'s
    return worker


class _GracefulWorker(Worker[Any]):
    """SAQ's worker, stopping as soon as the jobs in hand are done (at most ``STOP_GRACE_S``).

    SAQ's own grace period waits for every task, its idle upkeep loops included (the sweep sleeps a
    minute), so every stop would take the whole grace period; here only running jobs are waited for,
    and the rest is cancelled at once (a job still running then is retried after the restart).

    SAQ's cancellation has no hard limit here (``asyncio.wait_for`` waits for a cancelled task to end),
    so a task that does not end when cancelled would hold the stop for ever: after ``CANCEL_GRACE_S``
    the stop returns anyway and logs where each such task is waiting (``worker_stop_stuck``).
    """

    async def stop(self) -> None:
        self.event.set()
        deadline = asyncio.get_running_loop().time() + STOP_GRACE_S
        while self.job_task_contexts and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        tasks = [*self.tasks, *(c["task"] for c in self.job_task_contexts.values())]
        stopping = asyncio.ensure_future(super().stop())
        done, _ = await asyncio.wait({stopping}, timeout=CANCEL_GRACE_S)
        if not done:
            stuck = [_waiting_at(t) for t in tasks if not t.done()]
            log.warning("worker_stop_stuck", queue=self.queue.name, tasks=stuck)


def _waiting_at(task: asyncio.Task[Any]) -> str:
    """Where a task is suspended: the innermost function outside asyncio and SAQ, as ``name (file:line)``."""
    where = task.get_name()
    coro: Any = task.get_coro()
    while coro is not None and (frame := getattr(coro, "cr_frame", None)) is not None:
        path = frame.f_code.co_filename
        if "/asyncio/" not in path and "/saq/" not in path:
            where = f"{frame.f_code.co_qualname} ({path.rsplit('/', 1)[-1]}:{frame.f_lineno})"
        coro = getattr(coro, "cr_await", None)
    return where


def _job_function(kind: str) -> Callable[..., Awaitable[str]]:
    async def run(ctx: jobs.JobContext, **kwargs: Any) -> str:
        return await jobs.run(ctx, kind, kwargs)

    run.__qualname__ = kind
    return run


async def _report(services: Services, job: Job) -> None:
    """One log line per run, and the queue's bookkeeping for finished jobs."""
    if job.function not in jobs.RUNNERS:  # the cron: only worth a line when it found something
        if job.result:
            log.warning("intake_setups_finished", count=job.result)
        return
    fields = {"job_id": job.key, "kind": job.function, "attempts": job.attempts}
    if job.status == Status.COMPLETE:
        ms = (job.completed - job.started) if job.started else None
        log.info("job_delivered", **fields, ms=ms, note=str(job.result)[:200])
        await metrics.count_job(services.redis, job.function, "delivered")
    elif job.status == Status.QUEUED:
        delay = await services.jobs.retry_delay_s(job)
        log.info("job_retry_scheduled", **fields, attempt=job.attempts, delay_s=delay, error=_error(job))
        await metrics.count_job(services.redis, job.function, "retry")
    elif job.status in (Status.FAILED, Status.ABORTED):
        log.warning("job_dead", **fields, error=_error(job))
        await metrics.count_job(services.redis, job.function, "dead")
        if token := (job.kwargs or {}).get("token"):  # the staff dashboard shows it as needing attention
            await live.announce(services.redis, str(token))
    await services.jobs.finished(job)


def _error(job: Job) -> str | None:
    error = job.meta.get("error")
    return str(error) if error else None


async def run_worker(services: Services, stop: asyncio.Event) -> None:
    """Run both workers until ``stop`` is set (tests run this in-process)."""
    workers = build_workers(services)
    tasks = [asyncio.create_task(w.start()) for w in workers]
    await asyncio.sleep(0)  # let each ``start`` make its stop event before anyone can set it
    log.info(
        "worker_started", queues=[w.queue.name for w in workers], concurrency=[w.concurrency for w in workers]
    )
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for worker in workers:
        worker.event.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    stopping.cancel()
    log.info("worker_stopped")


def quiet_saq_logs() -> None:
    """SAQ logs a failing job with its arguments (a summary carries names and emails): keep its
    warnings, drop its per-job lines (ours, above, say the same without personal data)."""
    saq = logging.getLogger("saq")
    saq.setLevel(logging.WARNING)
    noise = ("Error processing job", "Retrying", "Some tasks did not finish within the shutdown grace")
    saq.addFilter(lambda record: not str(record.msg).startswith(noise))


async def _serve() -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    quiet_saq_logs()
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
