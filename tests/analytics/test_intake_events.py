"""Intake events through the real chat routes: a student agrees, answers until the interview completes
and rates the chat; the stream carries one event per happening (a retried turn adds none) and the fold
counts one started, one completed intake with its turns, and the thumbs."""

from __future__ import annotations

import uuid
from pathlib import Path

import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient

from services.analytics.aggregates import Aggregates
from services.analytics.consumer import Consumer
from services.analytics.events import STREAM, decode, intake_id, week_of
from services.gateway.app import create_app
from tests.analytics.conftest import fold_all
from tests.gateway.intake.scripted import ScriptedModel
from tests.gateway.intake.test_routes import ANSWERS
from tests.gateway.staff.harness import make_settings, parse_sse, seed_intake, services_factory


async def test_a_whole_chat_is_counted_once(redis: aioredis.Redis, tmp_path: Path, redis_url: str) -> None:
    """Consent, every turn, completion and the rating are on the stream under the intake's hashed id
    (never its token); the aggregate shows 1 started, 1 completed, the turn count and one thumbs up."""
    settings = make_settings(tmp_path, redis_url)
    record = await seed_intake(redis_url, settings)
    app = create_app(settings, services_factory=services_factory(ScriptedModel()))
    async with AsyncTestClient(app) as client:
        assert (await client.post(f"/api/intakes/{record.token}/consent")).status_code == 200
        turn_id = str(uuid.uuid4())
        for answer in ANSWERS:
            last = parse_sse(
                (
                    await client.post(
                        f"/api/intakes/{record.token}/messages",
                        json={"text": answer, "client_turn_id": turn_id},
                    )
                ).text
            )[-1]
            if last[1]["status"] != "active":
                break
            turn_id = str(uuid.uuid4())
        assert last[1]["status"] == "complete"
        # the page retries the last turn after a dropped stream: a replay, no new event
        await client.post(
            f"/api/intakes/{record.token}/messages", json={"text": answer, "client_turn_id": turn_id}
        )
        assert (
            await client.post(f"/api/intakes/{record.token}/rating", json={"value": "up"})
        ).status_code == 200
    turns = last[1]["turn"]
    events = [decode(fields[b"e"]) for _, fields in await redis.xrange(STREAM)]
    kinds = [e.kind for e in events]
    assert kinds.count("intake_consented") == 1 and kinds.count("intake_completed") == 1
    assert kinds.count("intake_turn") == turns and kinds.count("student_rating") == 1
    assert {e.intake for e in events} == {intake_id(record.token)}
    raw = b"".join(fields[b"e"] for _, fields in await redis.xrange(STREAM))
    assert record.token.encode() not in raw and record.booking.student.email.encode() not in raw

    await fold_all(Consumer(redis, settings, "intake-events"))
    figures = await Aggregates(redis, 3600).week("stat150", week_of(record.booking.start_time))
    assert (figures["intakes:started"], figures["intakes:completed"]) == (1, 1)
    assert figures[f"turns:{turns}"] == 1 and figures["intakes:turns"] == turns
    assert figures["thumbs:up"] == 1
