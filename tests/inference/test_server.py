"""mlx_lm.server started through our launcher, spoken to the way the gateway does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from openai import AsyncOpenAI

from services.inference.probe import probe_generation, wait_for_generation
from services.inference.server import COMMITTED_ADAPTER
from services.settings import REPO_ROOT
from tests.fixtures.ports import free_port

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


_INTAKE_PROMPT = [
    {
        "role": "system",
        "content": "You help Sam get ready for office hours in BIO 150. Ask ONE short question.",
    },
    {"role": "assistant", "content": "Hi Sam! What would you like help with?"},
    {
        "role": "user",
        "content": "I'm stuck on lab 3, the osmosis graph | [Ask what they have already tried.]",
    },
]


async def _greedy(url: str) -> str:
    client = AsyncOpenAI(base_url=url, api_key="unused", timeout=120, max_retries=0)
    out = await client.chat.completions.create(
        model="default_model",
        messages=_INTAKE_PROMPT,
        max_tokens=24,
        temperature=0.0,  # type: ignore[arg-type]
    )
    await client.close()
    return out.choices[0].message.content or ""


async def test_default_launch_serves_the_committed_adapter(
    converted_model: Path, inference_server: str, tmp_path: Path
) -> None:
    """With INTAKE_MODEL and INTAKE_ADAPTER_PATH unset, the launcher starts mlx_lm.server with the
    committed fine-tuned adapter: the process carries --adapter-path, it answers, and its greedy answer to
    an intake prompt differs from the plain base model's (the inference_server fixture runs with none)."""
    data = tmp_path / "data"
    (data / "models").mkdir(parents=True)
    (data / "models" / converted_model.name).symlink_to(converted_model, target_is_directory=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"INTAKE_MODEL", "INTAKE_ADAPTER_PATH"}}
    env |= {"INTAKE_DATA_DIR": str(data), "INTAKE_INFERENCE_PORT": str(port)}
    with (tmp_path / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.inference.server"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            url = f"http://127.0.0.1:{port}/v1"
            ready = await wait_for_generation(url, "default_model", timeout=60, wait=180)
            assert ready.ok, (tmp_path / "server.log").read_text(errors="replace")[-2000:]
            command = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
            assert str(COMMITTED_ADAPTER).encode() in command and b"--adapter-path" in command
            tuned, base = await _greedy(url), await _greedy(inference_server)
            assert tuned.strip() and "?" in tuned
            assert tuned != base
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
