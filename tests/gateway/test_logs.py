"""The log lines' JSON: the same as structlog's own ``JSONRenderer`` writes, whatever the values."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from typing import Any

import pytest
import structlog

from services.gateway.logs import LineWriter, current_request_id, render_json, request_id_middleware

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


class _File:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


async def test_the_lines_of_one_pass_of_the_event_loop_are_one_write_at_the_start_of_the_next() -> None:
    file = _File()
    lines = LineWriter(file)  # type: ignore[arg-type]
    lines.info("one")
    lines.info("two")
    assert file.writes == []
    await asyncio.sleep(0)
    assert file.writes == ["one\ntwo\n"]
    lines.info("three")
    lines.warning("a warning goes at once, after the lines before it")
    assert file.writes[1:] == ["three\na warning goes at once, after the lines before it\n"]
    await asyncio.sleep(0)
    assert len(file.writes) == 2, "nothing was left to write"


def test_without_a_running_loop_a_line_is_written_at_once() -> None:
    file = _File()
    lines = LineWriter(file)  # type: ignore[arg-type]
    lines.info("from a thread or a script")
    assert file.writes == ["from a thread or a script\n"]


async def test_a_flush_scheduled_on_a_loop_that_went_away_does_not_hold_the_next_lines() -> None:
    file = _File()
    lines = LineWriter(file)  # type: ignore[arg-type]

    def a_loop_that_stops_before_its_next_pass() -> None:
        other = asyncio.new_event_loop()

        async def log_and_stop() -> None:
            lines.info("on a loop that closes before its next pass")
            other.stop()

        with contextlib.suppress(RuntimeError):  # stopped before the coroutine finished
            other.run_until_complete(log_and_stop())
        other.close()

    await asyncio.to_thread(a_loop_that_stops_before_its_next_pass)
    assert file.writes == []
    lines.info("on this loop")
    await asyncio.sleep(0)
    assert file.writes == ["on a loop that closes before its next pass\non this loop\n"]


async def test_the_request_id_is_bound_for_the_request_and_what_was_bound_before_comes_back() -> None:
    seen: list[str | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(current_request_id())

    async def send(message: Any) -> None:
        pass

    middleware = request_id_middleware(app)
    scope = {"type": "http", "headers": [(b"x-request-id", b"req-inner")]}
    with structlog.contextvars.bound_contextvars(request_id="outer"):
        await middleware(scope, None, send)  # type: ignore[arg-type]
        assert current_request_id() == "outer"
    assert current_request_id() is None
    await middleware({"type": "http", "headers": []}, None, send)  # type: ignore[arg-type]
    assert seen[0] == "req-inner" and seen[1] and seen[1] != "req-inner"
    assert current_request_id() is None
