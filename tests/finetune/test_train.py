"""A real (tiny) LoRA run through ``python -m finetune.train`` against the converted model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    """Two iterations on a handful of short examples: the adapter, loss.json, loss.png and a fused
    float32 folder (which keeps rope_theta, or the model would talk nonsense) all appear."""
    short = [Example(messages=[*c.prompt[: c.targets[0] + 1]]) for c in conversations[:6]]
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
    assert (tmp_path / "finetune" / "adapters" / "adapters.safetensors").is_file()
    assert (tmp_path / "finetune" / "loss.png").stat().st_size > 1000
    assert json.loads((fused / "config.json").read_text())["rope_theta"] == 100000.0
