"""What the launcher hands to mlx_lm.server: flags, adapter and environment (no server started here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from services.inference.server import (
    COMMITTED_ADAPTER,
    OPENBLAS_PATHS,
    adapter_for,
    build_command,
    build_environment,
    server_flags,
)
from services.settings import Settings, load_settings


def _args(command: list[str]) -> dict[str, str]:
    return dict(zip(command[3::2], command[4::2], strict=True))


@pytest.fixture
def committed(tmp_path: Path) -> Path:
    """A committed-adapter folder with its weights file, standing in for finetune/adapter."""
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapters.safetensors").write_bytes(b"weights")
    return folder


def test_command_serves_the_configured_model_on_loopback(tmp_path: Path) -> None:
    """The model folder, loopback host, configured port and an adapter reach mlx_lm's server (started
    through the launcher that evaluates prompt-cache entries on insert)."""
    settings = Settings(data_dir=str(tmp_path), inference_port=8123, adapter_path="/adapters/x")
    command = build_command(settings)
    assert command[:3] == [sys.executable, "-m", "services.inference.mlx_server"]
    args = _args(command)
    assert args["--model"] == str(tmp_path / "models" / "smollm2-135m-instruct-f32")
    assert (args["--host"], args["--port"], args["--adapter-path"]) == ("127.0.0.1", "8123", "/adapters/x")
    assert "--prompt-cache-size" in args


def test_the_committed_adapter_is_served_by_default() -> None:
    """With nothing set, the launcher serves the embedded model with the repository's fine-tuned adapter,
    which must exist (make finetune writes it; it is committed)."""
    assert (COMMITTED_ADAPTER / "adapters.safetensors").is_file()
    assert (COMMITTED_ADAPTER / "adapter_config.json").is_file()
    args = _args(build_command(load_settings({})))
    assert args["--adapter-path"] == str(COMMITTED_ADAPTER)


def test_default_adapter_choice(committed: Path, tmp_path: Path) -> None:
    """Unset or empty INTAKE_ADAPTER_PATH means the committed adapter on the embedded model; "none" (any
    case) means the plain base model; an INTAKE_MODEL override is served plain unless an adapter is named."""
    assert load_settings({}).adapter_path == "auto"
    assert load_settings({"INTAKE_ADAPTER_PATH": ""}).adapter_path == "auto"
    assert adapter_for(load_settings({}), committed) == str(committed)
    assert adapter_for(load_settings({"INTAKE_ADAPTER_PATH": "none"}), committed) is None
    assert adapter_for(load_settings({"INTAKE_ADAPTER_PATH": "None"}), committed) is None
    other = load_settings({"INTAKE_MODEL": "/models/bigger"})
    assert adapter_for(other, committed) is None
    named = load_settings({"INTAKE_MODEL": "/models/bigger", "INTAKE_ADAPTER_PATH": "/a/b"})
    assert adapter_for(named, committed) == "/a/b"
    assert adapter_for(load_settings({}), tmp_path / "missing") is None  # no adapter trained yet


def test_command_without_adapter_when_disabled(tmp_path: Path) -> None:
    """INTAKE_ADAPTER_PATH=none (the evaluation's "base" run) leaves --adapter-path off the command line,
    while the same settings otherwise do carry it."""
    plain = build_command(load_settings({"INTAKE_DATA_DIR": str(tmp_path), "INTAKE_ADAPTER_PATH": "none"}))
    default = build_command(load_settings({"INTAKE_DATA_DIR": str(tmp_path)}))
    assert "--adapter-path" not in plain
    assert "--adapter-path" in default
    assert _args(plain)["--model"] == _args(default)["--model"]


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


def test_server_flags_differ_on_apple_silicon() -> None:
    """Linux CPU: small prefill steps and two prompts at once (prompt reading is the bottleneck); macOS
    (Metal): larger steps and more in flight. Both keep a cache of one entry per student plus courses."""
    linux, mac = server_flags("linux"), server_flags("darwin")
    assert (linux["--prefill-step-size"], linux["--prompt-concurrency"]) == ("256", "2")
    assert int(mac["--prefill-step-size"]) > int(linux["--prefill-step-size"])
    assert int(mac["--decode-concurrency"]) > int(linux["--decode-concurrency"])
    assert linux["--prompt-cache-size"] == mac["--prompt-cache-size"] == "64"
