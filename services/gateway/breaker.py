"""A circuit breaker around the model: after consecutive failures or timeouts, stop calling it for a while.

A dead or hung inference server otherwise costs every student a full timeout per question. While the
breaker is open, ``check`` raises ``ModelUnavailable`` at once, before any network call; the interviewer
treats that like any failed model call and asks the dialogue policy's own question, so the chat goes on
at template speed. After the cool-down one call is let through (half-open): if it succeeds the breaker
closes, if it fails it opens for another cool-down. One breaker per process, shared by every student.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

import structlog

from services.gateway import metrics
from services.gateway.errors import ModelUnavailable

BreakerState = Literal["closed", "half_open", "open"]
_GAUGE: dict[BreakerState, int] = {"closed": 0, "half_open": 1, "open": 2}
log = structlog.get_logger()


class CircuitBreaker:
    """Counts consecutive failures; ``clock`` is injectable so tests need not sleep."""

    def __init__(
        self, failures: int = 3, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.state: BreakerState = "closed"
        self.consecutive = 0
        self.opened_at = 0.0
        self._trial_running = False
        metrics.BREAKER_STATE.set(_GAUGE["closed"])

    def check(self) -> None:
        """Raise ``ModelUnavailable`` unless a call may go out now (the half-open trial is one call)."""
        if self.state == "open" and self.clock() - self.opened_at >= self.cooldown_s:
            self._move("half_open")
        if self.state == "closed":
            return
        if self.state == "half_open" and not self._trial_running:
            self._trial_running = True
            return
        metrics.MODEL_CALLS.labels(outcome="rejected").inc()
        retry_after = max(1, round(self.opened_at + self.cooldown_s - self.clock()))
        raise ModelUnavailable(
            "The assistant's model failed several times in a row; it is given a short rest.",
            headers={"Retry-After": str(retry_after)},
        )

    def succeeded(self) -> None:
        self.consecutive = 0
        self._trial_running = False
        if self.state != "closed":
            self._move("closed")

    def abandoned(self) -> None:
        """The caller gave up before the call said anything either way: a trial may be made again."""
        self._trial_running = False

    def failed(self) -> None:
        self.consecutive += 1
        self._trial_running = False
        if self.state == "half_open" or self.consecutive >= self.failures:
            self.opened_at = self.clock()
            if self.state != "open":
                metrics.BREAKER_OPENED.inc()
                self._move("open")

    def _move(self, state: BreakerState) -> None:
        log.warning("model_breaker_changed", state=state, was=self.state, failures=self.consecutive)
        self.state = state
        metrics.BREAKER_STATE.set(_GAUGE[state])
