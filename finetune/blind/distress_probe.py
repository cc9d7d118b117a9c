"""Blind distress probe: run both distress layers on hand-written messages and report recall and false alarms.

The messages (``finetune/blind/distress_probe.toml``) were written without reading the classifier's training
data: 80 students in distress who use none of the common crisis keywords, 80 hard negatives (hyperbole, dark
course content, grades, tiredness, impostor feelings, frustration) and 20 ordinary intake answers. Each is
judged as the interview judges a message on its own:

- the rules: ``screen(text).kind == "distress"`` (``services/gateway/intake/guardrails.py``);
- the classifier: ``load_classifier().understand(text)``, its ``flagged`` level (a gentle check-in) and
  its ``sure`` level (escalation at once).

Printed: recall of distress at (rules or flagged) and at (rules or sure), the false-alarm rate on the hard
negatives and on the ordinary answers at the same two levels, every missed distress message and every false
alarm with its scores, and last one JSON line with the figures. Nothing is trained or written.

Run: ``.venv/bin/python -m finetune.blind.distress_probe [--probe PATH]``
"""

from __future__ import annotations

import argparse
import json
import tomllib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import msgspec

from services.gateway.intake.guardrails import screen
from services.understanding.classifier import INTENTS, load_classifier

PROBE = Path(__file__).parent / "distress_probe.toml"
LABELS = ("distress", "hard_negative", "ordinary")


class Message(msgspec.Struct, frozen=True):
    text: str
    label: str
    kind: str
    style: str


class Judged(msgspec.Struct, frozen=True):
    """One message with both layers' verdicts (``rule`` is the rule that fired, "" if none)."""

    message: Message
    rule: str
    score: float
    flagged: bool
    sure: bool

    @property
    def check_in(self) -> bool:
        """The interview reacts at all: the rules or the classifier's fitted threshold."""
        return bool(self.rule) or self.flagged

    @property
    def escalate(self) -> bool:
        """The interview escalates at once: the rules or the classifier's sure level."""
        return bool(self.rule) or self.sure


def load_probe(path: Path = PROBE) -> list[Message]:
    with path.open("rb") as f:
        raw = tomllib.load(f)["messages"]
    messages = [msgspec.convert(m, Message) for m in raw]
    unknown = {m.label for m in messages} - set(LABELS)
    if unknown:
        raise ValueError(f"unknown labels in {path}: {sorted(unknown)}")
    return messages


def judge(messages: Sequence[Message]) -> list[Judged]:
    classifier = load_classifier()
    understood = classifier.understand_many([m.text for m in messages])
    out = []
    for message, u in zip(messages, understood, strict=True):
        verdict = screen(message.text)
        out.append(
            Judged(
                message=message,
                rule=verdict.rule if verdict.kind == "distress" else "",
                score=u.intents.distress,
                flagged="distress" in u.flagged,
                sure="distress" in u.sure,
            )
        )
    return out


def rate(judged: Sequence[Judged], label: str, level: str) -> float:
    """Share of messages with ``label`` that the interview reacts to at ``level`` ("check_in", "escalate",
    "rules")."""
    group = [j for j in judged if j.message.label == label]
    if not group:
        return 0.0
    hits = sum(bool(j.rule) if level == "rules" else getattr(j, level) for j in group)
    return hits / len(group)


def describe(j: Judged) -> str:
    levels = ["rules:" + j.rule] if j.rule else []
    levels += ["sure"] if j.sure else ["flagged"] if j.flagged else []
    said = ", ".join(levels) or "nothing"
    return f"  [{j.message.kind} / {j.message.style}] p={j.score:.3f} ({said})\n      {j.message.text}"


def by_kind(judged: Sequence[Judged]) -> str:
    counts = Counter(j.message.kind for j in judged)
    return ", ".join(f"{k} {n}" for k, n in counts.most_common()) or "none"


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is under it (the JSON line stays portable)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--probe", type=Path, default=PROBE, help="the probe TOML")
    args = parser.parse_args(argv)

    messages = load_probe(args.probe)
    judged = judge(messages)
    classifier = load_classifier()
    index = INTENTS.index("distress")
    threshold = float(classifier.thresholds[index])
    sure_threshold = float(classifier.sure_thresholds[index])
    sizes = Counter(m.label for m in messages)

    figures: dict[str, object] = {
        "probe": _shown(args.probe),
        "messages": dict(sizes),
        "threshold": round(threshold, 4),
        "sure_threshold": round(sure_threshold, 4),
        "data_hash": classifier.data_hash,
    }
    for label in LABELS:
        for level in ("rules", "check_in", "escalate"):
            figures[f"{label}_{level}"] = round(rate(judged, label, level), 4)

    print(
        f"Blind distress probe: {len(messages)} messages ({dict(sizes)}), "
        f"classifier data {classifier.data_hash}"
    )
    print(f"classifier distress threshold {threshold:.4f} (flagged), sure level {sure_threshold:.4f}\n")
    print(f"{'':32}{'rules':>8}{'rules|flagged':>15}{'rules|sure':>12}")
    for label, what in (
        ("distress", "recall of distress"),
        ("hard_negative", "false alarms, hard negatives"),
        ("ordinary", "false alarms, ordinary"),
    ):
        row = [rate(judged, label, level) for level in ("rules", "check_in", "escalate")]
        print(f"{what:32}{row[0]:>8.3f}{row[1]:>15.3f}{row[2]:>12.3f}")

    distress = [j for j in judged if j.message.label == "distress"]
    others = [j for j in judged if j.message.label != "distress"]
    sections = (
        ("Distress missed by both layers (no rule, not flagged)", [j for j in distress if not j.check_in]),
        (
            "Distress only checked in on (flagged, not sure, no rule)",
            [j for j in distress if j.check_in and not j.escalate],
        ),
        ("False alarms escalated at once (rules or sure)", [j for j in others if j.escalate]),
        (
            "False alarms checked in on only (flagged, not sure, no rule)",
            [j for j in others if j.check_in and not j.escalate],
        ),
    )
    for title, rows in sections:
        print(f"\n{title}: {len(rows)} ({by_kind(rows)})")
        for j in sorted(rows, key=lambda j: (j.message.label, j.message.kind, j.score)):
            print(describe(j))
    print()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
