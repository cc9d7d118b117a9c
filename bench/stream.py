"""What every benchmark measures of one streamed chat completion, and how it reports a set of timings."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

from openai import OpenAI


def timed_stream(
    client: OpenAI, model: str, messages: Sequence[Any], max_tokens: int, temperature: float = 0.0
) -> dict[str, Any]:
    """One streamed completion: seconds to the first content token (None if nothing was streamed), total
    seconds, decode rate, prompt and cached prompt tokens (from ``stream_options.include_usage``), text."""
    start = time.perf_counter()
    first = last = None
    usage = None
    text = []
    chunks = client.chat.completions.create(  # type: ignore[call-overload]
        model=model,
        messages=list(messages),
        max_tokens=max_tokens,
        temperature=temperature,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in chunks:
        if chunk.usage:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].delta.content:
            last = time.perf_counter()
            first = first or last
            text.append(chunk.choices[0].delta.content)
    decoded = usage.completion_tokens - 1 if usage else 0
    details = getattr(usage, "prompt_tokens_details", None)
    return {
        "first_token_s": None if first is None else first - start,
        "total_s": time.perf_counter() - start,
        "decode_tok_s": decoded / (last - first)
        if first is not None and last is not None and decoded > 0 and last > first
        else float("nan"),
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "cached_tokens": (getattr(details, "cached_tokens", 0) or 0) if usage else None,
        "text": "".join(text),
    }


def median_p95(values: Sequence[float]) -> tuple[float, float]:
    """The median and the nearest-rank 95th percentile."""
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
