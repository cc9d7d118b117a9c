"""What the launcher hands to mlx_lm.server: flags and environment (no server is started here)."""

from __future__ import annotations

import sys
from pathlib import Path

from services.inference.server import OPENBLAS_PATHS, build_command, build_environment
from services.settings import Settings


def test_command_serves_the_configured_model_on_loopback(tmp_path: Path) -> None:
    """The model folder, loopback host, configured port and an adapter reach mlx_lm's server subcommand."""
    settings = Settings(data_dir=str(tmp_path), inference_port=8123, adapter_path="/adapters/x")
    command = build_command(settings)
    assert command[:4] == [sys.executable, "-m", "mlx_lm", "server"]
    args = dict(zip(command[4::2], command[5::2], strict=True))
    assert args["--model"] == str(tmp_path / "models" / "smollm2-135m-instruct-f32")
    assert (args["--host"], args["--port"], args["--adapter-path"]) == ("127.0.0.1", "8123", "/adapters/x")
    assert "--prompt-cache-size" in args


def test_environment_is_offline_with_an_existing_hub_folder(tmp_path: Path) -> None:
    """HF_HOME lives in the data folder with hub/ created (else /v1/models crashes), the hub is offline,
    and on Linux Debian's OpenBLAS is preloaded single-threaded when installed."""
    env = build_environment(Settings(data_dir=str(tmp_path)), {"PATH": "/bin"})
    assert env["HF_HOME"] == str(tmp_path / "hf")
    assert (tmp_path / "hf" / "hub").is_dir()
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["PATH"] == "/bin"
    openblas = [p for p in OPENBLAS_PATHS if Path(p).exists()]
    if sys.platform == "linux" and openblas:
        assert env["LD_PRELOAD"] == openblas[0]
        assert env["OPENBLAS_NUM_THREADS"] == "1"
