"""Train the LoRA adapter with mlx_lm, record the loss curve, and fuse it into a servable model folder.

Runs ``mlx_lm``'s own LoRA trainer in-process (``mlx_lm.lora.train_model`` with the settings of
``finetune/lora.yaml``), so a training callback records every reported train and validation loss into
``<data_dir>/finetune/loss.json`` as it goes (watch it during a long run) and a plot into ``loss.png``.
Then ``mlx_lm fuse`` merges the adapter into ``<data_dir>/models/intake-finetuned`` (float32, like the
base, so nothing is de-quantized). Serve it with ``INTAKE_MODEL=<data_dir>/models/intake-finetuned make
run``, or serve the unfused adapter with ``INTAKE_ADAPTER_PATH=<data_dir>/finetune/adapters``.

On Linux the process re-executes itself once with OpenBLAS preloaded and one BLAS thread: MLX's CPU
matmul is an order of magnitude faster that way (DESIGN.md).

Usage: ``python -m finetune.train [--iters N] [--no-fuse] [--data-dir DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import yaml

from services.settings import load_settings

CONFIG_PATH = Path(__file__).with_name("lora.yaml")
OPENBLAS = Path("/usr/lib/x86_64-linux-gnu/libopenblas.so.0")
BASE_MODEL_NAME = "smollm2-135m-instruct-f32"
FUSED_NAME = "intake-finetuned"


def blas_env(environ: dict[str, str]) -> dict[str, str] | None:
    """The environment to re-execute with, or None when it is already right (or not Linux)."""
    if sys.platform != "linux" or not OPENBLAS.exists() or str(OPENBLAS) in environ.get("LD_PRELOAD", ""):
        return None
    preload = " ".join(x for x in (str(OPENBLAS), environ.get("LD_PRELOAD", "")) if x)
    return {**environ, "LD_PRELOAD": preload, "OPENBLAS_NUM_THREADS": "1"}


def training_args(config: dict[str, Any], overrides: dict[str, Any]) -> types.SimpleNamespace:
    """mlx_lm.lora's defaults, then the YAML, then command-line overrides (the way mlx_lm.lora merges)."""
    from mlx_lm.lora import CONFIG_DEFAULTS

    merged = {**CONFIG_DEFAULTS, **config, **{k: v for k, v in overrides.items() if v is not None}}
    schedule = merged.get("lr_schedule")
    if schedule and "iters" in overrides and overrides["iters"]:
        arguments = list(schedule["arguments"])
        arguments[1] = overrides["iters"]  # the decay spans the whole (shortened or longer) run
        merged["lr_schedule"] = {
            **schedule,
            "arguments": arguments,
            "warmup": min(schedule.get("warmup", 0), max(0, overrides["iters"] // 10)),
        }
    return types.SimpleNamespace(**merged)


class TimeBudgetReached(Exception):
    """Raised from the callback to end training early; the adapter is saved first."""


class LossRecorder:
    """mlx_lm ``TrainingCallback``: appends each report to ``loss.json`` (rewritten every time).

    With a time budget it also ends the run at the first report past the budget, after saving the
    adapter: on a shared 2-core machine the speed per iteration varies several-fold with load.
    """

    def __init__(
        self, path: Path, meta: dict[str, Any], budget_s: float | None = None, save: Any = None
    ) -> None:
        self.path = path
        self.started = time.monotonic()
        self.budget_s = budget_s
        self.save = save
        self.data: dict[str, Any] = {**meta, "train": [], "val": [], "elapsed_s": 0.0, "stopped_early": False}

    def on_train_loss_report(self, info: dict[str, Any]) -> None:
        self.data["train"].append(
            {
                "iteration": int(info["iteration"]),
                "loss": round(float(info["train_loss"]), 4),
                "learning_rate": float(info["learning_rate"]),
                "it_per_s": round(float(info["iterations_per_second"]), 3),
                "tokens_per_s": round(float(info["tokens_per_second"]), 1),
            }
        )
        self._write()
        if self.budget_s and time.monotonic() - self.started > self.budget_s:
            self.data["stopped_early"] = True
            self._write()
            if self.save:
                self.save()
            raise TimeBudgetReached

    def on_val_loss_report(self, info: dict[str, Any]) -> None:
        self.data["val"].append(
            {
                "iteration": int(info["iteration"]),
                "loss": round(float(info["val_loss"]), 4),
                "seconds": round(float(info["val_time"]), 1),
            }
        )
        self._write()

    def _write(self) -> None:
        self.data["elapsed_s"] = round(time.monotonic() - self.started, 1)
        self.path.write_text(json.dumps(self.data, indent=1))


def plot_loss(loss: dict[str, Any], out: Path) -> None:
    """Train and validation loss against iterations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if loss["train"]:
        ax.plot([r["iteration"] for r in loss["train"]], [r["loss"] for r in loss["train"]], label="train")
    if loss["val"]:
        ax.plot(
            [r["iteration"] for r in loss["val"]], [r["loss"] for r in loss["val"]], "o-", label="validation"
        )
    ax.set_xlabel("iteration (batch of 2)")
    ax.set_ylabel("loss (assistant reply tokens only)")
    ax.set_title(f"LoRA on {Path(loss.get('model', '')).name}: {loss.get('train_examples', '?')} examples")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def train(args: types.SimpleNamespace, loss_path: Path, budget_s: float | None = None) -> dict[str, Any]:
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.lora import train_model
    from mlx_lm.tuner.datasets import load_dataset
    from mlx_lm.utils import load

    loaded = load(args.model)
    model, tokenizer = loaded[0], loaded[1]
    train_set, valid_set, _ = load_dataset(args, tokenizer)  # type: ignore[arg-type]
    meta = {
        "model": args.model,
        "train_examples": len(train_set),
        "valid_examples": len(valid_set),
        "iters": args.iters,
        "batch_size": args.batch_size,
        "num_layers": args.num_layers,
        "learning_rate": args.learning_rate,
        "mask_prompt": args.mask_prompt,
    }

    def save() -> None:
        weights = dict(tree_flatten(model.trainable_parameters()))
        mx.save_safetensors(str(Path(args.adapter_path) / "adapters.safetensors"), weights)

    recorder = LossRecorder(loss_path, meta, budget_s, save)
    try:
        train_model(args, model, train_set, valid_set, training_callback=recorder)  # type: ignore[arg-type]
    except TimeBudgetReached:
        print(
            f"time budget of {budget_s:.0f}s reached: adapter saved after "
            f"{recorder.data['train'][-1]['iteration']} iterations"
        )
    recorder._write()
    return recorder.data


def _first_last(loss: dict[str, Any]) -> str:
    train = loss["train"]
    return f"{train[0]['loss']} -> {train[-1]['loss']}" if train else "not reported"


def fuse(model: str, adapters: Path, out: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mlx_lm",
            "fuse",
            "--model",
            model,
            "--adapter-path",
            str(adapters),
            "--save-path",
            str(out),
        ],
        check=True,
    )


def main(argv: list[str] | None = None) -> int:
    settings = load_settings()
    parser = argparse.ArgumentParser(prog="python -m finetune.train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIG_PATH)
    parser.add_argument("--data-dir", type=Path, default=settings.data_path)
    parser.add_argument("--model", default=None, help="base model folder (default: the embedded SmolLM2)")
    parser.add_argument("--iters", type=int, default=None)
    parser.add_argument("--adapter-path", type=Path, default=None)
    parser.add_argument("--save-path", type=Path, default=None, help="fused model folder")
    parser.add_argument("--no-fuse", action="store_true")
    parser.add_argument(
        "--minutes",
        type=float,
        default=25.0,
        help="stop (and keep the adapter) at the first loss report after this long; 0 = no limit",
    )
    options = parser.parse_args(argv)
    if env := blas_env(dict(os.environ)):
        os.execve(sys.executable, [sys.executable, "-m", "finetune.train", *(argv or sys.argv[1:])], env)
    root = options.data_dir / "finetune"
    model = options.model or str(options.data_dir / "models" / BASE_MODEL_NAME)
    adapters = options.adapter_path or root / "adapters"
    fused = options.save_path or options.data_dir / "models" / FUSED_NAME
    config = yaml.safe_load(options.config.read_text())
    args = training_args(
        config,
        {
            "model": model,
            "data": str(root / "data"),
            "adapter_path": str(adapters),
            "iters": options.iters,
            "train": True,
        },
    )
    started = time.monotonic()
    loss = train(args, root / "loss.json", options.minutes * 60 or None)
    plot_loss(loss, root / "loss.png")
    print(
        f"trained {loss['train'][-1]['iteration'] if loss['train'] else 0} of {args.iters} iterations "
        f"in {time.monotonic() - started:.0f}s; "
        f"loss {_first_last(loss)}; "
        f"curve: {root / 'loss.json'}, {root / 'loss.png'}"
    )
    if not options.no_fuse:
        fuse(model, adapters, fused)
        print(f"fused model: {fused}\nserve it with: INTAKE_MODEL={fused} make run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
