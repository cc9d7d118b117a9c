"""Run ``mlx_lm.server`` with the flags and environment the intake stack needs.

    python -m services.inference.server

We wrap it rather than fork it: this module only decides arguments and environment, then replaces
itself with the server so supervisor signals reach it directly. The server is ``mlx_lm``'s own, started
through ``services.inference.mlx_server``, which changes one thing: prompt-cache entries are evaluated
when stored, so they stop pinning whole batch buffers (see that module).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from services.settings import REPO_ROOT, Settings, load_settings

# The fine-tuned interviewer ``make finetune`` writes and the repository commits: served by default.
COMMITTED_ADAPTER = REPO_ROOT / "finetune" / "adapter"

# Debian's libopenblas0-pthread: MLX's CPU matmul is ~13x faster with it preloaded (README).
OPENBLAS_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
)

# Sized for intake traffic on two CPU cores (figures: README, Benchmarks). Each course's system prompt is
# one shared prefix and each conversation one cache entry (mlx-lm drops an entry's prefixes when the
# longer prompt is stored, and reuses a longer entry trimmed), so the cache needs about one entry per
# student chatting plus one per course: 64 entries. SmolLM2-135M keeps ~46 KB of float32 KV cache per
# token, so a 1,000-token intake is ~46 MB and 4 GB holds the lot. Prompt reading is the CPU's
# bottleneck: batching many prompts makes everyone wait for all of them, while 2 lets a short turn pass a
# long first prompt. Prefill in 256-token steps costs the same CPU as 2048 (measured) and lets running
# replies stream between steps. Decoding batches well (4 streams gave ~4x the tokens of one); the
# gateway's line (INTAKE_GENERATION_SLOTS) keeps the number of replies in flight near what this sustains.
SERVER_FLAGS: dict[str, str] = {
    "--prompt-cache-size": "64",
    "--prompt-cache-bytes": "4GB",
    "--decode-concurrency": "8",
    "--prompt-concurrency": "2",
    "--prefill-step-size": "256",
    "--max-tokens": "512",
}
# Apple Silicon runs MLX on the GPU: prompt reading is cheap there and large prefill steps use it well,
# so more prompts and replies go together; a 3B 4-bit model's fp16 KV cache is ~110 KB per token, hence
# the same byte cap with fewer, longer entries still fitting a 16 GB machine.
MAC_SERVER_FLAGS: dict[str, str] = SERVER_FLAGS | {
    "--decode-concurrency": "16",
    "--prompt-concurrency": "4",
    "--prefill-step-size": "2048",
}


def server_flags(platform: str = sys.platform) -> dict[str, str]:
    """The flags for this machine: the CPU ones on Linux, the Metal ones on macOS."""
    return MAC_SERVER_FLAGS if platform == "darwin" else SERVER_FLAGS


def build_command(settings: Settings) -> list[str]:
    """The ``mlx_lm`` server command line, always bound to loopback (the gateway is the public face)."""
    command = [sys.executable, "-m", "services.inference.mlx_server", "--model", settings.model_path]
    command += ["--host", "127.0.0.1", "--port", str(settings.inference_port)]
    command += ["--log-level", settings.log_level.upper()]
    if adapter := adapter_for(settings):
        command += ["--adapter-path", adapter]
    for flag, value in server_flags().items():
        command += [flag, value]
    return command


def adapter_for(settings: Settings, committed: Path = COMMITTED_ADAPTER) -> str | None:
    """The LoRA adapter to serve, from ``INTAKE_ADAPTER_PATH``.

    ``auto`` (the default, also when the variable is empty) serves the committed adapter, but only on
    the embedded base model it was trained on: with ``INTAKE_MODEL`` set, another model is served plain.
    ``none`` serves the base model without an adapter; anything else is an adapter folder.
    """
    value = settings.adapter_path.strip()
    if value.lower() == "none":
        return None
    if value.lower() != "auto":
        return value
    if settings.model or not (committed / "adapters.safetensors").is_file():
        return None
    return str(committed)


def build_environment(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """Offline hub in the data folder (``/v1/models`` crashes without ``hub/``), OpenBLAS on Linux."""
    env = dict(environ)
    hf_home = settings.data_path / "hf"
    (hf_home / "hub").mkdir(parents=True, exist_ok=True)
    env |= {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    if sys.platform != "linux":
        return env  # macOS runs MLX on Metal
    openblas = next((p for p in OPENBLAS_PATHS if Path(p).exists()), None)
    if openblas is None:
        print(
            "warning: libopenblas0-pthread is not installed; inference will be ~13x slower", file=sys.stderr
        )
        return env
    env["LD_PRELOAD"] = " ".join(filter(None, [openblas, env.get("LD_PRELOAD", "")]))
    env["OPENBLAS_NUM_THREADS"] = "1"
    return env


def ensure_default_model(settings: Settings) -> None:
    """Build the embedded model on first start, so a fresh checkout serves without a separate step."""
    if settings.model:
        return
    from services.inference.convert import convert, find_packaged_gguf

    convert(find_packaged_gguf(), Path(settings.model_path))


def main() -> NoReturn:
    settings = load_settings()
    ensure_default_model(settings)
    command = build_command(settings)
    os.execvpe(command[0], command, build_environment(settings, os.environ))


if __name__ == "__main__":
    main()
