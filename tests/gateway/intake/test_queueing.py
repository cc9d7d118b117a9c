"""The line for a generation slot, on a real Redis: arrival order, places in line, ghosts removed, and a
turn that waits tells the student its place (``Queued``, the SSE ``queue`` event) before its words."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from services.gateway.intake.interview import Interviewer, Queued, TurnOutcome
from services.gateway.intake.models import InterviewState
from services.gateway.intake.queueing import PREFIX, GenerationLine
from services.gateway.ports import LineTimeout
from services.settings import Settings
from tests.gateway.intake.scripted import (
    TODAY,
    ListRetriever,
    ScriptedModel,
    make_booking,
    make_course,
    make_passages,
)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    await client.delete(*(f"{PREFIX}{k}" for k in ("seq", "line", "seen", "held")))
    yield client
    await client.aclose()


def _line(redis: aioredis.Redis, limit: int = 1, **kw: float) -> GenerationLine:
    return GenerationLine(
        redis, limit=limit, max_wait_s=kw.get("max_wait_s", 10.0), lease_s=30.0, poll_s=0.02
    )


async def _serve(
    line: GenerationLine, name: str, served: list[str], seen: dict[str, list[int]], hold: asyncio.Event
) -> None:
    async with line.acquire() as positions:
        async for position in positions:
            seen.setdefault(name, []).append(position)
        served.append(name)
        await hold.wait()


async def test_turns_are_served_in_arrival_order_and_see_their_place_go_down(redis: aioredis.Redis) -> None:
    """With one slot, three later turns wait as 1, 2, 3 and are served in the order they came."""
    line = _line(redis)
    served: list[str] = []
    seen: dict[str, list[int]] = {}
    holds = {name: asyncio.Event() for name in "abcd"}
    tasks = []
    for name in "abcd":
        tasks.append(asyncio.create_task(_serve(line, name, served, seen, holds[name])))
        await asyncio.sleep(0.05)  # arrive one after the other
    assert served == ["a"] and seen == {"b": [1], "c": [2], "d": [3]}
    for name in "abcd":
        holds[name].set()
        await asyncio.sleep(0.15)
    await asyncio.gather(*tasks)
    assert served == ["a", "b", "c", "d"]
    assert seen == {"b": [1], "c": [2, 1], "d": [3, 2, 1]}
    assert await line.waiting() == 0 and await redis.zcard(f"{PREFIX}held") == 0


async def test_two_gateways_share_one_line(redis: aioredis.Redis, redis_url: str) -> None:
    """A second gateway (its own client) waits behind the first gateway's holder."""
    other = aioredis.from_url(redis_url)
    try:
        first, second = _line(redis), _line(other)
        async with first.acquire() as positions:
            assert [p async for p in positions] == []
            waiting: list[int] = []

            async def wait() -> None:
                async with second.acquire() as theirs:
                    async for position in theirs:
                        waiting.append(position)

            task = asyncio.create_task(wait())
            await asyncio.sleep(0.1)
            assert waiting == [1] and not task.done()
        await asyncio.wait_for(task, 2)
    finally:
        await other.aclose()


async def test_a_waiter_that_stopped_asking_is_dropped_from_the_line(redis: aioredis.Redis) -> None:
    """A ticket whose gateway died (no polls for ``stale_s``) no longer holds up those behind it."""
    line = GenerationLine(redis, limit=1, max_wait_s=10.0, lease_s=30.0, poll_s=0.02, stale_s=0.2)
    await redis.zadd(f"{PREFIX}line", {"0": 0})  # a ghost at the head of the line, last seen long ago
    await redis.zadd(f"{PREFIX}seen", {"0": 1})
    async with line.acquire() as positions:
        assert [p async for p in positions] == []  # served at once: the ghost was removed
    assert await redis.zcard(f"{PREFIX}line") == 0
    assert 0 < await redis.ttl(f"{PREFIX}seq") <= 3600  # every key of the line expires


async def test_a_wait_longer_than_allowed_raises_timeout(redis: aioredis.Redis) -> None:
    """Past ``max_wait_s`` the positions end in ``LineTimeout`` (the turn answers from the policy)."""
    line = _line(redis, max_wait_s=0.1)
    async with line.acquire() as held:
        assert [p async for p in held] == []
        with pytest.raises(LineTimeout):
            async with line.acquire() as positions:
                async for _ in positions:
                    pass
    assert await redis.zcard(f"{PREFIX}line") == 0  # the unserved ticket left the line


async def test_a_waiting_turn_yields_its_place_before_its_words(redis: aioredis.Redis) -> None:
    """The interviewer yields ``Queued(1)`` while another turn holds the only slot, then the reply."""
    line = _line(redis)
    iv = Interviewer(
        ScriptedModel(), ListRetriever(make_passages()), Settings(), today=lambda c: TODAY, slots=line
    )
    course, booking = make_course(), make_booking()
    state = InterviewState()
    await iv.prepare(state, course, booking)
    iv.opening(state, course, booking)
    items: list[object] = []

    async def turn() -> None:
        async for item in iv.turn(state, course, booking, "ps3, p-values confuse me " + uuid.uuid4().hex[:4]):
            items.append(item)

    async with line.acquire() as positions:
        assert [p async for p in positions] == []
        task = asyncio.create_task(turn())
        await asyncio.sleep(0.2)
        assert items == [Queued(1)]  # waiting: a place in line, no words yet
    await asyncio.wait_for(task, 5)
    assert isinstance(items[-1], TurnOutcome) and items[-1].reply.endswith("?")
    assert all(isinstance(i, str) for i in items[1:-1]) and len(items) > 2


async def test_a_turn_that_waited_too_long_in_line_gets_the_policys_question(redis: aioredis.Redis) -> None:
    """50 students on two cores: a turn still in line after ``max_wait_s`` is answered at once with the
    policy's own question (no error, no model call), and its ticket leaves the line."""
    line = _line(redis, max_wait_s=0.3)
    model = ScriptedModel()
    iv = Interviewer(model, ListRetriever(make_passages()), Settings(), today=lambda c: TODAY, slots=line)
    course, booking = make_course(), make_booking()
    state = InterviewState()
    await iv.prepare(state, course, booking)
    iv.opening(state, course, booking)
    calls = len(model.calls)
    async with line.acquire() as positions:
        assert [p async for p in positions] == []
        items = [i async for i in iv.turn(state, course, booking, "ps3, p-values confuse me")]
    assert items[0] == Queued(1)
    outcome = items[-1]
    assert isinstance(outcome, TurnOutcome) and outcome.status == "active" and outcome.reply.endswith("?")
    assert "".join(i for i in items if isinstance(i, str)) == outcome.reply
    assert len(model.calls) == calls, "the model was not asked"
    assert await redis.zcard(f"{PREFIX}line") == 0
