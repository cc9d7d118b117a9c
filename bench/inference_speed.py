"""How fast does a running inference server answer, the way the gateway calls it?

    python -m bench.inference_speed [http://127.0.0.1:8081/v1] [-n 5]   # default: INTAKE_INFERENCE_URL

Streams completions through the OpenAI client and prints first-token latency (median, p95) for a short
and a ~400-token prompt, each cold (a unique first line defeats the prompt cache) and warm (the same
prompt again), first-token latency per turn of a growing append-only chat, and decode speed. On a CPU,
prompt reading dominates, so the warm and per-turn rows are the ones the interview design relies on.
"""

from __future__ import annotations

import argparse
import statistics
import uuid
from concurrent.futures import ThreadPoolExecutor

from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam

from bench.stream import median_p95, timed_stream
from services.settings import load_settings

COURSE_NOTES = (
    "Course CS 101, Introduction to Programming. Assignment A3, Recursion, is due Friday at 11:59pm. "
    "Students write recursive functions for factorial, Fibonacci and binary search, then trace the call "
    "stack by hand. Common errors: a missing base case that recurses forever, a base case that returns "
    "the wrong value, forgetting to return the recursive call's result, and off-by-one mistakes in the "
    "binary search bounds. "
)
SYSTEM = "You are an office-hours intake assistant. Ask one short question at a time. Do not solve problems."
STUDENT_TURNS = [
    "Hi, I need help with the recursion assignment.",
    "My binary search never stops on some inputs.",
    "I tried printing low and high and they stop changing.",
    "I think my base case is wrong but I am not sure.",
    "I want to understand how to pick the base case.",
    "It is due on Friday.",
]


def _messages(nonce: str, long: bool) -> list[ChatCompletionMessageParam]:
    system = f"{nonce}{SYSTEM}\n\n{COURSE_NOTES * 4 if long else ''}"
    return [{"role": "system", "content": system}, {"role": "user", "content": STUDENT_TURNS[0]}]


def stream(client: OpenAI, model: str, messages: list[ChatCompletionMessageParam], max_tokens: int) -> dict:
    """One streamed completion (``bench.stream.timed_stream``) that must stream tokens and report usage."""
    run = timed_stream(client, model, messages, max_tokens)
    assert run["first_token_s"] is not None and run["prompt_tokens"] is not None, "no tokens streamed"
    return run


def _summary(label: str, runs: list[dict]) -> str:
    median, p95 = median_p95([r["first_token_s"] for r in runs])
    return (
        f"{label:<28} prompt {runs[0]['prompt_tokens']:>4} tok   first token median "
        f"{median:6.2f}s  p95 {p95:6.2f}s  (n={len(runs)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    settings = load_settings()
    parser.add_argument("url", nargs="?", default=settings.inference_url, help="OpenAI base URL (/v1)")
    parser.add_argument("--model", default=settings.model_name)
    parser.add_argument("-n", type=int, default=5, help="repetitions per row")
    parser.add_argument("--decode-tokens", type=int, default=128)
    args = parser.parse_args()
    client = OpenAI(base_url=args.url, api_key="unused", timeout=300, max_retries=0)

    stream(client, args.model, _messages("", False), 2)  # load the model before timing anything
    for label, long in [("short", False), ("~400-token", True)]:
        cold = [
            stream(client, args.model, _messages(f"[{uuid.uuid4().hex[:8]}] ", long), 8)
            for _ in range(args.n)
        ]
        print(_summary(f"{label} prompt, cold", cold))
        warm = [stream(client, args.model, _messages("", long), 8) for _ in range(args.n + 1)][1:]
        print(_summary(f"{label} prompt, repeated", warm))

    messages = _messages(f"[{uuid.uuid4().hex[:8]}] ", True)[:1]
    for turn, student in enumerate(STUDENT_TURNS, 1):
        messages.append({"role": "user", "content": student})
        run = stream(client, args.model, messages, 40)
        messages.append({"role": "assistant", "content": run["text"]})
        print(
            f"append-only chat, turn {turn}    prompt {run['prompt_tokens']:>4} tok   "
            f"first token {run['first_token_s']:6.2f}s"
        )

    story: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Write a long story about recursion."}
    ]
    decode = [stream(client, args.model, story, args.decode_tokens) for _ in range(3)]
    rate = statistics.median(r["decode_tok_s"] for r in decode)
    print(f"decode, 1 stream             {rate:6.1f} tok/s per stream")
    with ThreadPoolExecutor(4) as pool:  # continuous batching: what several students at once get
        parallel = list(pool.map(lambda _: stream(client, args.model, story, args.decode_tokens), range(4)))
    rates = [r["decode_tok_s"] for r in parallel]
    per_stream = statistics.median(rates)
    print(f"decode, 4 concurrent streams {per_stream:6.1f} tok/s per stream, {sum(rates):.1f} in all")


if __name__ == "__main__":
    main()
