"""What ``make run`` prints while it waits: which program is starting, what is not ready, indexing n of N."""

from __future__ import annotations

from services.stack import progress_line

RUNNING = {name: "RUNNING" for name in ("redis", "chroma", "inference", "indexer", "gateway", "worker")}


def test_programs_still_starting_are_named() -> None:
    states = {**RUNNING, "inference": "STARTING", "gateway": "STARTING", "cloudflared": "STOPPED"}
    assert progress_line(states, None) == "starting inference, gateway"


def test_failed_checks_and_indexing_progress_per_course() -> None:
    readiness = {
        "checks": {"redis": {"ok": True}, "chroma": {"ok": True}, "inference": {"ok": False}},
        "indexer": {
            "state": "building",
            "progress": {"writ101": {"done": 96, "total": 310}, "stat200": {"done": 32, "total": 40}},
        },
    }
    assert progress_line(RUNNING, readiness) == (
        "waiting for inference · indexing stat200 32/40 chunks, writ101 96/310 chunks"
    )


def test_a_program_that_gave_up_is_reported_with_where_to_look() -> None:
    line = progress_line({**RUNNING, "chroma": "FATAL"}, {"checks": {"chroma": {"ok": False}}, "indexer": {}})
    assert line == "not running: chroma (see .data/logs/) · waiting for chroma · indexer starting"


def test_the_indexer_waiting_for_chroma_says_so() -> None:
    readiness = {"checks": {}, "indexer": {"state": "waiting_for_chroma"}}
    assert progress_line(RUNNING, readiness) == "indexer waiting for Chroma"
