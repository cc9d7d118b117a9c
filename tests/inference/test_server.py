"""mlx_lm.server started through our launcher, spoken to the way the gateway does."""

from __future__ import annotations

import pytest
from openai import AsyncOpenAI

from services.inference.probe import probe_generation

pytestmark = pytest.mark.slow


async def test_streamed_chat_completion(inference_server: str) -> None:
    """A streamed chat completion for model "default_model" arrives in pieces and answers the question."""
    client = AsyncOpenAI(base_url=inference_server, api_key="unused", timeout=120, max_retries=0)
    stream = await client.chat.completions.create(
        model="default_model",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=12,
        temperature=0.0,
        stream=True,
    )
    pieces = [
        chunk.choices[0].delta.content
        async for chunk in stream
        if chunk.choices and chunk.choices[0].delta.content
    ]
    await client.close()
    assert len(pieces) > 1
    assert "Paris" in "".join(pieces)


async def test_probe_succeeds_against_running_server(inference_server: str) -> None:
    """The readiness probe gets a real two-token completion from a healthy server."""
    result = await probe_generation(inference_server, "default_model", timeout=60)
    assert result.ok, result.error
    assert result.error is None
    assert 0 < result.latency_s < 60
