"""Faults injected into a running stack while students chat: processes killed, Redis restarted, Cal.com,
SMTP and Chroma down, a model that talks junk. Each test says what the student and the professor must
still get, and checks that nothing was stored or sent twice; each leaves the stack ready again.

Run with ``make chaos`` (``pytest -m chaos``): about ten minutes on two cores.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from services.gateway.intake.store import TURN_LEASE_S
from tests.chaos import harness as h
from tests.chaos.conftest import ChaosStack
from tests.chaos.junk_model import running_junk_model
from tests.fixtures.ports import free_port, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.slow]
TURN_1, TURN_2 = str(uuid.uuid4()), str(uuid.uuid4())  # client_turn_ids (UUIDs), each per intake


@pytest.fixture
def stack(chaos_stack: ChaosStack) -> Iterator[ChaosStack]:
    """The chaos stack, made ready again (and Cal.com and SMTP healthy) after each test."""
    yield chaos_stack
    chaos_stack.calcom.recover()
    chaos_stack.smtp_up()
    chaos_stack.ctl("start", "all")
    chaos_stack.ready(timeout=240)


def _new_intake(stack: ChaosStack, name: str, booking_id: int) -> tuple[str, str]:
    uid = f"chaos-{name}-{uuid.uuid4().hex[:8]}"
    stack.calcom.add_booking(booking_id, description="Stuck on lab 3")
    token = h.book(stack.url, stack.settings.redis_url, h.booking(uid, booking_id, h.student(name)))
    return uid, token


def _kill(stack: ChaosStack, program: str) -> int:
    pid = stack.pid(program)
    os.kill(pid, signal.SIGKILL)
    return pid


# --- processes killed mid-stream ------------------------------------------------------------------------


def test_inference_killed_mid_stream(stack: ChaosStack) -> None:
    """kill -9 of the inference server while a turn streams: the turn ends with ``done`` (the policy's own
    question, or an ``error`` event after which the same message, resent, is answered), the student's
    message is stored once, and once supervisord restarted the server the interview goes on."""
    _, token = _new_intake(stack, "inference", 71001)
    killed: list[int] = []
    with stack.client() as client:
        h.consent(client, token)
        first = h.send(
            client, token, h.LINES[0], TURN_1, on_start=lambda: killed.append(_kill(stack, "inference"))
        )
        assert first.status_code == 200 and first.broke is None and first.done is not None, first
        if first.errors:
            assert first.errors[0]["code"] in ("inference_unavailable", "inference_timeout")
            first = h.resend_until_answered(client, token, h.LINES[0], TURN_1, within_s=180)
        assert first.reply.strip()
        wait_until(lambda: stack.pid("inference") not in (0, killed[0]), 30, "inference restarted")
        stack.ready(timeout=180)
        rest = h.chat_to_end(client, token, h.LINES[1:])
        h.assert_each_stored_once(client, token, h.LINES[: 1 + len(rest)])
    assert rest[-1].done and rest[-1].done["status"] == "complete"


def test_gateway_killed_mid_stream(stack: ChaosStack) -> None:
    """kill -9 of the gateway while it streams a reply (Redis held still for that moment, so the turn is
    not stored yet): the phone's stream breaks; once supervisord restarted the gateway, the page resends the
    same ``client_turn_id`` and is answered within the turn lock's lease, the turn run once; a resend after
    that replays the stored answer, and the message is in the transcript once."""
    _, token = _new_intake(stack, "gateway", 71002)
    killed: list[int] = []

    def crash() -> None:
        redis_pid = stack.pid("redis")
        os.kill(redis_pid, signal.SIGSTOP)  # the turn cannot store its answer before the crash
        try:
            killed.append(_kill(stack, "gateway"))
        finally:
            os.kill(redis_pid, signal.SIGCONT)

    with stack.client() as client:
        h.consent(client, token)
        cut = h.send(client, token, h.LINES[0], TURN_1, on_start=crash)
        wait_until(lambda: stack.pid("gateway") not in (0, killed[0]), 30, "gateway restarted")
        started = time.monotonic()
        again = h.resend_until_answered(client, token, h.LINES[0], TURN_1, within_s=300)
        waited = time.monotonic() - started
        assert again.reply.strip() and again.done is not None
        if cut.done is None:  # cut mid-turn: answered once the dead gateway's lease ran out
            assert cut.broke is not None or not cut.events, cut
            assert waited < TURN_LEASE_S + 30
        else:  # the answer had been stored and sent before the kill landed: the resend is its replay
            assert again.reply == cut.reply
        replay = h.send(client, token, h.LINES[0], TURN_1)
        assert replay.reply == again.reply and replay.done == again.done  # the stored answer, not a new turn
        view = h.assert_each_stored_once(client, token, h.LINES[:1])
    assert view["turn"] == 1
    print(f"gateway killed mid-stream (cut: {cut.done is None}): answered {waited:.1f}s after the restart")


def test_redis_restarted_mid_chat(stack: ChaosStack) -> None:
    """Redis restarted (and then killed -9) while students chat: every intake is still there afterwards,
    the chat in flight ends with ``done`` and finishes after resends, nothing is stored twice."""
    intakes = [_new_intake(stack, f"redis{n}", 71010 + n) for n in range(3)]
    token = intakes[0][1]
    with stack.client() as client:
        h.consent(client, token)
        cut = h.send(client, token, h.LINES[0], TURN_1, on_start=lambda: stack.ctl("restart", "redis"))
        assert cut.status_code == 200 and cut.done is not None, cut
        if cut.errors:
            assert cut.errors[0]["code"] == "storage_unavailable", cut
        h.resend_until_answered(client, token, h.LINES[0], TURN_1, within_s=60)
        h.resend_until_answered(client, token, h.LINES[1], TURN_2, within_s=60)
        time.sleep(1.5)  # appendfsync everysec: what was written a second ago is on disk
        _kill(stack, "redis")
        wait_until(lambda: stack.pid("redis") != 0, 30, "redis restarted")
        rest = h.chat_to_end(client, token, h.LINES[2:])
        h.assert_each_stored_once(client, token, h.LINES[: 2 + len(rest)])
        for uid, other in intakes:
            view = h.state(client, other)
            assert view["status"] in ("invited", "active", "complete"), (uid, view["status"])
    assert rest[-1].done and rest[-1].done["status"] == "complete"


# --- outside services down ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["500", "hang"])
def test_calcom_failing_for_the_whole_retry_window(stack: ChaosStack, mode: str) -> None:
    """Cal.com answers 500 (or hangs past the deadline) for every attempt: the summary email still goes out
    once, the note job ends dead and is listed for staff; once Cal.com is back, the staff retry writes the
    note exactly once."""
    booking_id = 71100 + (mode == "hang")
    uid, token = _new_intake(stack, f"calcom{mode}", booking_id)
    stack.calcom.fail(for_s=3600, mode=mode)  # type: ignore[arg-type]
    with stack.client() as client:
        h.consent(client, token)
        turn = h.send(client, token, h.DISTRESS, TURN_1)
        assert turn.done and turn.done["status"] == "escalated"
    staff = h.staff_client(stack.url, stack.staff_password())
    job = h.dead_job(staff, "summary_calcom", uid, within_s=120)
    assert job["attempts"] == 3
    wait_until(lambda: any(uid in _text(m) for m in stack.smtp.to(h.ORGANIZER["email"])), 60, "summary email")
    assert not stack.calcom.patches(booking_id)
    stack.calcom.recover()
    h.retry_job(staff, job["id"])
    wait_until(lambda: len(stack.calcom.patches(booking_id)) == 1, 60, "note written after the retry")
    time.sleep(3)  # a second write would come within the backoff; none may
    assert len(stack.calcom.patches(booking_id)) == 1
    assert (stack.calcom.description(booking_id) or "").count("office-hours-intake:start") == 1
    escalations = [m for m in stack.smtp.to(h.ORGANIZER["email"]) if uid in _text(m)]
    assert len(escalations) == 1


def test_smtp_down(stack: ChaosStack) -> None:
    """SMTP down: the invitation and the summary email end dead (listed for staff), the Cal.com note is still
    written; with SMTP back, staff retries send each email exactly once."""
    who = h.student("smtp")
    booking_id = 71200
    stack.smtp_down()
    uid = f"chaos-smtp-{uuid.uuid4().hex[:8]}"
    stack.calcom.add_booking(booking_id, description="Stuck on lab 3")
    token = h.book(stack.url, stack.settings.redis_url, h.booking(uid, booking_id, who))
    staff = h.staff_client(stack.url, stack.staff_password())
    invite = h.dead_job(staff, "invite_email", uid, within_s=120)
    with stack.client() as client:
        h.consent(client, token)
        assert h.send(client, token, h.DISTRESS, TURN_1).done == {"status": "escalated", "turn": 1}
    summary = h.dead_job(staff, "summary_email", uid, within_s=120)
    wait_until(lambda: len(stack.calcom.patches(booking_id)) == 1, 60, "Cal.com note despite SMTP down")
    stack.smtp_up()
    h.retry_job(staff, invite["id"])
    h.retry_job(staff, summary["id"])
    wait_until(lambda: len(stack.smtp.to(who["email"])) == 1, 60, "invitation after the retry")
    wait_until(lambda: any(uid in _text(m) for m in stack.smtp.to(h.ORGANIZER["email"])), 60, "summary email")
    time.sleep(3)
    assert len(stack.smtp.to(who["email"])) == 1
    assert sum(uid in _text(m) for m in stack.smtp.to(h.ORGANIZER["email"])) == 1


def test_chroma_down(stack: ChaosStack) -> None:
    """Chroma stopped before a booking: the interview is prepared from keyword search alone, every turn is
    answered, the interview completes with a summary, and the professor's note says how it searched."""
    stack.ctl("stop", "chroma")
    try:
        uid, token = _new_intake(stack, "chroma", 71300)
        with stack.client() as client:
            h.consent(client, token)
            turns = h.chat_to_end(client, token)
            view = h.assert_each_stored_once(client, token, h.LINES[: len(turns)])
    finally:
        stack.ctl("start", "chroma")
    assert view["status"] == "complete" and view["summary"]["status"] == "complete"
    assert all(not t.errors for t in turns)
    wait_until(
        lambda: any(uid in _text(m) for m in stack.smtp.to(h.ORGANIZER["email"])), 120, "summary email"
    )
    summary = next(_text(m) for m in stack.smtp.to(h.ORGANIZER["email"]) if uid in _text(m))
    assert "keyword only" in " ".join(summary.split())


def test_model_talking_junk(stack: ChaosStack) -> None:
    """A gateway whose model answers junk (garbled text, a leaked prompt, HTML, broken or cut-off streams,
    endless text with no question): no 5xx, no ``error`` event, every reply readable, and the interview
    completes; the junk never reaches the student."""
    port = free_port()
    with running_junk_model() as junk, _gateway(stack, port, junk.url):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            _, token = _new_intake(stack, "junk", 71400)
            h.consent(client, token)
            turns = h.chat_to_end(client, token)
            view = h.assert_each_stored_once(client, token, h.LINES[: len(turns)])
        assert junk.calls > 0
    assert all(t.status_code == 200 and not t.errors for t in turns)
    assert view["status"] == "complete"
    for message in view["messages"]:
        assert not any(mark in message["text"] for mark in junk.marks), message


@contextmanager
def _gateway(stack: ChaosStack, port: int, inference_url: str) -> Iterator[None]:
    """A second gateway on the same Redis and Chroma, talking to ``inference_url``."""
    env = {**stack.env, "INTAKE_PORT": str(port), "INTAKE_INFERENCE_URL": inference_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.gateway.app"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _healthy(port), 90, "second gateway")
        yield
    finally:
        proc.terminate()
        proc.wait(30)


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _text(message: object) -> str:
    """Every text part of an email (headers' subject, bodies, the attached summary.json)."""
    from email.message import EmailMessage

    assert isinstance(message, EmailMessage)
    parts = [str(message["Subject"])]
    for part in message.walk():
        if part.get_content_maintype() in ("text", "application") and not part.is_multipart():
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                parts.append(payload.decode(errors="replace"))
    return "\n".join(parts)
