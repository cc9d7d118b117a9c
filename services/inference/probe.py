"""Is inference actually generating? A two-token chat completion with a deadline.

    python -m services.inference.probe [--url URL] [--wait SECONDS]   # exit 0 when it generates, else 1

A port check is not enough: ``mlx_lm.server``'s generation thread can die while HTTP keeps answering
``/health``. So ``/readyz`` and the Makefile ask for a real completion through the same OpenAI client
the gateway uses, which also proves the model name resolves.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import msgspec
from openai import APIConnectionError, APIStatusError, AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from services.settings import load_settings

PROBE_MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say OK."}]


class ProbeResult(msgspec.Struct, frozen=True):
    """Outcome of one probe; ``error`` says what failed in words an operator can act on."""

    ok: bool
    latency_s: float
    error: str | None = None


async def probe_generation(base_url: str, model: str = "default_model", timeout: float = 20.0) -> ProbeResult:
    """Ask ``base_url`` (an OpenAI ``/v1`` root) for two tokens within ``timeout`` seconds."""
    start = time.perf_counter()
    client = AsyncOpenAI(base_url=base_url, api_key="unused", timeout=timeout, max_retries=0)
    try:
        async with asyncio.timeout(timeout):
            reply = await client.chat.completions.create(
                model=model,
                messages=PROBE_MESSAGES,
                max_tokens=2,
                temperature=0.0,
            )
        error = None if reply.choices else "the server answered without a completion"
    except Exception as exc:  # every failure is an answer here, never a crash of /readyz
        error = _describe(exc, base_url, timeout)
    finally:
        await client.close()
    return ProbeResult(ok=error is None, latency_s=time.perf_counter() - start, error=error)


def _describe(exc: Exception, base_url: str, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no completion from {base_url} within {timeout:g}s"
    if isinstance(exc, APIConnectionError):
        return f"cannot reach inference at {base_url}: {exc.__cause__ or exc}"
    if isinstance(exc, APIStatusError):
        return f"inference at {base_url} answered HTTP {exc.status_code}: {exc.message}"
    return f"inference probe failed: {type(exc).__name__}: {exc}"


async def wait_for_generation(base_url: str, model: str, timeout: float, wait: float) -> ProbeResult:
    """Probe once a second until success or ``wait`` seconds pass, for start-up scripts."""
    deadline = time.monotonic() + wait
    while True:
        result = await probe_generation(base_url, model, timeout)
        if result.ok or time.monotonic() >= deadline:
            return result
        await asyncio.sleep(1.0)


def main(argv: list[str] | None = None) -> None:
    settings = load_settings()
    parser = argparse.ArgumentParser(description="Exit 0 when inference generates, else 1.")
    parser.add_argument("--url", default=settings.inference_url, help="OpenAI base URL, ending in /v1")
    parser.add_argument("--model", default=settings.model_name)
    parser.add_argument("--timeout", type=float, default=settings.probe_timeout_s, help="seconds per probe")
    parser.add_argument("--wait", type=float, default=0.0, help="keep probing this many seconds")
    args = parser.parse_args(argv)
    result = asyncio.run(wait_for_generation(args.url, args.model, args.timeout, args.wait))
    print(f"ok in {result.latency_s:.2f}s" if result.ok else f"not ready: {result.error}", file=sys.stderr)
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
