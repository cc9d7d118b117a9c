"""The inference watchdog: when it decides to restart, and that a hung server really leads to a restart."""

from __future__ import annotations

import asyncio

from services.inference.probe import ProbeResult, probe_generation
from services.inference.watchdog import Watchdog, manages_inference, watch
from services.settings import Settings
from tests.gateway.live import HungServer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def proven(failures: int = 3, grace_s: float = 300.0) -> tuple[Watchdog, Clock]:
    """A watchdog whose server has generated once (out of its start-up grace)."""
    clock = Clock()
    dog = Watchdog(failures, grace_s, clock)
    assert dog.observe(True) is False
    return dog, clock


def test_restarts_after_the_set_number_of_failures_in_a_row() -> None:
    """Two failures are tolerated; the third in a row asks for a restart."""
    dog, _ = proven(failures=3)
    assert [dog.observe(False) for _ in range(3)] == [False, False, True]


def test_a_success_between_failures_starts_the_count_again() -> None:
    """A busy server that answers late once in a while is never restarted."""
    dog, _ = proven(failures=3)
    outcomes = [dog.observe(ok) for ok in (False, False, True, False, False, True, False, False)]
    assert not any(outcomes)
    assert dog.consecutive == 2


def test_failures_while_the_model_loads_do_not_count() -> None:
    """Right after a (re)start, failures count only once the server generated or the grace is over."""
    clock = Clock()
    dog = Watchdog(2, grace_s=120, clock=clock)
    assert [dog.observe(False) for _ in range(5)] == [False] * 5, "still within the grace"
    clock.now += 121
    assert [dog.observe(False), dog.observe(False)] == [False, True], "grace over: two failures restart"


def test_after_a_restart_the_new_server_gets_its_grace() -> None:
    """The restarted server is not restarted again while it loads; once it generated, failures count."""
    dog, clock = proven(failures=1, grace_s=60)
    assert dog.observe(False) is True
    assert dog.observe(False) is False, "the new process is loading"
    clock.now += 10
    assert dog.observe(True) is False
    assert dog.observe(False) is True


def test_only_the_supervised_inference_program_is_restarted() -> None:
    """The gateway pointed at another OpenAI-compatible server: that server is not ours to restart."""
    assert manages_inference(Settings(inference_url="http://127.0.0.1:8081/v1", inference_port=8081))
    assert not manages_inference(Settings(inference_url="http://127.0.0.1:11434/v1", inference_port=8081))
    assert not manages_inference(Settings(inference_url="http://10.0.0.5:8081/v1", inference_port=8081))


async def test_a_hung_server_is_restarted_by_the_watch_loop() -> None:
    """Real probes against a server that accepts connections and never answers: after the set number of
    failed probes the restart runs, once; then the loop stops when asked."""
    restarts: list[int] = []
    stop = asyncio.Event()
    async with HungServer() as hung:

        async def probe() -> ProbeResult:
            return await probe_generation(hung.url, "default_model", timeout=0.2)

        async def restart() -> None:
            restarts.append(hung.connections)
            stop.set()

        dog = Watchdog(failures=2, grace_s=0)
        made = await asyncio.wait_for(watch(dog, probe, restart, 0.01, stop), 10)
    assert made == 1 and restarts == [2], "restarted after exactly two failed probes"
