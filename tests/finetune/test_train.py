"""A real (tiny) LoRA run through ``python -m finetune.train`` against the converted model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import yaml

from finetune.conversation import Conversation, Example, write_jsonl
from finetune.train import CONFIG_PATH
from services.settings import REPO_ROOT


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_lora_trains_records_loss_and_fuses(
    converted_model: Path, conversations: list[Conversation], tmp_path: Path
) -> None:
    """Two iterations on a handful of short examples (two interview replies each, the split's format):
    the adapter, loss.json, loss.png and a fused float32 folder (which keeps rope_theta, or the model
    would talk nonsense) all appear."""
    usable = [c for c in conversations if len(c.targets) >= 2][:6]
    short = [Example(messages=c.prompt[: c.targets[1] + 1], train_on=c.targets[:2]) for c in usable]
    data = tmp_path / "finetune" / "data"
    write_jsonl(data / "train.jsonl", short[:4])
    write_jsonl(data / "valid.jsonl", short[4:])
    config = yaml.safe_load(CONFIG_PATH.read_text())
    config.update(
        iters=2, steps_per_report=1, steps_per_eval=2, val_batches=1, save_every=2, lr_schedule=None
    )
    (tmp_path / "lora.yaml").write_text(yaml.safe_dump(config))
    fused = tmp_path / "fused"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "finetune.train",
            "--config",
            str(tmp_path / "lora.yaml"),
            "--data-dir",
            str(tmp_path),
            "--model",
            str(converted_model),
            "--adapter-path",
            str(tmp_path / "finetune" / "adapters"),
            "--fuse",
            "--save-path",
            str(fused),
            "--minutes",
            "0",
        ],
        cwd=REPO_ROOT,
        check=True,
        timeout=540,
    )
    loss = json.loads((tmp_path / "finetune" / "loss.json").read_text())
    assert [r["iteration"] for r in loss["train"]] == [1, 2]
    assert loss["val"] and loss["mask_prompt"] is True
    adapters = tmp_path / "finetune" / "adapters"
    assert (adapters / "adapters.safetensors").is_file()
    config = json.loads((adapters / "adapter_config.json").read_text())
    assert config["fine_tune_type"] == "lora" and config["num_layers"] == 8
    assert str(tmp_path) not in json.dumps(config)  # committed as is: no machine paths
    assert (tmp_path / "finetune" / "loss.png").stat().st_size > 1000
    assert json.loads((fused / "config.json").read_text())["rope_theta"] == 100000.0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_spans_are_exactly_the_replies_and_the_loss_matches_mlx_lm(
    converted_model: Path, conversations: list[Conversation]
) -> None:
    """Each marked span decodes to one reply the gateway asked for (plus the end-of-turn token); for an
    example that learns only its last message, the span loss equals mlx_lm's own masked loss."""
    import mlx.core as mx
    from mlx_lm.tuner.datasets import CacheDataset, ChatDataset
    from mlx_lm.tuner.trainer import default_loss
    from mlx_lm.tuner.trainer import iterate_batches as mlx_batches
    from mlx_lm.utils import load

    from finetune.split import examples_of
    from finetune.train import TurnsDataset, iterate_span_batches, span_loss

    model, tokenizer = load(str(converted_model))[:2]
    conv = next(c for c in conversations if c.status == "complete")
    [example] = examples_of(conv)
    dataset = TurnsDataset([msgspec.to_builtins(example)], tokenizer)
    tokens, spans = dataset.process(dataset[0])
    replies = [example.messages[i]["content"] for i in example.train_on]
    assert [tokenizer.decode(tokens[a:b]) for a, b in spans] == [f"{r}<|im_end|>\n" for r in replies]

    batch, positions = next(
        iterate_span_batches(CacheDataset(TurnsDataset([dataset[0]] * 2, tokenizer)), 2, 4096)
    )
    picked = batch[:, 1:].reshape(-1)[positions].tolist()
    assert picked == [t for a, b in spans for t in tokens[a:b]] * 2

    reply = example.messages[conv.targets[0]]
    last = {"messages": [{"role": "system", "content": "Ask one question."}, example.messages[2], reply]}
    ours = span_loss(
        model, *next(iterate_span_batches(CacheDataset(TurnsDataset([last], tokenizer)), 1, 4096))
    )
    chat = ChatDataset([last], tokenizer, mask_prompt=True)
    batch, lengths = next(mlx_batches([chat.process(last)], 1, 4096))
    # mlx_lm's mask also counts the padding token right after the sequence (steps <= length); without it
    # the two losses must agree exactly (a short example: MLX on CPU without OpenBLAS preloaded is slow)
    theirs = default_loss(model, batch, lengths - mx.array([0, 1]))
    assert int(ours[1]) == int(theirs[1])
    assert abs(float(ours[0]) - float(theirs[0])) < 1e-4
    mx.clear_cache()
