"""Split curated conversations into train / valid / test BY PERSONA and write MLX chat JSONL.

No persona appears in two splits: conversations of one student share facts and phrasing, so leaking
them across splits would flatter the validation loss and the evaluation. Each line of
``<data_dir>/finetune/data/{train,valid,test}.jsonl`` is one conversation ``{"messages": [...],
"train_on": [...]}``: the last prompt the gateway sent (the summary-drafting request, which contains every
interview prompt as a prefix) ending with the draft, and the indices of the replies the model wrote
(every interview question and the draft). ``finetune/train.py`` computes the loss on exactly those.

Usage: ``python -m finetune.split [--data-dir DIR]``
"""

from __future__ import annotations

import argparse
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec

from finetune.conversation import Conversation, Example, read_jsonl, write_jsonl
from finetune.personas import Matrix, Persona, build_personas, load_matrix, training_catalog
from services.coursepack import load_catalog
from services.settings import load_settings

SPLITS: tuple[str, ...] = ("train", "valid", "test")


def assign_splits(personas: Sequence[Persona], fractions: dict[str, float], seed: int) -> dict[str, str]:
    """Persona id -> split, stratified by style so every split (the test set above all) has every style.

    Always call it with the FULL persona list (``build_personas``), never with the personas that survived
    curation: the evaluation harness recomputes the test set from the full list.
    """
    by_style: dict[str, list[str]] = defaultdict(list)
    for persona in sorted(personas, key=lambda p: p.id):
        by_style[persona.style].append(persona.id)
    rng = random.Random(seed)
    result: dict[str, str] = {}
    for style in sorted(by_style):
        ids = by_style[style]
        rng.shuffle(ids)
        n_test = max(1, round(len(ids) * fractions.get("test", 0.1))) if len(ids) > 2 else 0
        n_valid = max(1, round(len(ids) * fractions.get("valid", 0.1))) if len(ids) > 2 else 0
        for i, pid in enumerate(ids):
            result[pid] = "test" if i < n_test else "valid" if i < n_test + n_valid else "train"
    return result


def examples_of(conversation: Conversation) -> list[Example]:
    """One example per conversation: the last prompt the gateway sent, with every model call in it marked.

    The gateway's prompts are append-only, so the summary-drafting prompt contains every earlier interview
    prompt as a prefix: one sequence, with the loss on each reply the gateway asked the model for (not on
    the greeting or the guardrail templates), trains on all of the conversation's model calls for the
    cost of one forward pass instead of one per call.
    """
    prompt = conversation.prompt
    targets = list(conversation.targets)
    if conversation.summary_prompt and conversation.summary_reply:
        drafted = [*conversation.summary_prompt, {"role": "assistant", "content": conversation.summary_reply}]
        if drafted[: len(prompt)] == prompt:
            return [Example(messages=drafted, train_on=[*targets, len(drafted) - 1])]
        out = [Example(messages=drafted, train_on=[len(drafted) - 1])]
    else:
        out = []
    if targets:
        out.insert(0, Example(messages=prompt[: targets[-1] + 1], train_on=targets))
    return out


def write_splits(
    conversations: Iterable[Conversation],
    personas: Sequence[Persona],
    matrix: Matrix,
    out_dir: Path,
    *,
    seed: int,
) -> dict[str, dict[str, int]]:
    """Write the three JSONL files; return per-split counts of personas, conversations and examples."""
    where = assign_splits(personas, matrix.split, seed)
    buckets: dict[str, list[Example]] = {s: [] for s in SPLITS}
    convs: Counter[str] = Counter()
    people: dict[str, set[str]] = {s: set() for s in SPLITS}
    for conversation in conversations:
        split = where.get(conversation.persona.id, "train")
        buckets[split].extend(examples_of(conversation))
        convs[split] += 1
        people[split].add(conversation.persona.id)
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, examples in buckets.items():
        rng.shuffle(examples)  # batches mix personas and turn positions
        write_jsonl(out_dir / f"{split}.jsonl", examples)
    (out_dir / "personas.json").write_bytes(
        msgspec.json.format(msgspec.json.encode({s: sorted(people[s]) for s in SPLITS}), indent=1)
    )
    return {
        s: {"personas": len(people[s]), "conversations": convs[s], "examples": len(buckets[s])}
        for s in SPLITS
    }


def main(argv: list[str] | None = None) -> int:
    settings = load_settings()
    parser = argparse.ArgumentParser(prog="python -m finetune.split", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=settings.data_path)
    args = parser.parse_args(argv)
    root = args.data_dir / "finetune"
    conversations = read_jsonl(root / "curated.jsonl", Conversation)
    matrix = load_matrix()
    personas = build_personas(training_catalog(load_catalog(Path(settings.corpus_dir))), matrix)
    counts = write_splits(conversations, personas, matrix, root / "data", seed=matrix.seed)
    print(f"{'split':<8}{'personas':>10}{'conversations':>15}{'examples':>10}")
    for split, row in counts.items():
        print(f"{split:<8}{row['personas']:>10}{row['conversations']:>15}{row['examples']:>10}")
    print(f"written to {root / 'data'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
