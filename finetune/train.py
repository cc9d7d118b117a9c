"""Train the LoRA adapter with mlx_lm, record the loss curve, and fuse it into a servable model folder.

Runs ``mlx_lm``'s own LoRA trainer in-process (``mlx_lm.tuner.trainer.train`` with ``mlx_lm``'s LoRA
layers and LR schedule and the settings of ``finetune/lora.yaml``) on whole conversations: the loss covers
every reply the gateway asked the model for (``TurnsDataset``, ``iterate_span_batches``, ``span_loss``),
so one forward pass trains all of a conversation's model calls. A training callback records every
reported train and validation loss into ``<data_dir>/finetune/loss.json`` as it goes (watch it during a
long run) and a plot into ``loss.png``.
Then ``mlx_lm fuse`` merges the adapter into ``<data_dir>/models/intake-finetuned`` (float32, like the
base, so nothing is de-quantized). Serve it with ``INTAKE_MODEL=<data_dir>/models/intake-finetuned make
run``, or serve the unfused adapter with ``INTAKE_ADAPTER_PATH=<data_dir>/finetune/adapters``.

On Linux the process re-executes itself once with OpenBLAS preloaded and one BLAS thread: MLX's CPU
matmul is an order of magnitude faster that way (measured: see the README's section on the embedded model).

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from services.settings import load_settings

CONFIG_PATH = Path(__file__).with_name("lora.yaml")
# The committed adapter the inference launcher serves by default (services/inference/server.py).
ADAPTER_DIR = Path(__file__).with_name("adapter")
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
        last = int(info["iteration"]) >= int(self.data.get("iters") or 0) > 0
        if self.budget_s and not last and time.monotonic() - self.started > self.budget_s:
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
    ax.set_title(
        f"LoRA on {Path(loss.get('model', '')).name}: "
        f"{loss.get('train_examples', '?')} training conversations"
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


class TurnsDataset:
    """``{"messages", "train_on"}`` lines -> (tokens, spans): the token ranges of the replies to learn.

    A span runs from the end of the chat template's generation prompt before reply ``i`` to the end of
    reply ``i`` (its end-of-turn token included), i.e. exactly the tokens the model generates when the
    gateway sends ``messages[:i]``. Lines without ``train_on`` learn their last message, like ``mlx_lm``.
    """

    def __init__(self, data: list[dict[str, Any]], tokenizer: Any) -> None:
        self._data = data
        self.tokenizer = tokenizer

    def _encode(self, messages: list[dict[str, str]], generation_prompt: bool = False) -> list[int]:
        return list(
            self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=generation_prompt, return_dict=False
            )
        )

    def process(self, d: dict[str, Any]) -> tuple[list[int], list[tuple[int, int]]]:
        messages = d["messages"]
        tokens = self._encode(messages)
        spans = []
        for i in d.get("train_on") or [len(messages) - 1]:
            if messages[i]["role"] != "assistant":
                raise ValueError(f"train_on index {i} is a {messages[i]['role']} message")
            start = len(self._encode(messages[:i], generation_prompt=True))
            upto = self._encode(messages[: i + 1])
            end = len(upto)
            if tokens[:end] != upto:
                raise ValueError(
                    "the chat template is not prefix-stable; cannot mark replies in one sequence"
                )
            spans.append((start, end))
        return tokens, spans

    def __getitem__(self, idx: int) -> dict[str, Any]:
        return self._data[idx]

    def __len__(self) -> int:
        return len(self._data)


def iterate_span_batches(
    dataset: Any,
    batch_size: int,
    max_seq_length: int,
    loop: bool = False,
    seed: int | None = None,
    comm_group: Any = None,
) -> Iterator[tuple[Any, Any]]:
    """``mlx_lm``'s batching (length-sorted, shuffled batches, padded to 32) with a per-token loss mask.

    Yields ``(tokens, positions)``: ``positions`` are the flat indices into ``tokens[:, 1:]`` of the target
    tokens that belong to a reply to learn. Single-process only (``comm_group`` is accepted for
    ``mlx_lm``'s call signature).
    """
    import mlx.core as mx
    import numpy as np

    order = sorted(range(len(dataset)), key=lambda i: len(dataset[i][0]))
    if len(order) < batch_size:
        raise ValueError(f"need at least batch_size={batch_size} examples, have {len(order)}")
    batches = [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
    rng = np.random.default_rng(seed)
    while True:
        for b in rng.permutation(len(batches)):
            rows = [dataset[j] for j in batches[b]]
            longest = max(len(tokens) for tokens, _ in rows)
            if longest > max_seq_length:
                raise ValueError(
                    f"an example has {longest} tokens > max_seq_length {max_seq_length}: "
                    "cutting it would cut the replies to learn; raise max_seq_length"
                )
            width = 1 + 32 * ((longest + 31) // 32)
            tokens = np.zeros((len(rows), width), np.int32)
            positions: list[int] = []
            for r, (toks, spans) in enumerate(rows):
                tokens[r, : len(toks)] = toks
                for start, end in spans:
                    positions.extend(r * (width - 1) + j for j in range(start - 1, end - 1))
            yield mx.array(tokens), mx.array(np.array(positions, np.int32))
        if not loop:
            break


def span_loss(model: Any, batch: Any, positions: Any) -> tuple[Any, Any]:
    """Mean cross-entropy over the reply tokens at ``positions`` (``mlx_lm``'s ``default_loss``, masked).

    The vocabulary projection (49k x 576 for SmolLM2, a fifth of the model's compute at these lengths)
    runs only for the reply tokens, not for the whole prompt, when the model exposes its trunk.
    """
    import mlx.core as mx
    import mlx.nn as nn

    inputs, targets = batch[:, :-1], batch[:, 1:].reshape(-1)[positions]
    trunk = getattr(model, "model", None)
    if trunk is not None and hasattr(trunk, "embed_tokens"):
        hidden = trunk(inputs)
        hidden = hidden.reshape(-1, hidden.shape[-1])[positions]
        head = getattr(model, "lm_head", None)
        logits = head(hidden) if head is not None else trunk.embed_tokens.as_linear(hidden)
    else:
        logits = model(inputs).reshape(-1, model.args.vocab_size)[positions]
    ce = nn.losses.cross_entropy(logits, targets)
    return ce.astype(mx.float32).mean(), mx.array(positions.size, mx.int32)


def train(args: types.SimpleNamespace, loss_path: Path, budget_s: float | None = None) -> dict[str, Any]:
    """LoRA-train with ``mlx_lm``'s trainer, our span dataset and loss; returns the recorded losses."""
    import mlx.core as mx
    import mlx.optimizers as optim
    from mlx.utils import tree_flatten
    from mlx_lm.tuner.datasets import CacheDataset
    from mlx_lm.tuner.trainer import TrainingArgs
    from mlx_lm.tuner.trainer import train as run_trainer
    from mlx_lm.tuner.utils import build_schedule, linear_to_lora_layers
    from mlx_lm.utils import load, save_config

    loaded = load(args.model)
    model, tokenizer = loaded[0], loaded[1]
    data = Path(args.data)
    train_set, valid_set = (
        TurnsDataset(
            [json.loads(line) for line in (data / f"{name}.jsonl").open() if line.strip()], tokenizer
        )
        for name in ("train", "valid")
    )
    mx.random.seed(args.seed)
    model.freeze()
    linear_to_lora_layers(model, args.num_layers, args.lora_parameters)
    adapter_path = Path(args.adapter_path)
    adapter_path.mkdir(parents=True, exist_ok=True)
    save_config(vars(args), adapter_path / "adapter_config.json")  # mlx_lm fuse and the server read it
    optimizer = optim.Adam(
        learning_rate=build_schedule(args.lr_schedule) if args.lr_schedule else args.learning_rate
    )
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
    trainer_args = TrainingArgs(
        batch_size=args.batch_size,
        iters=args.iters,
        val_batches=args.val_batches,
        steps_per_report=args.steps_per_report,
        steps_per_eval=args.steps_per_eval,
        steps_per_save=args.save_every,
        adapter_file=str(adapter_path / "adapters.safetensors"),
        max_seq_length=args.max_seq_length,
        grad_checkpoint=args.grad_checkpoint,
    )
    try:
        run_trainer(
            model,
            optimizer,
            CacheDataset(train_set),
            CacheDataset(valid_set),
            args=trainer_args,
            loss=span_loss,
            iterate_batches=iterate_span_batches,
            training_callback=recorder,  # type: ignore[arg-type]
        )
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


def portable_config(path: Path) -> None:
    """The adapter's config without this machine's paths (it is committed; the server reads only the
    LoRA fields, the base model comes from ``INTAKE_MODEL``)."""
    config = json.loads(path.read_text())
    config |= {
        "model": BASE_MODEL_NAME,
        "data": "<data_dir>/finetune/data",
        "adapter_path": "finetune/adapter",
    }
    path.write_text(json.dumps(config, indent=4, sort_keys=True) + "\n")


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
    parser.add_argument("--fuse", action="store_true", help="also write a fused float32 model folder")
    parser.add_argument(
        "--minutes",
        type=float,
        default=30.0,
        help="stop (and keep the adapter) at the first loss report after this long; 0 = no limit",
    )
    options = parser.parse_args(argv)
    if env := blas_env(dict(os.environ)):
        os.execve(sys.executable, [sys.executable, "-m", "finetune.train", *(argv or sys.argv[1:])], env)
    root = options.data_dir / "finetune"
    model = options.model or str(options.data_dir / "models" / BASE_MODEL_NAME)
    adapters = options.adapter_path or ADAPTER_DIR
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
    portable_config(adapters / "adapter_config.json")
    plot_loss(loss, root / "loss.png")
    print(
        f"trained {loss['train'][-1]['iteration'] if loss['train'] else 0} of {args.iters} iterations "
        f"in {time.monotonic() - started:.0f}s; "
        f"loss {_first_last(loss)}; "
        f"curve: {root / 'loss.json'}, {root / 'loss.png'}"
    )
    if options.fuse:
        fuse(model, adapters, fused)
        print(f"fused model: {fused}\nserve it with: INTAKE_MODEL={fused} make run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
