"""Splits by persona: no leakage, every style in the test set, MLX chat JSONL on disk."""

from __future__ import annotations

import json
from pathlib import Path

from finetune.conversation import Conversation
from finetune.personas import STYLES, Matrix, build_personas
from finetune.split import assign_splits, write_splits
from services.coursepack import Catalog


def test_each_persona_in_exactly_one_split(training: Catalog, matrix: Matrix) -> None:
    """Every persona gets one split, and the test set holds every style."""
    personas = build_personas(training, matrix)
    where = assign_splits(personas, matrix.split, matrix.seed)
    assert set(where) == {p.id for p in personas}
    test_styles = {p.style for p in personas if where[p.id] == "test"}
    assert test_styles == set(STYLES)


def test_written_splits_share_no_persona(
    conversations: list[Conversation], training: Catalog, matrix: Matrix, tmp_path: Path
) -> None:
    """One persona never lands in two files; lines are {"messages", "train_on"}, one per conversation."""
    personas = build_personas(training, matrix, len(conversations))
    counts = write_splits(conversations, personas, matrix, tmp_path, seed=matrix.seed)
    owners = json.loads((tmp_path / "personas.json").read_text())
    seen: dict[str, str] = {}
    for split, ids in owners.items():
        for pid in ids:
            assert seen.setdefault(pid, split) == split
    total = 0
    for split in ("train", "valid", "test"):
        lines = (tmp_path / f"{split}.jsonl").read_text().splitlines()
        total += len(lines)
        assert len(lines) == counts[split]["examples"]
        for line in lines:
            example = json.loads(line)
            messages, train_on = example["messages"], example["train_on"]
            assert messages[-1]["role"] == "assistant" and messages[0]["role"] == "system"
            assert train_on and all(messages[i]["role"] == "assistant" for i in train_on)
    # one example per conversation (its prompts are append-only); an escalated one drafts from a prompt
    # without the support template, so its interview and its draft are two examples
    assert (
        len(conversations)
        <= total
        <= len(conversations) + sum(c.status == "escalated" for c in conversations)
    )
