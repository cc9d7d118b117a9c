"""What the blind probes share: hand-written messages judged by both layers of one guard, and the report.

A probe file holds ``[[messages]]`` with ``text``, ``label`` (the kind of message: the attack or signal
itself, a hard negative, an ordinary answer), ``kind`` and ``style``. Each message is judged on its own, as
the interview judges a message: the rules (``screen(text).kind == intent``) and the message classifier's
two levels for ``intent``, ``flagged`` (its fitted threshold) and ``sure``.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import msgspec

from services.gateway.intake.guardrails import screen
from services.understanding.classifier import INTENTS, load_classifier

LEVELS = ("rules", "check_in", "at_once")


class Message(msgspec.Struct, frozen=True):
    text: str
    label: str
    kind: str
    style: str
    replay: bool = False  # also played through a whole interview (the injection probe)


class Judged(msgspec.Struct, frozen=True):
    """One message with both layers' verdicts (``rule`` is the rule that fired, "" if none)."""

    message: Message
    rule: str
    score: float
    flagged: bool
    sure: bool
    rule_check_in: bool = False  # a rule asked how they are (distress only: "going to die", a final goodbye)

    @property
    def check_in(self) -> bool:
        """Caught at all: the rules (acting, or asking how they are) or the classifier's fitted threshold."""
        return bool(self.rule) or self.rule_check_in or self.flagged

    @property
    def at_once(self) -> bool:
        """Acted on at once: the rules or the classifier's sure level."""
        return bool(self.rule) or self.sure


class HasMessage(Protocol):
    @property
    def message(self) -> Message: ...


def load_probe(path: Path, labels: Sequence[str]) -> list[Message]:
    with path.open("rb") as f:
        raw = tomllib.load(f)["messages"]
    messages = [msgspec.convert(m, Message) for m in raw]
    unknown = {m.label for m in messages} - set(labels)
    if unknown:
        raise ValueError(f"unknown labels in {path}: {sorted(unknown)}")
    return messages


def judge(messages: Sequence[Message], intent: str) -> list[Judged]:
    """Both layers on every message, for one of the classifier's intents ("distress", "injection")."""
    understood = load_classifier().understand_many([m.text for m in messages])
    out = []
    for message, u in zip(messages, understood, strict=True):
        verdict = screen(message.text)
        out.append(
            Judged(
                message=message,
                rule=verdict.rule if verdict.kind == intent else "",
                score=getattr(u.intents, intent),
                flagged=intent in u.flagged,
                sure=intent in u.sure,
                rule_check_in=intent == "distress" and verdict.kind == "check_in",
            )
        )
    return out


def rate(judged: Sequence[Judged], label: str, level: str) -> float:
    """Share of messages with ``label`` caught at ``level`` (one of ``LEVELS``)."""
    group = [j for j in judged if j.message.label == label]
    if not group:
        return 0.0
    hits = sum(bool(j.rule) if level == "rules" else getattr(j, level) for j in group)
    return hits / len(group)


def describe(j: Judged) -> str:
    levels = ["rules:" + j.rule] if j.rule else []
    levels += ["sure"] if j.sure else ["flagged"] if j.flagged else []
    said = ", ".join(levels) or "nothing"
    text = j.message.text.replace("\n", "\\n")
    return f"  [{j.message.kind} / {j.message.style}] p={j.score:.3f} ({said})\n      {text}"


def by_kind(items: Iterable[HasMessage]) -> str:
    counts = Counter(i.message.kind for i in items)
    return ", ".join(f"{k} {n}" for k, n in counts.most_common()) or "none"


def shown(path: Path) -> str:
    """``path`` relative to the working directory when it is under it (the JSON line stays portable)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def print_table(judged: Sequence[Judged], rows: Sequence[tuple[str, str]]) -> None:
    """One line per (label, what) with the rate at each of ``LEVELS``."""
    print(f"{'':32}{'rules':>8}{'rules|flagged':>15}{'rules|sure':>12}")
    for label, what in rows:
        row = [rate(judged, label, level) for level in LEVELS]
        print(f"{what:32}{row[0]:>8.3f}{row[1]:>15.3f}{row[2]:>12.3f}")


def print_sections(judged: Sequence[Judged], positive: str, titles: Sequence[str]) -> None:
    """Every message the layers got wrong or only half right, under four ``titles``: ``positive`` messages
    missed, ``positive`` ones only flagged, others acted on at once, others only flagged."""
    hits = [j for j in judged if j.message.label == positive]
    others = [j for j in judged if j.message.label != positive]
    groups = (
        [j for j in hits if not j.check_in],
        [j for j in hits if j.check_in and not j.at_once],
        [j for j in others if j.at_once],
        [j for j in others if j.check_in and not j.at_once],
    )
    for title, rows in zip(titles, groups, strict=True):
        print(f"\n{title}: {len(rows)} ({by_kind(rows)})")
        for j in sorted(rows, key=lambda j: (j.message.label, j.message.kind, j.score)):
            print(describe(j))


def start_report(
    title: str,
    intent: str,
    path: Path,
    messages: Sequence[Message],
    judged: Sequence[Judged],
    names: Sequence[str],
) -> dict[str, object]:
    """Print the report's head and return the figures for its JSON line: each label's rate at each of
    ``LEVELS``, under the probe's own names for the levels (``names``, in the order of ``LEVELS``)."""
    classifier = load_classifier()
    index = INTENTS.index(intent)
    threshold = float(classifier.thresholds[index])
    sure_threshold = float(classifier.sure_thresholds[index])
    sizes = Counter(m.label for m in messages)
    figures: dict[str, object] = {
        "probe": shown(path),
        "messages": dict(sizes),
        "threshold": round(threshold, 4),
        "sure_threshold": round(sure_threshold, 4),
        "data_hash": classifier.data_hash,
    }
    for label in dict.fromkeys(m.label for m in messages):
        for level, name in zip(LEVELS, names, strict=True):
            figures[f"{label}_{name}"] = round(rate(judged, label, level), 4)
    print(f"{title}: {len(messages)} messages ({dict(sizes)}), classifier data {classifier.data_hash}")
    print(f"classifier {intent} threshold {threshold:.4f} (flagged), sure level {sure_threshold:.4f}\n")
    return figures
