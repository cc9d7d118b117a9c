"""The log lines' JSON: the same as structlog's own ``JSONRenderer`` writes, whatever the values."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import structlog

from services.gateway.logs import render_json

_STDLIB = structlog.processors.JSONRenderer()


class _Custom:
    def __repr__(self) -> str:
        return "<custom>"


class _Structlogged:
    def __structlog__(self) -> str:
        return "as structlog says"


@pytest.mark.parametrize(
    "event",
    [
        {"event": "webhook_handled", "level": "info", "booking_uid": "u1", "outcome": "created"},
        {"event": "x", "jobs": [{"job_id": "prepare.u1", "scheduled": None, "queue": "intake"}], "n": 3},
        {"event": "x", "ratio": 0.25, "ok": True, "nothing": None, "text": 'quote " and é and \n'},
        {"event": "x", "raw": b"bytes are written as repr", "custom": _Custom(), "own": _Structlogged()},
        {"event": "x", "at": dt.datetime(2026, 11, 30, tzinfo=dt.UTC).isoformat(), "ids": ("a", "b")},
        {"event": "x", "by_number": {1: "one"}, "nested": {"deeper": [1, [2, {"k": "v"}]]}},
    ],
)
def test_a_line_is_the_json_structlogs_renderer_writes(event: dict[Any, Any]) -> None:
    line = render_json(None, "info", dict(event))
    assert "\n" not in line
    assert json.loads(line) == json.loads(_STDLIB(None, "info", dict(event)))


def test_a_key_json_has_no_type_for_is_written_as_its_repr_instead_of_failing_the_line() -> None:
    """(structlog's renderer raises there, and the line is lost.)"""
    with pytest.raises(TypeError):
        _STDLIB(None, "info", {"event": "x", (1, 2): "a"})
    assert json.loads(render_json(None, "info", {"event": "x", (1, 2): "a"})) == {"event": "x", "(1, 2)": "a"}
