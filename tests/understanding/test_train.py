"""The training command, the data generator and the committed report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.understanding import dataset, train
from services.understanding.classifier import MessageClassifier

REPORT = Path(train.HERE) / "report.json"


@pytest.fixture(scope="module")
def report() -> dict:
    return json.loads(REPORT.read_text())


def test_the_committed_data_is_what_the_generator_writes(tmp_path: Path) -> None:
    """`python -m services.understanding.dataset` reproduces data/*.jsonl byte for byte, so the data
    can be reviewed as hand-written lines and templates and regenerated at will."""
    dataset.main(["--out", str(tmp_path)])
    for name in ("intents.jsonl", "slots.jsonl"):
        assert (tmp_path / name).read_bytes() == (dataset.DATA / name).read_bytes(), name


def test_every_group_stays_in_one_split() -> None:
    """A hand-written line and its variants (or one template's fillings) never straddle train and
    test, so the held-out numbers measure phrasings the model has not seen; every split gets data."""
    rows = train.read_jsonl(dataset.DATA / "intents.jsonl")
    split = train.assign_splits(rows, 0.15, 0.15, seed=0)
    where: dict[str, set[int]] = {}
    for row, s in zip(rows, split, strict=True):
        where.setdefault(str(row["group"]), set()).add(int(s))
    assert all(len(splits) == 1 for splits in where.values())
    assert sorted(np.bincount(split) / len(split)) == pytest.approx([0.15, 0.15, 0.70], abs=0.02)


def test_train_only_lines_train_and_leave_the_held_out_split_alone() -> None:
    """Lines written after a false alarm was seen (``handwritten/intents/train-only/``) always train, and
    adding them leaves every other group in the split it had, so the report keeps measuring the same
    held-out messages."""
    rows = train.read_jsonl(dataset.DATA / "intents.jsonl")
    extra = [r for r in rows if train.TRAIN_ONLY_GROUP.search(str(r["group"]))]
    assert extra, "the committed data has train-only lines"
    others = [r for r in rows if r not in extra]
    with_extra = train.assign_splits(rows, 0.15, 0.15, seed=0)
    without = train.assign_splits(others, 0.15, 0.15, seed=0)
    assert {int(s) for r, s in zip(rows, with_extra, strict=True) if r in extra} == {0}
    assert [int(s) for r, s in zip(rows, with_extra, strict=True) if r not in extra] == without.tolist()


def test_training_on_a_tiny_subset_writes_loadable_weights(tmp_path: Path) -> None:
    """The command runs end to end on a few examples per label and writes weights the runtime loads,
    plus both reports."""
    train.main(["--limit", "10", "--ngrams", "300", "--out", str(tmp_path), "--no-cache"])
    model = MessageClassifier.load(tmp_path / "weights.npz")
    assert model.data_hash == train.data_hash(dataset.DATA)
    assert (tmp_path / "report.md").read_text().startswith("# Message classifiers")
    tiny = json.loads((tmp_path / "report.json").read_text())
    assert tiny["config"]["limit"] == 10
    assert len(model.understand("it's due Friday. I tried the notes.").sentences) == 2


def test_the_report_matches_the_committed_weights(report: dict) -> None:
    """report.json and weights.npz come from the same run: same data hash, same thresholds."""
    model = MessageClassifier.load()
    assert report["data_hash"] == model.data_hash
    assert list(report["thresholds"].values()) == pytest.approx(model.thresholds.tolist(), abs=1e-6)


def test_distress_recall_is_complete_on_held_out_messages(report: dict) -> None:
    """Every distress message in validation (where the threshold was chosen) and in the held-out
    test split is flagged."""
    assert report["validation"]["intents"]["per_class"]["distress"]["recall"] == 1.0
    assert report["intents"]["per_class"]["distress"]["recall"] == 1.0


def test_distress_false_alarms_within_target(report: dict) -> None:
    """The target from the issue: at 100% recall, at most 5% of held-out messages without distress are
    flagged (measured 0.040 with the word view and piece-by-piece negatives; 0.097 before them)."""
    assert report["intents"]["distress_false_alarm_rate"] <= 0.05
