"""The supervised stack as an operator runs it: up, ready, self-healing, durable, strict about settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import redis
from openai import OpenAI

from services.settings import SettingsError, load_settings
from tests.fixtures.ports import wait_until
from tests.fixtures.stack import Stack

pytestmark = pytest.mark.slow

PROGRAMS = ["redis", "chroma", "inference", "watchdog", "indexer", "gateway", "worker", "analytics"]


def test_stack_comes_up_ready(stack: Stack) -> None:
    """Every program is RUNNING under supervisord and /readyz is green for Redis, Chroma and inference."""
    status = stack.ctl("status")
    for program in PROGRAMS:
        assert f"{program} " in status and "RUNNING" in status.split(program, 1)[1].splitlines()[0], status
    body = stack.ready()
    assert body["status"] == "ok"
    assert {"redis", "chroma", "inference"} <= set(body["checks"])


def test_real_model_answers_through_openai_client(stack: Stack) -> None:
    """A chat completion through the openai client returns text from the real embedded model."""
    client = OpenAI(base_url=stack.settings.inference_url, api_key="local", timeout=120)
    reply = client.chat.completions.create(
        model="default_model",
        messages=[{"role": "user", "content": "Say hello to a student in one short sentence."}],
        max_tokens=20,
        temperature=0,
    )
    text = reply.choices[0].message.content or ""
    assert len(text.split()) >= 2


@pytest.mark.parametrize("program", PROGRAMS)
def test_killed_child_is_restarted(stack: Stack, program: str) -> None:
    """kill -9 of any child: supervisord restarts it and /readyz is green again within a bounded time."""
    before = stack.pid(program)
    os.kill(before, signal.SIGKILL)
    wait_until(lambda: stack.pid(program) not in (0, before), 30, f"{program} restart")
    started = time.monotonic()
    stack.ready(timeout=120)
    assert time.monotonic() - started < 120


def test_redis_keeps_keys_across_restart(stack: Stack) -> None:
    """Redis runs with append-only persistence: a key written before a kill -9 is there after the restart."""
    client = redis.Redis.from_url(stack.settings.redis_url)
    client.set("test:durable", "kept")
    time.sleep(1.5)  # appendfsync everysec
    before = stack.pid("redis")
    os.kill(before, signal.SIGKILL)
    wait_until(lambda: stack.pid("redis") not in (0, before), 30, "redis restart")
    wait_until(lambda: _pings(client), 30, "redis answering")
    assert client.get("test:durable") == b"kept"


def _pings(client: redis.Redis) -> bool:
    """The restarted process exists before it listens (it replays the AOF first): refused means not yet."""
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False


def test_the_watchdog_restarts_an_inference_server_that_stopped_generating(stack: Stack) -> None:
    """SIGSTOP freezes inference with its port open (a hung generator): a watchdog with short settings
    restarts it through supervisorctl, and the stack is ready again. (The stack's own watchdog has the
    slow defaults and stays out of the way.)"""
    frozen = stack.pid("inference")
    fast = {"INTAKE_WATCHDOG_INTERVAL_S": "1", "INTAKE_WATCHDOG_PROBE_TIMEOUT_S": "2"}
    fast |= {"INTAKE_WATCHDOG_FAILURES": "2", "INTAKE_WATCHDOG_GRACE_S": "20"}
    watchdog = subprocess.Popen(
        [sys.executable, "-m", "services.inference.watchdog"],
        env={**stack.env, **fast},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    os.kill(frozen, signal.SIGSTOP)
    try:
        wait_until(lambda: stack.pid("inference") not in (0, frozen), 90, "inference restarted")
    finally:
        watchdog.terminate()
        output, _ = watchdog.communicate(timeout=30)
        if _alive(frozen):
            os.kill(frozen, signal.SIGCONT)
    assert "inference_restarting" in output
    stack.ready(timeout=120)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_bad_setting_is_named() -> None:
    """A non-numeric port fails at start-up with a message that names the variable."""
    with pytest.raises(SettingsError, match="INTAKE_PORT"):
        load_settings({"INTAKE_PORT": "eighty"})


def test_gateway_refuses_to_start_with_bad_setting() -> None:
    """The gateway process exits non-zero, naming the variable, instead of serving with a bad config."""
    env = {**os.environ, "INTAKE_REDIS_PORT": "not-a-port"}
    result = subprocess.run(
        [sys.executable, "-m", "services.gateway.app"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "INTAKE_REDIS_PORT" in result.stderr
