"""Time to first token through the gateway vs calling ``mlx_lm.server`` directly with the same prompts.

Against a running stack (``make run``): books N intakes with signed webhooks, chats through the public API
and times the first SSE ``token`` of every turn. The peer, measured in the same run, replays each intake's
exact prompts (read from its Redis record) straight to the inference server with the openai client, turn by
turn, behind a one-line nonce so neither side profits from the other's prompt cache: same prompt growth,
same cache behaviour, no gateway. Also prints first token at turn 1 vs the last turn and the cached-token
share the server reports in ``usage``.

    .venv/bin/python -m bench.ttft --intakes 3
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec
import redis
from openai import OpenAI

from bench.stream import median_p95, timed_stream
from finetune.evaluate import sse_events
from services.coursepack import load_catalog
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


@dataclass
class Conversation:
    token: str
    gateway_ttft: list[float] = field(default_factory=list)
    direct_ttft: list[float] = field(default_factory=list)
    cached_share: list[float] = field(default_factory=list)


def book(client: httpx.Client, settings: Settings, r: redis.Redis, course_slug: str) -> str:
    course = load_catalog(Path(settings.corpus_dir)).courses[course_slug]
    payload = demo_payload(course)
    body = json.dumps(payload).encode()
    headers = {
        "content-type": "application/json",
        SIGNATURE_HEADER: sign(body, settings.calcom_webhook_secret),
    }
    client.post("/webhooks/calcom", content=body, headers=headers).raise_for_status()
    token = r.get(f"intake:booking:{payload['payload']['uid']}")
    assert isinstance(token, bytes), "the webhook created no intake"
    return token.decode()


def chat(client: httpx.Client, token: str) -> list[float]:
    """Talk until the interview is over; the first-token time of every turn, in seconds."""
    client.post(f"/api/intakes/{token}/consent").raise_for_status()
    times: list[float] = []
    for line in STUDENT_LINES:
        start = time.perf_counter()
        first: float | None = None
        status = "active"
        with client.stream("POST", f"/api/intakes/{token}/messages", json={"text": line}) as response:
            response.raise_for_status()
            for event, data in sse_events(response.iter_lines()):
                if event == "token" and first is None:
                    first = time.perf_counter() - start
                elif event == "done":
                    status = data["status"]
        times.append(first if first is not None else time.perf_counter() - start)
        if status != "active":
            break
    return times


def replay(openai: OpenAI, model: str, record: IntakeRecord, conv: Conversation, max_tokens: int) -> None:
    """The same prompts, turn by turn, straight to the inference server."""
    prompt = record.interview.prompt
    nonce = f"(run {secrets.token_hex(4)})\n"
    user_positions = [i for i, m in enumerate(prompt) if m["role"] == "user"]
    for position in user_positions:
        messages = [dict(m) for m in prompt[: position + 1]]
        messages[0] = {**messages[0], "content": nonce + messages[0]["content"]}
        run = timed_stream(openai, model, messages, max_tokens, temperature=0.2)
        if run["prompt_tokens"] is not None:
            conv.cached_share.append(run["cached_tokens"] / max(1, run["prompt_tokens"]))
        conv.direct_ttft.append(run["first_token_s"] if run["first_token_s"] is not None else run["total_s"])


def summarize(label: str, values: list[float]) -> str:
    if not values:
        return f"{label:<34} n=0"
    median, p95 = median_p95(values)
    return f"{label:<34} n={len(values):<3} median {median:6.2f}s  p95 {p95:6.2f}s"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--intakes", type=int, default=3)
    parser.add_argument("--course", default=None, help="course slug (default: the first one)")
    options = parser.parse_args()
    settings = load_settings(stack_env())
    r = redis.Redis.from_url(settings.redis_url)
    openai = OpenAI(base_url=settings.inference_url, api_key="local", timeout=300, max_retries=0)
    course = options.course or sorted(load_catalog(Path(settings.corpus_dir)).courses)[0]
    conversations: list[Conversation] = []
    with httpx.Client(base_url=f"http://127.0.0.1:{settings.port}", timeout=300) as client:
        for _ in range(options.intakes):
            conv = Conversation(book(client, settings, r, course))
            conv.gateway_ttft = chat(client, conv.token)
            conversations.append(conv)
    for conv in conversations:
        raw = r.get(f"intake:tok:{conv.token}")
        assert raw, "intake vanished"
        replay(
            openai,
            settings.model_name,
            msgspec.json.decode(raw, type=IntakeRecord),
            conv,
            settings.reply_max_tokens,
        )
    direct = [t for c in conversations for t in c.direct_ttft]
    print(f"course {course}, {len(conversations)} intakes, model {settings.model_path}")
    print(summarize("gateway first token (all turns)", [t for c in conversations for t in c.gateway_ttft]))
    print(summarize("direct mlx_lm.server first token", direct))
    print(summarize("gateway first token, turn 1", [c.gateway_ttft[0] for c in conversations]))
    print(summarize("gateway first token, last turn", [c.gateway_ttft[-1] for c in conversations]))
    print(summarize("direct first token, turn 1", [c.direct_ttft[0] for c in conversations if c.direct_ttft]))
    print(
        summarize(
            "direct first token, last turn", [c.direct_ttft[-1] for c in conversations if c.direct_ttft]
        )
    )
    shares = [s for c in conversations for s in c.cached_share[1:]]
    if shares:
        print(f"{'cached prompt-token share, turns 2+':<34} mean {statistics.mean(shares):.0%}")


if __name__ == "__main__":
    main()
