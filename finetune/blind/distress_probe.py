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
from collections.abc import Sequence
from pathlib import Path

from finetune.blind.probe import judge, load_probe, print_sections, print_table, start_report

PROBE = Path(__file__).parent / "distress_probe.toml"
LABELS = ("distress", "hard_negative", "ordinary")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--probe", type=Path, default=PROBE, help="the probe TOML")
    args = parser.parse_args(argv)

    messages = load_probe(args.probe, LABELS)
    judged = judge(messages, "distress")
    figures = start_report(
        "Blind distress probe", "distress", args.probe, messages, judged, ("rules", "check_in", "escalate")
    )
    print_table(
        judged,
        (
            ("distress", "recall of distress"),
            ("hard_negative", "false alarms, hard negatives"),
            ("ordinary", "false alarms, ordinary"),
        ),
    )

    print_sections(
        judged,
        "distress",
        (
            "Distress missed by both layers (no rule, not flagged)",
            "Distress only checked in on (flagged, not sure, no rule)",
            "False alarms escalated at once (rules or sure)",
            "False alarms checked in on only (flagged, not sure, no rule)",
        ),
    )
    print()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
