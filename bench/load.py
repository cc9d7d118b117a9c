"""Many students at once, then a flood of signed Cal.com deliveries, on a real stack of its own.

Starts the supervised stack (``services.stack``, free loopback ports, data in ``.data/bench/load`` so the
course index is built once) with the per-client rate limits raised for the run (the per-link chat limit
stays as shipped: one simulated student is one link). Then:

1. **Peer:** one student alone through a whole intake (booking webhook, page, consent, every turn).
2. **Load:** ``--students`` students at once through whole intakes, each pausing ``--think-s`` (jittered)
   between answers. Counted: every HTTP status >= 500, every SSE ``error`` event, every turn that streamed
   no reply; timed: first ``token`` event and ``done`` of every turn, as the student's client saw them.
3. **Ingest:** ``--deliveries`` signed BOOKING_CREATED deliveries (each a new booking) over ``--connections``
   keep-alive connections, with the worker paused so the figure is the gateway's own (the jobs wait in
   Redis; the stack is torn down afterwards), and the CPU time a delivery costs the gateway process and
   Redis (steadier than the rate when other work shares the cores). It starts once the stack is idle: a
   gateway that has just started spends half a minute of CPU embedding the course maps. Peer:
   ``GET /healthz`` over the same connections.

Prints the figures, then one JSON line with all of them (the last line of output).

    .venv/bin/python -m bench.load                      # 50 students, 3,000 deliveries
    .venv/bin/python -m bench.load --students 10 --deliveries 500 --think-s 0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from services import stack as stack_cli
from services.coursepack import Course, load_catalog
from services.gateway.webhooks.payloads import rfc3339
from services.gateway.webhooks.signature import SIGNATURE_HEADER, sign
from services.settings import REPO_ROOT

DATA = REPO_ROOT / ".data"
MODEL = DATA / "models" / "smollm2-135m-instruct-f32"
RAISED_LIMITS = {  # per client: every simulated student shares 127.0.0.1
    "INTAKE_RATE_LIMIT_CHAT_PER_CLIENT": "1000000",
    "INTAKE_RATE_LIMIT_WEBHOOK_PER_CLIENT": "1000000",
}
STACK_PROGRAMS = ("gateway", "inference", "indexer", "chroma", "analytics", "redis")  # waited for to idle
CHECK_IN = "are you feeling okay"  # the interview's wellbeing question (lower case)
FIRST_NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Farah", "Gus", "Hana", "Ivan", "Jo", "Kemal", "Lin"]


# ------------------------------------------------------------------ what students say


def student_lines(course: Course, rng: random.Random) -> list[str]:
    """Plausible answers for one student; enough of them for the longest interview."""
    assignment = rng.choice(course.assignments).title if course.assignments else "the next assignment"
    topic = rng.choice(course.topics).title if course.topics else "this week's material"
    return [
        f"I'm stuck on {assignment} and I don't know where to start.",
        f"The part about {topic.lower()} is what confuses me most.",
        rng.choice(
            [
                "I reread the instructions and my notes from class, but it still doesn't click.",
                "I tried a first version and checked it against the example, but mine looks wrong.",
                "I watched the lecture again and tried two practice problems.",
            ]
        ),
        "I think I mix up which step comes first when I put it together.",
        "I want to leave the meeting knowing what to fix first.",
        rng.choice(["It's due on Friday.", "It's due next week.", "I have about five days left."]),
        "Yes, that's right.",
        "No, that's everything. Thanks!",
        "Thanks, that's all.",
    ]


def booking_payload(course: Course, uid: str, student: dict[str, str], now: dt.datetime) -> dict[str, Any]:
    """A BOOKING_CREATED in Cal.com's shape, for a meeting in two days."""
    start = (now + dt.timedelta(days=2)).replace(second=0, microsecond=0)
    organizer = {
        "name": course.instructor_name,
        "email": course.instructor_email,
        "timeZone": course.timezone,
    }
    slug = course.calcom.event_type_slugs[0] if course.calcom.event_type_slugs else None
    return {
        "triggerEvent": "BOOKING_CREATED",
        "createdAt": rfc3339(now),
        "payload": {
            "type": slug,
            "title": f"{course.code} office hours",
            "additionalNotes": "",
            "startTime": rfc3339(start),
            "endTime": rfc3339(start + dt.timedelta(minutes=20)),
            "organizer": organizer,
            "attendees": [{**student, "timeZone": course.timezone}],
            "responses": {},
            "eventTypeId": course.calcom.event_type_ids[0] if course.calcom.event_type_ids else None,
            "uid": uid,
            "bookingId": secrets.randbelow(900_000_000) + 100_000,
            "status": "ACCEPTED",
            "metadata": {},
        },
    }


def signed(payload: dict[str, Any], secret: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {"content-type": "application/json", SIGNATURE_HEADER: sign(body, secret)}


# ------------------------------------------------------------------ one student


@dataclass
class Tally:
    """What the students' clients saw, all together."""

    first_token_s: list[float] = field(default_factory=list)
    turn_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    sse_errors: Counter[str] = field(default_factory=Counter)
    silent_turns: int = 0  # a turn whose stream carried no reply text
    check_ins: int = 0  # "are you feeling okay?" questions (the distress classifier's uncertain flag)
    outcomes: Counter[str] = field(default_factory=Counter)  # how each intake ended
    failures: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


async def sse(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of a ``text/event-stream`` body."""
    event, data = "message", list[str]()
    async for line in lines:
        if not line.strip():
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
    if data:
        yield event, json.loads("\n".join(data))


class Student:
    """One simulated student on their phone: opens the link, agrees, answers until the chat ends."""

    def __init__(self, client: httpx.AsyncClient, token: str, lines: Sequence[str], tally: Tally) -> None:
        self.client = client
        self.token = token
        self.lines = lines
        self.tally = tally
        self.last_reply = ""

    async def run(self, think_s: float, rng: random.Random) -> str:
        page = await self.client.get(f"/i/{self.token}")
        self.tally.statuses[page.status_code] += 1
        consent = await self._post_until_accepted(f"/api/intakes/{self.token}/consent")
        if consent is None:
            return "no_consent"
        status = "active"
        for line in self.lines:
            status = await self.turn(line)
            if status == "active" and CHECK_IN in self.last_reply.lower():
                self.tally.check_ins += 1  # answered as a student who is fine would, then on with the script
                status = await self.turn("Yes, I'm okay, just a bit stressed about this assignment.")
            if status != "active":
                return status
            await asyncio.sleep(think_s * rng.uniform(0.5, 1.5))
        return status

    async def turn(self, text: str) -> str:
        """One message, resent with the same ``client_turn_id`` while the gateway says 409 or 429."""
        body = {"text": text, "client_turn_id": str(uuid.uuid4())}
        started = time.perf_counter()
        for _ in range(30):
            async with self.client.stream(
                "POST", f"/api/intakes/{self.token}/messages", json=body
            ) as response:
                self.tally.statuses[response.status_code] += 1
                if response.status_code == 200:
                    return await self._read_turn(response, started)
                await response.aread()
                if response.status_code not in (409, 429):
                    self.tally.failures.append(f"message {response.status_code}: {response.text[:200]}")
                    return f"http_{response.status_code}"
            await asyncio.sleep(_retry_after(response))
        return "gave_up"

    async def _read_turn(self, response: httpx.Response, started: float) -> str:
        first: float | None = None
        status = "no_done"
        reply = []
        async for event, data in sse(response.aiter_lines()):
            if event == "token" and data.get("text"):
                reply.append(str(data["text"]))
                first = first if first is not None else time.perf_counter() - started
            elif event == "error":
                self.tally.sse_errors[str(data.get("code"))] += 1
            elif event == "done":
                status = str(data.get("status"))
        self.tally.turn_s.append(time.perf_counter() - started)
        self.last_reply = "".join(reply)
        if first is None:
            self.tally.silent_turns += 1
        else:
            self.tally.first_token_s.append(first)
        return status

    async def _post_until_accepted(self, path: str) -> httpx.Response | None:
        for _ in range(30):
            response = await self.client.post(path)
            self.tally.statuses[response.status_code] += 1
            if response.status_code == 200:
                return response
            if response.status_code not in (409, 429, 503):
                self.tally.failures.append(f"consent {response.status_code}: {response.text[:200]}")
                return None
            await asyncio.sleep(_retry_after(response))
        return None


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("retry-after", "")
    return min(30.0, float(value)) if value.isdigit() else 1.0


# ------------------------------------------------------------------ the load phases


@dataclass
class Target:
    url: str
    secret: str
    redis_url: str
    courses: list[Course]


async def book(client: httpx.AsyncClient, target: Target, course: Course, n: int, run: str) -> str:
    """A signed booking webhook; the new intake's token (read where the gateway keeps it)."""
    import redis.asyncio as aioredis

    student = {
        "name": f"{FIRST_NAMES[n % len(FIRST_NAMES)]} Load{n}",
        "email": f"load{n}.{run}@example.invalid",
    }
    uid = f"load-{run}-{n}"
    body, headers = signed(booking_payload(course, uid, student, dt.datetime.now(dt.UTC)), target.secret)
    response = await client.post("/webhooks/calcom", content=body, headers=headers)
    response.raise_for_status()
    async with aioredis.from_url(target.redis_url) as r:
        token = await r.get(f"intake:booking:{uid}")
    if not token:
        raise RuntimeError(f"booking {uid} made no intake: {response.text}")
    return token.decode() if isinstance(token, bytes) else str(token)


async def students(target: Target, count: int, think_s: float, seed: int) -> tuple[Tally, float]:
    """``count`` students through whole intakes at once; the tally and the wall time."""
    tally = Tally()
    run = secrets.token_hex(3)
    limits = httpx.Limits(max_connections=count * 2 + 10, max_keepalive_connections=count * 2 + 10)
    timeout = httpx.Timeout(600.0, connect=10.0)
    async with httpx.AsyncClient(base_url=target.url, timeout=timeout, limits=limits) as client:
        rngs = [random.Random(f"{seed}-{n}") for n in range(count)]
        courses = [target.courses[n % len(target.courses)] for n in range(count)]
        tokens = await asyncio.gather(*(book(client, target, courses[n], n, run) for n in range(count)))
        started = time.perf_counter()

        async def one(n: int) -> None:
            lines = student_lines(courses[n], rngs[n])
            await asyncio.sleep(rngs[n].uniform(0, think_s))  # students do not all open the link at once
            try:
                outcome = await Student(client, tokens[n], lines, tally).run(think_s, rngs[n])
            except httpx.HTTPError as exc:
                outcome = "transport_error"
                tally.failures.append(f"student {n}: {type(exc).__name__}: {exc}")
            tally.outcomes[outcome] += 1

        await asyncio.gather(*(one(n) for n in range(count)))
    return tally, time.perf_counter() - started


class RawConnection:
    """A keep-alive HTTP/1.1 connection that sends prepared requests: a light client, so the figure is the
    server's rate and not the load generator's."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> RawConnection:
        return cls(*await asyncio.open_connection(host, port))

    async def send(self, request: bytes) -> int:
        self.writer.write(request)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        await self.reader.readexactly(length)
        return int(status_line.split()[1])

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def raw_request(
    method: str, path: str, host: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"host: {host}", f"content-length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def flood(url: str, requests: Sequence[bytes], connections: int) -> tuple[float, Counter[int]]:
    """Send every prepared request over ``connections`` keep-alive connections; (requests/s, statuses)."""
    host, port = httpx.URL(url).host, httpx.URL(url).port or 80
    statuses: Counter[int] = Counter()
    pending = iter(requests)
    conns = [await RawConnection.open(host, port) for _ in range(connections)]

    async def drain(conn: RawConnection) -> None:
        for request in pending:
            statuses[await conn.send(request)] += 1

    started = time.perf_counter()
    try:
        await asyncio.gather(*(drain(c) for c in conns))
    finally:
        for conn in conns:
            await conn.close()
    return len(requests) / (time.perf_counter() - started), statuses


def deliveries(target: Target, count: int) -> Iterator[bytes]:
    """Signed BOOKING_CREATED requests, each for a new booking, spread over the courses."""
    host = httpx.URL(target.url).netloc.decode()
    run, now = secrets.token_hex(3), dt.datetime.now(dt.UTC)
    for n in range(count):
        course = target.courses[n % len(target.courses)]
        student = {"name": f"Ingest {n}", "email": f"ingest{n}.{run}@example.invalid"}
        body, headers = signed(booking_payload(course, f"ingest-{run}-{n}", student, now), target.secret)
        yield raw_request("POST", "/webhooks/calcom", host, body, headers)


# ------------------------------------------------------------------ reporting


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def timing(values: Sequence[float]) -> dict[str, float | None]:
    return {
        "p50": _round(statistics.median(values)) if values else None,
        "p95": _round(percentile(values, 0.95)),
        "max": _round(max(values)) if values else None,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def describe(label: str, tally: Tally, wall_s: float, students: int) -> dict[str, Any]:
    first, turn = timing(tally.first_token_s), timing(tally.turn_s)
    print(
        f"{label}: {students} students, {sum(tally.outcomes.values())} finished in {wall_s:.0f}s "
        f"({dict(tally.outcomes)}); turns {len(tally.turn_s)}; first token p50 {first['p50']}s "
        f"p95 {first['p95']}s; turn p50 {turn['p50']}s p95 {turn['p95']}s; HTTP {dict(tally.statuses)}; "
        f"SSE errors {dict(tally.sse_errors)}; silent {tally.silent_turns}; check-ins {tally.check_ins}",
        flush=True,
    )
    for failure in tally.failures[:10]:
        print(f"  {failure}", file=sys.stderr)
    return {
        "students": students,
        "wall_s": round(wall_s, 1),
        "outcomes": dict(tally.outcomes),
        "turns": len(tally.turn_s),
        "first_token_s": first,
        "turn_s": turn,
        "server_errors": tally.server_errors,
        "sse_errors": sum(tally.sse_errors.values()),
        "sse_error_codes": dict(tally.sse_errors),
        "silent_turns": tally.silent_turns,
        "check_ins": tally.check_ins,
        "http": {str(k): v for k, v in sorted(tally.statuses.items())},
    }


# ------------------------------------------------------------------ the stack


def stack_environment(folder: Path, corpus: Path, extra: dict[str, str]) -> dict[str, str]:
    """An isolated stack serving what ``make run`` serves (the embedded model and its adapter)."""
    env = stack_cli.isolated_env(folder, MODEL, corpus, **RAISED_LIMITS, **extra)
    env.pop("INTAKE_MODEL", None)  # the stack's own choice: the embedded model with the committed adapter
    env.pop("INTAKE_ADAPTER_PATH", None)
    models = folder / "models"
    if not models.exists():
        models.symlink_to((DATA / "models").resolve(), target_is_directory=True)
    return env


@contextlib.contextmanager
def own_stack(folder: Path, corpus: Path, extra: dict[str, str]) -> Iterator[dict[str, str]]:
    if not MODEL.is_dir():
        raise SystemExit(f"no model at {MODEL}: run `make model` first")
    folder.mkdir(parents=True, exist_ok=True)
    for kept_from_last_run in ("redis", "mail"):  # the course index is reused; intakes and jobs are not
        shutil.rmtree(folder / kept_from_last_run, ignore_errors=True)
    env = stack_environment(folder, corpus, extra)
    print(f"starting a stack in {folder} (gateway port {env['INTAKE_PORT']})", flush=True)
    try:
        stack_cli.up(env, timeout=900)
        yield env
    finally:
        stack_cli.down(env)


async def measure(env: dict[str, str], options: argparse.Namespace) -> dict[str, Any]:
    catalog = load_catalog(Path(env["INTAKE_CORPUS_DIR"]))
    courses = [catalog.courses[slug] for slug in sorted(catalog.courses)]
    target = Target(
        f"http://127.0.0.1:{env['INTAKE_PORT']}",
        env["INTAKE_CALCOM_WEBHOOK_SECRET"],
        env["INTAKE_REDIS_URL"],
        courses,
    )
    figures: dict[str, Any] = {"benchmark": "load", "cpus": _cpus()}
    if options.peer:
        alone, wall = await students(target, 1, options.think_s, options.seed + 1)
        figures["alone"] = describe("peer, one student alone", alone, wall, 1)
    if options.students:
        tally, wall = await students(target, options.students, options.think_s, options.seed)
        figures["load"] = describe("load", tally, wall, options.students)
    if options.deliveries:
        figures["ingest"] = await ingest(env, target, options)
    return figures


async def ingest(env: dict[str, str], target: Target, options: argparse.Namespace) -> dict[str, Any]:
    """Signed deliveries per second with the worker paused; ``/healthz`` per second as the peer."""
    stack_cli.ctl(env, "stop", "worker")
    try:
        waited = wait_until_quiet(env)
        host = httpx.URL(target.url).netloc.decode()
        health = [raw_request("GET", "/healthz", host)] * options.deliveries
        health_rate, health_statuses = await flood(target.url, health, options.connections)
        prepared = list(deliveries(target, options.deliveries))
        before = cpu_seconds(env, target.redis_url)
        rate, statuses = await flood(target.url, prepared, options.connections)
        cpu = {
            k: _per_delivery_ms(before[k], v, options.deliveries)
            for k, v in cpu_seconds(env, target.redis_url).items()
        }
        proxied = await _through_proxy(env, target, options) if options.proxy else {}
    finally:
        stack_cli.ctl(env, "start", "worker")
    print(
        f"ingest: {options.deliveries} signed deliveries, {options.connections} connections: {rate:.0f}/s "
        f"{dict(statuses)}; CPU per delivery: gateway {cpu['gateway']} ms, Redis {cpu['redis']} ms, "
        f"supervisord (the logs) {cpu['supervisord']} ms, this load generator {cpu['generator']} ms; "
        f"peer GET /healthz {health_rate:.0f}/s {dict(health_statuses)}; stack quiet after {waited:.0f}s",
        flush=True,
    )
    return {
        "deliveries": options.deliveries,
        "quiet_after_s": round(waited),
        "connections": options.connections,
        "per_s": round(rate),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "server_errors": sum(n for s, n in statuses.items() if s >= 500) + proxied.get("server_errors", 0),
        "healthz_per_s": round(health_rate),
        "cpu_ms_per_delivery": cpu,
        **({"two_gateways_behind_haproxy": proxied} if proxied else {}),
    }


async def _through_proxy(env: dict[str, str], target: Target, options: argparse.Namespace) -> dict[str, Any]:
    """The same flood through HAProxy (``config/haproxy.cfg``) over the stack's gateway and a second one."""
    with gateways_behind_proxy(env) as (url, second):
        prepared = list(deliveries(Target(url, *_rest(target)), options.deliveries))
        first = stack_cli.ctl(env, "pid", "gateway").stdout.strip()
        before = [_process_cpu_s(int(first)), _process_cpu_s(second)]
        rate, statuses = await flood(url, prepared, options.connections)
        after = [_process_cpu_s(int(first)), _process_cpu_s(second)]
    cpu = [_per_delivery_ms(b, a, options.deliveries) for b, a in zip(before, after, strict=True)]
    print(
        f"ingest through HAProxy, two gateways: {rate:.0f}/s {dict(statuses)}; gateway CPU per delivery "
        f"{cpu[0]} + {cpu[1]} ms",
        flush=True,
    )
    return {
        "gateway_cpu_ms_per_delivery": cpu,
        "per_s": round(rate),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "server_errors": sum(n for s, n in statuses.items() if s >= 500),
    }


def wait_until_quiet(
    env: dict[str, str],
    also: Sequence[int] = (),
    idle_cores: float = 0.1,
    window_s: float = 2.0,
    timeout_s: float = 300.0,
) -> float:
    """Seconds waited until the stack's programs (and the processes ``also``) together use under
    ``idle_cores`` of CPU over ``window_s``: a gateway that has just started embeds every course's map in
    a thread (tens of CPU seconds) and warms the model server's prompt cache, and a flood sent meanwhile
    measures that work too. Gives up after ``timeout_s``."""
    pids = [p for name in STACK_PROGRAMS if (p := stack_cli.ctl(env, "pid", name).stdout.strip()).isdigit()]
    pids += [str(pid) for pid in also]
    started = time.monotonic()
    last = _total_cpu_s(pids)
    while time.monotonic() - started < timeout_s:
        time.sleep(window_s)
        now = _total_cpu_s(pids)
        if now - last < idle_cores * window_s:
            break
        last = now
    return time.monotonic() - started


def _total_cpu_s(pids: Sequence[str]) -> float:
    return sum(_process_cpu_s(int(pid)) or 0.0 for pid in pids)


def cpu_seconds(env: dict[str, str], redis_url: str) -> dict[str, float | None]:
    """CPU seconds used so far by the gateway process and by Redis: what a delivery costs them depends far
    less than deliveries per second on what else keeps the machine's cores busy. Also supervisord's (it
    copies every program's output into the log files) and this process's own (the load generator): they
    share the same cores."""
    pid = stack_cli.ctl(env, "pid", "gateway").stdout.strip()
    supervisord = stack_cli.ctl(env, "pid").stdout.strip()
    with redis.Redis.from_url(redis_url) as client:
        used = client.info("cpu")
    return {
        "gateway": _process_cpu_s(int(pid)) if pid.isdigit() else None,
        "redis": float(used["used_cpu_user"]) + float(used["used_cpu_sys"]),
        "supervisord": _process_cpu_s(int(supervisord)) if supervisord.isdigit() else None,
        "generator": time.process_time(),
    }


def _process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process, from ``/proc`` (None where there is no ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _per_delivery_ms(before: float | None, after: float | None, count: int) -> float | None:
    return None if before is None or after is None else round((after - before) * 1000 / count, 2)


def _rest(target: Target) -> tuple[str, str, list[Course]]:
    return target.secret, target.redis_url, target.courses


@contextlib.contextmanager
def gateways_behind_proxy(env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """A second gateway on the stack's Redis and HAProxy in front of both, once it is idle; the proxy's URL
    and the second gateway's pid."""
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        raise SystemExit("--proxy needs HAProxy: `make proxy` installs Debian's")
    port, proxy, spare = stack_cli.free_port(), stack_cli.free_port(), stack_cli.free_port()
    inference = f"127.0.0.1:{env['INTAKE_INFERENCE_PORT']}"
    proxy_env = {
        **env,
        "INTAKE_PROXY_BIND": f"127.0.0.1:{proxy}",
        "INTAKE_PROXY_INFERENCE_BIND": f"127.0.0.1:{spare}",
        "INTAKE_GATEWAY_1": f"127.0.0.1:{env['INTAKE_PORT']}",
        "INTAKE_GATEWAY_2": f"127.0.0.1:{port}",
        "INTAKE_INFERENCE_1": inference,
        "INTAKE_INFERENCE_2": inference,
    }
    gateway = subprocess.Popen(
        [sys.executable, "-m", "services.gateway.app"],
        env={**env, "INTAKE_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    balancer = subprocess.Popen(
        [haproxy, "-db", "-f", str(REPO_ROOT / "config" / "haproxy.cfg")],
        env=proxy_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not _answers(f"http://127.0.0.1:{port}/healthz") and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(3)  # HAProxy puts a server in after two passed checks a second apart
        wait_until_quiet(env, also=[gateway.pid])  # its course maps, as for the first one
        yield f"http://127.0.0.1:{proxy}", gateway.pid
    finally:
        for proc in (balancer, gateway):
            proc.terminate()
            proc.wait(30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _cpus() -> int:
    return os.cpu_count() or 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--students", type=int, default=50)
    parser.add_argument("--think-s", type=float, default=3.0, help="mean pause between a student's answers")
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--no-peer", dest="peer", action="store_false", help="skip the one-student run")
    parser.add_argument("--proxy", action="store_true", help="ingest also through HAProxy over two gateways")
    parser.add_argument("--corpus", type=Path, default=REPO_ROOT / "corpus")
    parser.add_argument("--data", type=Path, default=DATA / "bench" / "load", help="the stack's data folder")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--set", action="append", default=[], metavar="INTAKE_X=V", help="extra stack setting"
    )
    options = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in options.set)
    with own_stack(options.data.resolve(), options.corpus.resolve(), extra) as env:
        figures = asyncio.run(measure(env, options))
    load = figures.get("load", {})
    ingest = figures.get("ingest", {})
    ok = not load.get("server_errors") and not load.get("sse_errors") and not ingest.get("server_errors")
    figures["ok"] = ok
    print(json.dumps(figures, sort_keys=True))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
