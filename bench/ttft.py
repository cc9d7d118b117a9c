"""Time to first token and to the whole turn, through the gateway and straight to ``mlx_lm.server``.

Against a running stack (``make run``), for each concurrency level in one run:

1. **gateway**: N simulated students book (signed webhook), agree, read the opening for ``--think``
   seconds, then answer the same scripted lines through the public SSE API, pausing ``--think`` seconds
   between a reply and their next message. First token = the first ``token`` event after sending; turn =
   the ``done`` event. A ``queue`` event (the student's place in line) is counted, never a token.
2. **direct**: the same N conversations replayed with the same pauses and concurrency straight to the
   inference server with the openai client, turn by turn, from the prompts the gateway stored (the
   intake's Redis record); the turn ends at the reply's first "?" as in the gateway, and the rest of
   the reply is read untimed so the server caches the conversation (as the gateway lets it). One nonce
   line per run heads every system prompt, so neither side profits from the other's prompt cache while
   the direct students still share a course prefix with each other, as the gateway's students do.
3. **new students**: after the run, ``--new-students`` more students of the now-warm course start one at a
   time; their first answer's first token is ``new_student_turn1_ttft``.

The ``*_model_*`` figures count only the turns the gateway had the model phrase (its stored steer says
so); the others answer from the dialogue policy's templates at once, so the all-turn figures mix both.

Each level ends with one JSON line (seconds)::

    {"concurrency": 10, "gateway_ttft_p50": ..., "gateway_ttft_p95": ..., "direct_ttft_p50": ...,
     "direct_ttft_p95": ..., "gateway_turn_p50": ..., "gateway_turn_p95": ..., "direct_turn_p50": ...,
     "direct_turn_p95": ..., "turn1_ttft_p50": ..., "last_turn_ttft_p50": ...,
     "new_student_turn1_ttft_p50": ..., "gateway_errors": 0, "direct_errors": 0, "queued_students": 0, ...}

    .venv/bin/python -m bench.ttft --concurrency 1 10 50 --course writ101

For loopback load, switch off the per-client chat limit: ``INTAKE_RATE_LIMIT_CHAT_PER_CLIENT=0``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import redis.asyncio as aioredis
from openai import AsyncOpenAI

from bench.stream import median_p95
from services.coursepack import Course, load_catalog
from services.gateway.demo import demo_payload
from services.gateway.intake.models import IntakeRecord
from services.gateway.webhooks.signature import SIGNATURE_HEADER, sign
from services.settings import Settings, load_settings
from services.stack import stack_env

STUDENT_LINES = [
    "I'm stuck on the assignment that is due next week and I don't really know where to start.",
    "I read the instructions twice and looked at my notes from class, but I still feel lost.",
    "The part I don't get is how to connect the main idea to the examples.",
    "I tried writing a first version but my classmate said it doesn't make sense.",
    "I want to leave the meeting knowing what to fix first.",
    "It is due on Friday, so pretty soon.",
    "Nothing else, I think that's everything.",
    "Thanks, that's all.",
]


MODEL_STEER = "Do not solve anything."  # ends the steer of a turn the model phrased (wording.instruction)


@dataclass
class Student:
    """One simulated student's figures, gateway side and direct side."""

    token: str = ""
    gateway_ttft: list[float] = field(default_factory=list)
    gateway_turn: list[float] = field(default_factory=list)
    direct_ttft: list[float] = field(default_factory=list)
    direct_turn: list[float] = field(default_factory=list)
    cached_share: list[float] = field(default_factory=list)
    model_turns: list[bool] = field(default_factory=list)  # the gateway asked the model (not a template)
    queued: bool = False
    longest_queue_position: int = 0
    gateway_errors: list[str] = field(default_factory=list)
    direct_errors: list[str] = field(default_factory=list)


@dataclass
class Bench:
    settings: Settings
    course: Course
    http: httpx.AsyncClient
    redis: aioredis.Redis
    openai: AsyncOpenAI
    think_s: float
    ramp_s: float
    lines: list[str]


async def book(bench: Bench) -> str:
    """A signed BOOKING_CREATED for the course; the intake's token from Redis."""
    payload = demo_payload(bench.course)
    body = json.dumps(payload).encode()
    headers = {
        "content-type": "application/json",
        SIGNATURE_HEADER: sign(body, bench.settings.calcom_webhook_secret),
    }
    response = await bench.http.post("/webhooks/calcom", content=body, headers=headers)
    response.raise_for_status()
    token = await bench.redis.get(f"intake:booking:{payload['payload']['uid']}")
    assert isinstance(token, bytes), "the webhook created no intake"
    return token.decode()


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs from a streamed ``text/event-stream`` response."""
    event, data = "message", list[str]()
    async for line in response.aiter_lines():
        if not line.strip():
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


async def send(bench: Bench, student: Student, line: str) -> str:
    """One message through the gateway; records first token and whole turn; returns the status."""
    start = time.perf_counter()
    first: float | None = None
    status = "active"
    url = f"/api/intakes/{student.token}/messages"
    async with bench.http.stream("POST", url, json={"text": line}) as response:
        if response.status_code != 200:
            student.gateway_errors.append(f"http_{response.status_code}")
            return "error"
        async for event, data in sse_events(response):
            if event == "token" and first is None:
                first = time.perf_counter() - start
            elif event == "queue":
                student.queued = True
                student.longest_queue_position = max(student.longest_queue_position, data["position"])
            elif event == "error":
                student.gateway_errors.append(str(data.get("code")))
            elif event == "done":
                status = data["status"]
    total = time.perf_counter() - start
    student.gateway_ttft.append(first if first is not None else total)
    student.gateway_turn.append(total)
    return status


async def talk(bench: Bench, student: Student, lines: list[str], delay: float) -> None:
    """Book, agree, read the opening, then answer line by line with a pause before each answer."""
    await asyncio.sleep(delay)
    try:
        student.token = await book(bench)
        (await bench.http.post(f"/api/intakes/{student.token}/consent")).raise_for_status()
        for line in lines:
            await asyncio.sleep(bench.think_s)
            if await send(bench, student, line) != "active":
                break
    except (httpx.HTTPError, AssertionError) as exc:
        student.gateway_errors.append(type(exc).__name__)


async def replay(bench: Bench, student: Student, nonce: str, delay: float) -> None:
    """The same prompts, turn by turn and with the same pauses, straight to the inference server."""
    await asyncio.sleep(delay)
    raw = await bench.redis.get(f"intake:tok:{student.token}") if student.token else None
    if not raw:
        return
    prompt = msgspec.json.decode(raw, type=IntakeRecord).interview.prompt
    for position in [i for i, m in enumerate(prompt) if m["role"] == "user" and i > 1]:
        student.model_turns.append(MODEL_STEER in prompt[position]["content"])
        messages = [dict(m) for m in prompt[: position + 1]]
        messages[0] = {**messages[0], "content": nonce + messages[0]["content"]}
        await asyncio.sleep(bench.think_s)
        try:
            await _direct_turn(bench, student, messages)
        except Exception as exc:  # counted, the run goes on
            student.direct_errors.append(type(exc).__name__)


async def _direct_turn(bench: Bench, student: Student, messages: list[dict[str, str]]) -> None:
    start = time.perf_counter()
    first: float | None = None
    text = ""
    stream = await bench.openai.chat.completions.create(  # type: ignore[call-overload]
        model=bench.settings.model_name,
        messages=messages,
        max_tokens=bench.settings.reply_max_tokens,
        temperature=0.3,
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = None
    total: float | None = None
    async for chunk in stream:
        usage = chunk.usage or usage
        piece = chunk.choices[0].delta.content if chunk.choices and chunk.choices[0].delta else None
        if piece:
            first = first if first is not None else time.perf_counter() - start
            text += piece
            if total is None and "?" in text:
                total = time.perf_counter() - start  # the turn ends at the first question mark, as in
                # the gateway; the rest is read (not timed) so the server caches the conversation
    total = total if total is not None else time.perf_counter() - start
    student.direct_ttft.append(first if first is not None else total)
    student.direct_turn.append(total)
    if usage is not None and usage.prompt_tokens:
        details = getattr(usage, "prompt_tokens_details", None)
        student.cached_share.append((getattr(details, "cached_tokens", 0) or 0) / usage.prompt_tokens)


async def new_student_turn1(bench: Bench, count: int) -> list[float]:
    """Students who start alone on a warm course: the first token of their first answer."""
    times: list[float] = []
    for _ in range(count):
        student = Student()
        await talk(bench, student, bench.lines[:1], 0.0)
        times += student.gateway_ttft[:1]
    return times


def _model(students: list[Student], figure: str) -> list[float]:
    """One figure over the turns the model phrased on the gateway (templates answer at once there)."""
    return [t for s in students for t, m in zip(getattr(s, figure), s.model_turns, strict=False) if m]


def _p(values: list[float], which: int) -> float | None:
    if not values:
        return None
    return round(median_p95(values)[which], 3)


async def level(bench: Bench, concurrency: int, new_students: int) -> dict[str, Any]:
    """One concurrency level: gateway run, direct replay, then students starting alone."""
    students = [Student() for _ in range(concurrency)]
    delays = [bench.ramp_s * i / max(1, concurrency) for i in range(concurrency)]
    random.shuffle(delays)
    await asyncio.gather(*(talk(bench, s, bench.lines, d) for s, d in zip(students, delays, strict=True)))
    nonce = f"(run {secrets.token_hex(4)})\n"
    await asyncio.gather(*(replay(bench, s, nonce, d) for s, d in zip(students, delays, strict=True)))
    fresh = await new_student_turn1(bench, new_students)
    gateway_ttft = [t for s in students for t in s.gateway_ttft]
    direct_ttft = [t for s in students for t in s.direct_ttft]
    shares = [x for s in students for x in s.cached_share[1:]]
    return {
        "concurrency": concurrency,
        "gateway_ttft_p50": _p(gateway_ttft, 0),
        "gateway_ttft_p95": _p(gateway_ttft, 1),
        "direct_ttft_p50": _p(direct_ttft, 0),
        "direct_ttft_p95": _p(direct_ttft, 1),
        "gateway_turn_p50": _p([t for s in students for t in s.gateway_turn], 0),
        "gateway_turn_p95": _p([t for s in students for t in s.gateway_turn], 1),
        "direct_turn_p50": _p([t for s in students for t in s.direct_turn], 0),
        "direct_turn_p95": _p([t for s in students for t in s.direct_turn], 1),
        "turn1_ttft_p50": _p([s.gateway_ttft[0] for s in students if s.gateway_ttft], 0),
        "last_turn_ttft_p50": _p([s.gateway_ttft[-1] for s in students if s.gateway_ttft], 0),
        "new_student_turn1_ttft_p50": _p(fresh, 0),
        "gateway_model_ttft_p50": _p(_model(students, "gateway_ttft"), 0),
        "gateway_model_ttft_p95": _p(_model(students, "gateway_ttft"), 1),
        "direct_model_ttft_p50": _p(_model(students, "direct_ttft"), 0),
        "direct_model_ttft_p95": _p(_model(students, "direct_ttft"), 1),
        "gateway_model_turn_p50": _p(_model(students, "gateway_turn"), 0),
        "direct_model_turn_p50": _p(_model(students, "direct_turn"), 0),
        "model_turns": len(_model(students, "gateway_ttft")),
        "gateway_turns": len(gateway_ttft),
        "direct_turns": len(direct_ttft),
        "gateway_errors": sum(len(s.gateway_errors) for s in students),
        "direct_errors": sum(len(s.direct_errors) for s in students),
        "error_kinds": sorted({e for s in students for e in s.gateway_errors + s.direct_errors}),
        "queued_students": sum(s.queued for s in students),
        "longest_queue_position": max((s.longest_queue_position for s in students), default=0),
        "direct_cached_share_turn2plus": round(statistics.mean(shares), 3) if shares else None,
        "load_1min": round(os.getloadavg()[0], 2),
    }


async def run(options: argparse.Namespace) -> None:
    settings = load_settings(stack_env())
    catalog = load_catalog(Path(settings.corpus_dir))
    course = catalog.courses[options.course or sorted(catalog.courses)[0]]
    async with httpx.AsyncClient(
        base_url=options.gateway or f"http://127.0.0.1:{settings.port}",
        timeout=httpx.Timeout(600.0, connect=30.0),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
    ) as http:
        bench = Bench(
            settings=settings,
            course=course,
            http=http,
            redis=aioredis.from_url(settings.redis_url),
            openai=AsyncOpenAI(base_url=settings.inference_url, api_key="local", timeout=600, max_retries=0),
            think_s=options.think,
            ramp_s=options.think if options.ramp is None else options.ramp,
            lines=STUDENT_LINES[: options.turns],
        )
        print(f"course {course.slug}, model {settings.model_path}, think {options.think}s", flush=True)
        for concurrency in options.concurrency:
            started = time.perf_counter()
            figures = await level(bench, concurrency, options.new_students)
            figures["seconds"] = round(time.perf_counter() - started)
            print(json.dumps(figures), flush=True)
        await bench.redis.aclose()
        await bench.openai.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--course", default=None, help="course slug (default: the first one)")
    parser.add_argument(
        "--think", type=float, default=10.0, help="seconds between a reply and the next message"
    )
    parser.add_argument(
        "--ramp", type=float, default=None, help="students start over this many seconds (default: --think)"
    )
    parser.add_argument("--turns", type=int, default=len(STUDENT_LINES), help="scripted lines per student")
    parser.add_argument(
        "--new-students", type=int, default=3, help="students starting alone after each level"
    )
    parser.add_argument("--gateway", default=None, help="gateway base URL (default: the stack's)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
