"""How much memory does ``mlx_lm.server`` hold under concurrent chat: stock mlx-lm vs our launcher?

    .venv/bin/python -m bench.inference_memory                        # 60 requests, 8 clients, ~6 min
    .venv/bin/python -m bench.inference_memory --requests 20 --concurrency 4 --max-tokens 40

Starts two servers one after the other on a free loopback port, each in its own process group, with the
flags and environment ``services.inference.server`` gives the stack (``build_command``,
``build_environment``: the embedded model ``settings.model_path``, its adapter, the prompt-cache caps):

1. **peer:** stock mlx-lm, the same command with ``-m mlx_lm server`` in place of our launcher;
2. **ours:** ``-m services.inference.mlx_server``, which evaluates each prompt-cache entry when it is
   stored, so an entry holds its own KV cache and not the whole batch buffer it was sliced from.

Each server, once ``/v1/models`` answers and a one-token warm-up request has loaded the model, gets the
same workload: ``--concurrency`` clients, each a student in multi-turn chats that grow turn by turn (the
previous replies kept), three of four chats under one of three shared course system prompts, prompts of
about 30-600 words, ``--requests`` non-streamed ``/v1/chat/completions`` in all at temperature 0 and
``--max-tokens``. The students' words come from ``--seed`` alone; the replies are the server's, so the
two runs' prompts match as far as the two servers answer alike (the token counts show how far).

Measured: the resident memory (``VmRSS`` from ``/proc``) of the server process and its descendants, in GB
of 2**30 bytes, sampled every 0.5 s for the peak and again after every 10 requests; failed requests; the
wall time from the first request to the last reply. ``peak_ratio`` is ours' peak over the peer's (below 1:
ours holds less). The memory figures are the point; the wall times are rough, because on two shared CPU
cores whatever else runs meanwhile (the load average at each start is printed) moves them by tens of
percent. The servers are killed afterwards whatever happens.

Prints a table, then one JSON line with all the figures (the last line of output).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import httpx

from services.inference.server import adapter_for, build_command, build_environment
from services.settings import REPO_ROOT, Settings, load_settings
from services.stack import free_port

LAUNCHER = "services.inference.mlx_server"
STOCK = ["mlx_lm", "server"]  # ``python -m mlx_lm server``: mlx-lm's own entry point
MODEL_NAME = "default_model"  # mlx_lm.server's name for the model it was started with
READY_TIMEOUT_S = 180.0
SAMPLE_EVERY_S = 0.5
MARK_EVERY = 10  # requests between RSS marks
GB = 1024**3

# Chat turns are drawn from these words: the prompts' length is what matters, not their sense.
VOCABULARY = (
    "assignment lecture deadline essay lab exam tutor credit schedule prerequisite grade feedback project "
    "reading seminar library advisor transcript semester quiz homework algebra proof function recursion "
    "loop variable theorem citation paragraph thesis argument source draft outline rubric question answer "
    "example mistake step method result chart table dataset sample error bound limit integral derivative "
    "worried stuck confused unsure tried because maybe usually really think want need hope plan understand "
    "explain check compare start finish fix remember forget write read solve test"
)
WORDS = VOCABULARY.split()
COURSE_WORDS = (60, 90, 120)  # one shared system prompt per course, of this many words
FIRST_TURN_WORDS = (30, 160)  # a chat's opening message
LATER_TURN_WORDS = (20, 150)
NEW_CHAT_AFTER_WORDS = 450  # a chat this long ends; the student starts another (prompts stay under ~600)


# ------------------------------------------------------------------ the workload


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def course_prompts(seed: int) -> list[str]:
    """The shared system prompts, one per course."""
    prompts = []
    for number, words in enumerate(COURSE_WORDS, 1):
        rng = random.Random(f"{seed}-course-{number}")
        prompts.append(
            f"You are the office-hours intake assistant for course {number}. {sentence(rng, words)}"
        )
    return prompts


@dataclass
class Chat:
    """One conversation; its student's words come from its own seeded generator."""

    rng: random.Random
    messages: list[dict[str, str]]

    @classmethod
    def start(cls, number: int, seed: int, courses: Sequence[str]) -> Chat:
        shared = number % 4 != 3  # three chats of four run under a course's shared system prompt
        system = [{"role": "system", "content": courses[number % len(courses)]}] if shared else []
        return cls(random.Random(f"{seed}-chat-{number}"), system)

    @property
    def words(self) -> int:
        return sum(len(m["content"].split()) for m in self.messages)

    def ask(self) -> list[dict[str, str]]:
        """Append the student's next message; the messages to send."""
        opening = not any(m["role"] == "user" for m in self.messages)
        words = self.rng.randint(*(FIRST_TURN_WORDS if opening else LATER_TURN_WORDS))
        self.messages.append({"role": "user", "content": sentence(self.rng, words)})
        return list(self.messages)


def quotas(requests: int, clients: int) -> list[int]:
    """Requests per client, as even as they divide."""
    return [requests // clients + (1 if n < requests % clients else 0) for n in range(clients)]


# ------------------------------------------------------------------ memory


def vmrss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass  # exited meanwhile
    return 0


def descendants(root: int) -> list[int]:
    """``root`` and every process under it, from the parent ids in ``/proc/*/stat``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending += children.get(pid, [])
    return found


def rss_gb(root: int) -> float:
    return sum(vmrss_kb(pid) for pid in descendants(root)) * 1024 / GB


@dataclass
class Run:
    """What one server did under the workload."""

    label: str
    load_1m: float  # load average when the run started
    ready_gb: float = 0.0  # after the warm-up, before the workload
    marks_gb: list[float] = field(default_factory=list)
    peak_gb: float = 0.0
    wall_s: float = 0.0
    done: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failures: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {
            "rss_gb_ready": round(self.ready_gb, 2),
            "rss_gb_marks": [round(gb, 2) for gb in self.marks_gb],
            "peak_rss_gb": round(self.peak_gb, 2),
            "wall_s": round(self.wall_s, 1),
            "errors": self.errors,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "load_1m": round(self.load_1m, 2),
        }


# ------------------------------------------------------------------ one server


def commands(settings: Settings) -> dict[str, list[str]]:
    """The peer's and our command lines, identical but for the module ``python -m`` runs."""
    ours = build_command(settings)
    at = ours.index(LAUNCHER)
    if ours[at - 1] != "-m":
        raise SystemExit(f"unexpected launch command: {ours}")
    return {"peer": [*ours[:at], *STOCK, *ours[at + 1 :]], "ours": ours}


def with_port(command: Sequence[str], port: int) -> list[str]:
    out = list(command)
    out[out.index("--port") + 1] = str(port)
    return out


@contextlib.contextmanager
def server(command: Sequence[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The server in a process group of its own, output to ``log``; the group is killed on the way out."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group, SIGKILL to whatever of it is left after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


async def wait_ready(client: httpx.AsyncClient, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until ``/v1/models`` answers 200, then one one-token completion so the model is loaded."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get("/v1/models", timeout=2)).status_code == 200:
                break
        if time.monotonic() > deadline:
            raise RuntimeError(f"server not ready after {READY_TIMEOUT_S:.0f}s:\n{tail(log)}")
        await asyncio.sleep(0.5)
    warm_up = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    (await client.post("/v1/chat/completions", json=warm_up)).raise_for_status()


def tail(log: Path, chars: int = 2000) -> str:
    return log.read_text(errors="replace")[-chars:]


async def drive(client: httpx.AsyncClient, pid: int, run: Run, options: argparse.Namespace) -> None:
    """The workload against a ready server, sampling its memory meanwhile."""
    courses = course_prompts(options.seed)

    def sample() -> float:
        gb = rss_gb(pid)
        run.peak_gb = max(run.peak_gb, gb)
        return gb

    async def sampler() -> None:
        while True:
            sample()
            await asyncio.sleep(SAMPLE_EVERY_S)

    async def chat(text: list[dict[str, str]]) -> str:
        body = {"model": MODEL_NAME, "messages": text, "max_tokens": options.max_tokens, "temperature": 0}
        try:
            response = await client.post("/v1/chat/completions", json=body)
            response.raise_for_status()
            answer = response.json()
            usage = answer.get("usage") or {}
            run.prompt_tokens += int(usage.get("prompt_tokens", 0))
            run.completion_tokens += int(usage.get("completion_tokens", 0))
            return str(answer["choices"][0]["message"]["content"])
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            run.errors += 1
            run.failures.append(f"{type(exc).__name__}: {exc}"[:300])
            return "Okay."  # the chat goes on, as a student would after a failed reply
        finally:
            run.done += 1
            if run.done % MARK_EVERY == 0:
                run.marks_gb.append(sample())

    async def student(number: int, quota: int) -> None:
        chat_number = number
        current = Chat.start(chat_number, options.seed, courses)
        for _ in range(quota):
            if current.words > NEW_CHAT_AFTER_WORDS:
                chat_number += options.concurrency  # every client's chats are numbered apart
                current = Chat.start(chat_number, options.seed, courses)
            reply = await chat(current.ask())
            current.messages.append({"role": "assistant", "content": reply})

    run.ready_gb = sample()
    watcher = asyncio.create_task(sampler())
    started = time.perf_counter()
    try:
        shares = quotas(options.requests, options.concurrency)
        await asyncio.gather(*(student(n, q) for n, q in enumerate(shares) if q))
        run.wall_s = time.perf_counter() - started
        sample()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def measure(
    proc: subprocess.Popen[bytes], port: int, log: Path, run: Run, options: argparse.Namespace
) -> None:
    limits = httpx.Limits(max_connections=options.concurrency + 2)
    timeout = httpx.Timeout(900.0, connect=10.0)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=timeout, limits=limits
    ) as client:
        await wait_ready(client, proc, log)
        await drive(client, proc.pid, run, options)


def one_server(label: str, command: Sequence[str], env: dict[str, str], options: argparse.Namespace) -> Run:
    port = free_port()
    run = Run(label, os.getloadavg()[0])
    module = " ".join(command[1 : command.index("--model")])
    print(f"{label}: python {module} on port {port}, load average {run.load_1m:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix=f"bench-memory-{label}-") as folder:
        log = Path(folder) / "server.log"
        with server(with_port(command, port), env, log) as proc:
            asyncio.run(measure(proc, port, log, run, options))
    for failure in run.failures[:5]:
        print(f"  {label} error: {failure}", file=sys.stderr)
    print(f"{label}: peak {run.peak_gb:.2f} GB, {run.wall_s:.0f} s, {run.errors} errors", flush=True)
    return run


# ------------------------------------------------------------------ reporting


def table(runs: Sequence[Run]) -> str:
    rows: list[tuple[str, list[str]]] = [("RSS ready (GB)", [f"{r.ready_gb:.2f}" for r in runs])]
    for n in range(max(len(r.marks_gb) for r in runs)):
        cells = [f"{r.marks_gb[n]:.2f}" if n < len(r.marks_gb) else "-" for r in runs]
        rows.append((f"RSS after {(n + 1) * MARK_EVERY} (GB)", cells))
    rows += [
        ("peak RSS (GB)", [f"{r.peak_gb:.2f}" for r in runs]),
        ("wall (s)", [f"{r.wall_s:.1f}" for r in runs]),
        ("errors", [str(r.errors) for r in runs]),
        ("prompt tokens", [str(r.prompt_tokens) for r in runs]),
        ("completion tokens", [str(r.completion_tokens) for r in runs]),
        ("load average at start", [f"{r.load_1m:.2f}" for r in runs]),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"{'':<{width}}  " + "".join(f"{r.label:>10}" for r in runs)]
    lines += [f"{label:<{width}}  " + "".join(f"{c:>10}" for c in cells) for label, cells in rows]
    return "\n".join(lines)


def terminated(signum: int, frame: FrameType | None) -> NoReturn:
    """SIGTERM ends the run as Ctrl-C does: through the ``finally`` that kills the server's group."""
    raise SystemExit(128 + signum)


def shown(path: str | None) -> str | None:
    """A path inside the repository relative to it; others as they are."""
    if path is None or not Path(path).is_relative_to(REPO_ROOT):
        return path
    return str(Path(path).relative_to(REPO_ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.inference_memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=60, help="chat completions per server")
    parser.add_argument("--concurrency", type=int, default=8, help="clients chatting at once")
    parser.add_argument("--max-tokens", type=int, default=120, help="max_tokens of every request")
    parser.add_argument("--seed", type=int, default=7, help="the students' words")
    options = parser.parse_args(argv)
    if options.requests < 1 or options.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1")

    settings = load_settings()
    if not Path(settings.model_path).is_dir():
        raise SystemExit(f"no model at {settings.model_path}: run `make model` first")
    env = build_environment(settings, os.environ)
    signal.signal(signal.SIGTERM, terminated)
    runs = [one_server(label, command, env, options) for label, command in commands(settings).items()]
    peer, ours = runs

    print(table(runs))
    ratio = round(ours.peak_gb / peer.peak_gb, 2) if peer.peak_gb else None
    print(f"peak ratio (ours / peer): {ratio}", flush=True)
    figures = {
        "benchmark": "inference_memory",
        "model": Path(settings.model_path).name,
        "adapter": shown(adapter_for(settings)),
        "requests": options.requests,
        "concurrency": options.concurrency,
        "max_tokens": options.max_tokens,
        "seed": options.seed,
        "mark_every": MARK_EVERY,
        "cpus": os.cpu_count() or 0,
        "peer": peer.figures(),
        "ours": ours.figures(),
        "peak_ratio": ratio,
    }
    print(json.dumps(figures))
    return 0 if not peer.errors and not ours.errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
