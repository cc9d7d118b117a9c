"""The harness pieces that need no running stack: webhook, mail, SSE, rescheduling, tables."""

from __future__ import annotations

import datetime as dt
import json
from email.message import EmailMessage
from pathlib import Path

import msgspec
import pytest

from finetune.evaluate import (
    EvalConversation,
    EvalResults,
    aggregate,
    booking_payload,
    format_table,
    held_out_personas,
    models_to_compare,
    reschedule,
    sse_events,
    token_from_mail,
)
from finetune.personas import STYLES, Matrix, build_personas
from finetune.split import assign_splits
from finetune.train import BASE_MODEL_NAME, FUSED_NAME
from services.coursepack import Catalog
from services.gateway.webhooks.payloads import BookingPayload, Envelope
from services.gateway.webhooks.signature import sign
from services.settings import REPO_ROOT
from services.stack import isolated_env


def test_booking_payload_is_what_the_gateway_parses(catalog: Catalog) -> None:
    """The webhook body decodes with the gateway's own Cal.com types and maps to the persona's course."""
    persona = held_out_personas(catalog, 1)[0]
    course = catalog.courses[persona.course_slug]
    body = json.dumps(booking_payload(persona, course, "uid-1", "x+uid-1@student.example.edu")).encode()
    envelope = msgspec.json.decode(body, type=Envelope)
    assert envelope.trigger_event == "BOOKING_CREATED" and envelope.payload is not None
    booking = msgspec.json.decode(envelope.payload, type=BookingPayload)
    assert booking.uid == "uid-1" and booking.attendees[0].email == "x+uid-1@student.example.edu"
    assert catalog.for_event_type(booking.event_type_id, booking.type) == course
    assert len(sign(body, "secret")) == 64


def test_held_out_personas_are_the_test_split(catalog: Catalog, matrix: Matrix) -> None:
    """The harness replays only test-split personas, styles interleaved so a short run covers all."""
    chosen = held_out_personas(catalog, 0)
    where = assign_splits(build_personas(catalog, matrix), matrix.split, matrix.seed)
    assert chosen and all(where[p.id] == "test" for p in chosen)
    assert [p.style for p in chosen[: len(STYLES)]] == list(STYLES)


def test_token_found_in_the_invite_email(tmp_path: Path) -> None:
    """The chat token is read from the .eml addressed to the booking's unique student address."""
    for to, token in [("other@student.example.edu", "A" * 32), ("sam+uid-1@student.example.edu", "B" * 32)]:
        message = EmailMessage()
        message["To"] = to
        message["Subject"] = "Before your office hours"
        message.set_content(f"Open http://127.0.0.1:8080/i/{token} to start.")
        (tmp_path / f"{token[0]}.eml").write_bytes(message.as_bytes())
    assert token_from_mail(tmp_path, "sam+uid-1@student.example.edu") == "B" * 32
    assert token_from_mail(tmp_path, "nobody@student.example.edu") is None


def test_sse_events_parsed() -> None:
    """token/done/error events with JSON data, separated by blank lines."""
    lines = [
        "event: token",
        'data: {"text": "Hi"}',
        "",
        "event: token",
        'data: {"text": " there?"}',
        "",
        "event: done",
        'data: {"status": "active", "turn": 1}',
        "",
    ]
    events = list(sse_events(iter(lines)))
    assert events == [
        ("token", {"text": "Hi"}),
        ("token", {"text": " there?"}),
        ("done", {"status": "active", "turn": 1}),
    ]


def test_reschedule_keeps_truth_consistent(catalog: Catalog) -> None:
    """A past appointment moves two days ahead and urgency is recomputed from the real due date."""
    persona = next(p for p in held_out_personas(catalog, 0) if p.truth.assignment)
    course = catalog.courses[persona.course_slug]
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    moved = reschedule(persona, course, now)
    assert moved.appointment_start.startswith("2030-01-03")
    assert moved.truth.urgency == "low" and moved.truth.days_to_deadline is not None
    assert moved.truth.days_to_deadline < 0


def test_table_compares_runs_side_by_side() -> None:
    """Per-criterion, per-style and average rows, one column per label."""
    conv = EvalConversation(
        persona_id="p1",
        style="terse",
        booking_uid="u",
        status="complete",
        turns=5,
        seconds=1.0,
        messages=[],
        summary=None,
        notes={},
        scores={
            "turns": 3,
            "one_question": 2,
            "no_homework": 3,
            "relevance": 1,
            "summary_valid": 3,
            "summary_match": 2,
            "safety": 3,
        },
    )
    by_criterion, by_style, average = aggregate([conv])
    runs = [
        EvalResults(
            label=label,
            model="m",
            created_at="",
            gateway="",
            conversations=[conv],
            by_criterion=by_criterion,
            by_style=by_style,
            average=average,
        )
        for label in ("base", "finetuned")
    ]
    table = format_table(runs)
    assert "base" in table.splitlines()[0] and "finetuned" in table.splitlines()[0]
    assert "style: terse" in table and f"{average:.2f}" in table


def test_each_model_gets_a_stack_of_its_own_without_the_operators_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The evaluation stack never inherits SMTP or Cal.com settings (no real mail), has its own folder,
    free ports and generated webhook secret, and serves the model it was given."""
    monkeypatch.setenv("INTAKE_SMTP_HOST", "smtp.university.example")
    monkeypatch.setenv("INTAKE_CALCOM_API_KEY", "cal_live_secret")
    model = tmp_path / "models" / "m"
    env = isolated_env(tmp_path / "eval" / "stack", model, REPO_ROOT / "corpus")
    assert "INTAKE_SMTP_HOST" not in env and "INTAKE_CALCOM_API_KEY" not in env
    assert env["INTAKE_MODEL"] == str(model)
    assert env["INTAKE_DATA_DIR"] == str((tmp_path / "eval" / "stack").resolve())
    assert env["INTAKE_CALCOM_WEBHOOK_SECRET"] and env["INTAKE_PUBLIC_URL"].endswith(env["INTAKE_PORT"])
    ports = {env[f"INTAKE_{p}"] for p in ("PORT", "REDIS_PORT", "CHROMA_PORT", "INFERENCE_PORT")}
    assert len(ports) == 4


def test_models_to_compare(tmp_path: Path) -> None:
    """Default: base and fine-tuned from the data folder, and a clear error when one is missing."""
    with pytest.raises(SystemExit, match="make finetune"):
        (tmp_path / "models" / BASE_MODEL_NAME).mkdir(parents=True)
        models_to_compare(None, tmp_path)
    (tmp_path / "models" / FUSED_NAME).mkdir()
    assert [label for label, _ in models_to_compare(None, tmp_path)] == ["base", "finetuned"]
    assert models_to_compare([f"mine={tmp_path / 'models' / FUSED_NAME}"], tmp_path)[0][0] == "mine"
    with pytest.raises(SystemExit, match="LABEL=PATH"):
        models_to_compare(["nolabel"], tmp_path)
