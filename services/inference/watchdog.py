"""Restart inference when it stops generating: ``python -m services.inference.watchdog`` (supervised).

supervisord restarts a process that dies, but ``mlx_lm.server`` can lose its generation thread while its
HTTP port keeps answering. This program asks for a two-token completion every
``INTAKE_WATCHDOG_INTERVAL_S`` seconds (the same probe as ``/readyz``); after
``INTAKE_WATCHDOG_FAILURES`` failures in a row it runs ``supervisorctl restart inference``. A probe gets
``INTAKE_WATCHDOG_PROBE_TIMEOUT_S`` (generous: a busy server answers late, a hung one never does), and
failures do not count while a freshly (re)started server loads its model, until it has generated once
or ``INTAKE_WATCHDOG_GRACE_S`` has passed. When the gateway is pointed at another server
(``INTAKE_INFERENCE_URL`` not on the inference program's port) there is nothing of ours to restart, and
the watchdog only probes and logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import structlog

from services.inference.probe import ProbeResult, probe_generation
from services.settings import Settings, SettingsError, load_settings

log = structlog.get_logger("watchdog")
Probe = Callable[[], Awaitable[ProbeResult]]
Restart = Callable[[], Awaitable[None]]


class Watchdog:
    """The decision alone (no I/O): given each probe's outcome, is it time to restart?"""

    def __init__(self, failures: int, grace_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.grace_s = grace_s
        self.clock = clock
        self.consecutive = 0
        self.started_at = clock()
        self.proven = False  # the server generated since its last (re)start

    def observe(self, ok: bool) -> bool:
        """Record one probe; True means restart now (the count then starts afresh, with a new grace)."""
        if ok:
            self.consecutive, self.proven = 0, True
            return False
        if not self.proven and self.clock() - self.started_at < self.grace_s:
            return False  # still loading its model
        self.consecutive += 1
        if self.consecutive < self.failures:
            return False
        self.consecutive, self.proven, self.started_at = 0, False, self.clock()
        return True


async def watch(
    dog: Watchdog, probe: Probe, restart: Restart | None, interval_s: float, stop: asyncio.Event
) -> int:
    """Probe until ``stop``; returns how many restarts were made. ``restart=None``: probe and log only."""
    restarts = 0
    while not stop.is_set():
        result = await probe()
        if not result.ok:
            log.warning("inference_probe_failed", error=result.error, failures=dog.consecutive + 1)
        if dog.observe(result.ok):
            if restart is None:
                log.error("inference_not_generating", note="not ours to restart (INTAKE_INFERENCE_URL)")
            else:
                log.error("inference_restarting", failures=dog.failures)
                await restart()
                restarts += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
    return restarts


def manages_inference(settings: Settings) -> bool:
    """Is the gateway's inference URL the supervised ``inference`` program (loopback, its port)?"""
    url = urlsplit(settings.inference_url)
    return url.hostname in ("127.0.0.1", "localhost", "::1") and url.port == settings.inference_port


async def restart_with_supervisor() -> None:
    """``supervisorctl restart inference`` through the stack's launcher (it knows the socket)."""
    from services.stack import ctl  # the launcher's imports are only needed when restarting

    result = await asyncio.to_thread(ctl, os.environ, "restart", "inference")
    log.warning("inference_restarted", code=result.returncode, output=(result.stdout + result.stderr)[-300:])


async def _main(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def probe() -> ProbeResult:
        timeout = settings.watchdog_probe_timeout_s
        return await probe_generation(settings.inference_url, settings.model_name, timeout)

    restart = restart_with_supervisor if manages_inference(settings) else None
    dog = Watchdog(settings.watchdog_failures, settings.watchdog_grace_s)
    log.info("watchdog_started", interval_s=settings.watchdog_interval_s, restarts=restart is not None)
    await watch(dog, probe, restart, settings.watchdog_interval_s, stop)


def main() -> None:
    from services.gateway.logs import configure_logging

    try:
        settings = load_settings()
    except SettingsError as exc:
        raise SystemExit(f"watchdog: configuration error: {exc}") from None
    configure_logging(settings.log_level)
    asyncio.run(_main(settings))


if __name__ == "__main__":
    main()
