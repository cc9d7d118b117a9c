"""What one new booking's delivery costs in Redis round trips: the ingest rate is bound by them.

A round trip is one command sent on its own, or one pipeline (or transaction) sent at once; counted at
the connection, for the request's own task only (the app's background tasks do not count).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio.connection import AbstractConnection
from structlog.testing import capture_logs

from services.gateway.container import Services
from tests.gateway.delivery.harness import encode, jobs_of, open_live_app, post_webhook, record_for, upcoming

# one step: the claim (the rate limit, the marker, the booking lock, the tombstone), then the intake with its
# four jobs and their bookkeeping, the analytics events, seen and the locks freed
ROUND_TRIPS_PER_NEW_BOOKING = 1

_sent: ContextVar[list[int] | None] = ContextVar("sent", default=None)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    real = AbstractConnection.send_packed_command

    async def send_packed_command(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        sent = _sent.get()
        if sent is not None:
            sent.append(1)
        await real(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", send_packed_command)

    @contextmanager
    def count() -> Iterator[list[int]]:
        sent: list[int] = []
        token = _sent.set(sent)
        try:
            yield sent
        finally:
            _sent.reset(token)

    yield count


def _new_booking() -> bytes:
    data = upcoming("booking_created", days=3)
    data["payload"]["uid"] = uid = f"cost-{uuid.uuid4().hex}"
    data["createdAt"] = f"2026-11-28T18:0{len(uid) % 10}:00.000Z"
    return encode(data)


async def test_a_new_booking_costs_a_fixed_number_of_round_trips(
    tmp_path: Path, redis_url: str, counted: Any
) -> None:
    """Every guarantee still holds at that price: the intake, its model, all four jobs, no setup left
    pending, and the same delivery again is a duplicate."""
    async with open_live_app(tmp_path, redis_url, reminder_before_s=3600) as (services, http):
        assert (await post_webhook(http, _new_booking())).json() == {"status": "created"}  # warm-up
        body = _new_booking()
        with counted() as sent, capture_logs() as lines:
            assert (await post_webhook(http, body)).json() == {"status": "created"}
        assert len(sent) <= ROUND_TRIPS_PER_NEW_BOOKING, f"{len(sent)} round trips"
        # each log line is a flushed write too: one line says the delivery, its course and its four jobs
        assert [line["event"] for line in lines] == ["webhook_handled"]
        assert lines[0]["outcome"] == "created" and lines[0]["course"] == "writ101"
        assert sorted(job["kind"] for job in lines[0]["jobs"]) == [
            "invite_email",
            "partial_summary",
            "prepare",
            "reminder_email",
        ]
        await _check_created(services, body)
        with counted() as sent:
            assert (await post_webhook(http, body)).json() == {"status": "duplicate"}
        assert len(sent) <= 1, "a duplicate: the claim (with the rate limit) finds it seen"


async def _check_created(services: Services, body: bytes) -> None:
    uid = body.split(b'"uid": "')[1].split(b'"')[0].decode()
    record = await record_for(services, uid)
    assert record.model, "the model is written with the record"
    kinds = sorted(j.kind for j in await jobs_of(services, record.token))
    assert kinds == ["invite_email", "partial_summary", "prepare", "reminder_email"]
    assert not await services.intakes.setup_pending(record.token)
