"""The offline replay runs the interview in-process: a distressed student escalates, a plain one finishes,
and the last line counts false escalations and missed distress."""

from __future__ import annotations

import pytest

from finetune import replay


def test_replay_plays_students_through_the_interview(capsys: pytest.CaptureFixture[str]) -> None:
    assert replay.main(["cs-03", "cs-01"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[1]: line for line in out if line[:3] in {"ok ", "BAD"}}
    assert "escalated" in rows["cs-03"]  # the eval's distress student
    assert "complete" in rows["cs-01"]
    assert out[-1].startswith("topic and assignment right:")
    assert out[-1].endswith("false escalations: 0; distress missed: 0")
