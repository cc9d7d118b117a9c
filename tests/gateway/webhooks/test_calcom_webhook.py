"""``POST /webhooks/calcom`` through the real app, on a real Redis, with Cal.com's sample payloads."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import msgspec
import pytest
from structlog.testing import capture_logs

from services.analytics.events import STREAM, decode
from services.gateway import locks
from services.gateway.delivery import jobs as job_kinds
from services.gateway.delivery.queue import QueuedJob, partial_due_at
from services.gateway.errors import Conflict
from services.gateway.intake.models import ChatMessage, IntakeRecord
from services.gateway.intake.store import new_token, now_iso, parse_time
from services.gateway.webhooks import handling
from services.gateway.webhooks.handling import Ack, handle_once
from services.gateway.webhooks.payloads import BookingPayload, to_booking
from services.gateway.webhooks.routes import ACKNOWLEDGED
from services.gateway.webhooks.signature import NO_SECRET, sign
from tests.gateway.delivery.harness import (
    SECRET,
    Gateway,
    deliver,
    encode,
    jobs_of,
    make_summary,
    open_gateway,
    open_live_app,
    post_webhook,
    record_for,
    sample,
    store_of,
    upcoming,
    wait_for,
)

OLD_UID = "b7Yx2Lq9Kd1pQmRw3sT8vZ"
NEW_UID = "Rk3nV8mQ2wXz5tYb7cLp1d"


async def _intake_count(gw: Gateway) -> int:
    return len(await store_of(gw.services).tokens())


async def _partials(gw: Gateway, token: str) -> list[QueuedJob]:
    return [j for j in await jobs_of(gw.services, token) if j.kind == "partial_summary"]


def _assert_problem(response, status: int) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == status


# --- BOOKING_CREATED -------------------------------------------------------------------------------


async def test_created_makes_an_intake_with_the_booking_and_queues_invite_and_preparation(
    gw: Gateway,
) -> None:
    """A signed BOOKING_CREATED creates one invited intake from the payload and queues the slow work."""
    response = await deliver(gw.client, sample("booking_created"))
    assert response.json() == {"status": "created"}
    record = await record_for(gw.services, OLD_UID)
    booking = record.booking
    assert record.status == "invited" and record.course_slug == "writ101"
    assert (booking.booking_id, booking.event_type_id, booking.event_type_slug) == (
        48213,
        3101,
        "writ101-office-hours",
    )
    assert booking.start_time == "2026-12-03T15:00:00Z" and booking.end_time == "2026-12-03T15:20:00Z"
    assert (booking.student.name, booking.student.email) == ("Sam Lee", "sam.lee@student.example.edu")
    assert booking.organizer.email == "ana.rivera@univ.example.edu"
    assert booking.notes == "Stuck on my thesis for essay 2"
    assert len(record.token) >= 32
    jobs = await jobs_of(gw.services, record.token)
    assert sorted(j.kind for j in jobs) == ["invite_email", "partial_summary", "prepare"]
    (partial,) = [j for j in jobs if j.kind == "partial_summary"]
    assert partial.state == "pending"
    assert partial.scheduled_at == math.ceil(partial_due_at(gw.settings, booking.start_time))


async def test_created_falls_back_to_the_booking_form_when_there_are_no_attendees(gw: Gateway) -> None:
    """The student comes from ``responses`` (name, email, notes) when ``attendees`` is empty."""
    data = sample("booking_created")
    data["payload"]["attendees"] = []
    del data["payload"]["additionalNotes"]
    await deliver(gw.client, data)
    booking = (await record_for(gw.services, OLD_UID)).booking
    assert (booking.student.name, booking.student.email) == ("Sam Lee", "sam.lee@student.example.edu")
    assert booking.notes == "Stuck on my thesis for essay 2"


async def test_event_type_matched_by_slug_alone(gw: Gateway) -> None:
    """An unknown ``eventTypeId`` still maps to the course through the ``type`` slug."""
    data = sample("booking_created")
    data["payload"]["eventTypeId"] = 999999
    assert (await deliver(gw.client, data)).json() == {"status": "created"}


async def test_unknown_event_type_is_acknowledged_and_ignored(gw: Gateway) -> None:
    """A booking for an event type of no course is a 2xx ``ignored`` and creates nothing."""
    data = sample("booking_created")
    data["payload"]["eventTypeId"] = 424242
    data["payload"]["type"] = "someone-elses-meeting"
    assert (await deliver(gw.client, data)).json() == {"status": "ignored"}
    assert await _intake_count(gw) == 0


async def test_unknown_trigger_is_acknowledged_and_ignored(gw: Gateway) -> None:
    """Triggers we do not handle (e.g. BOOKING_PAYMENT_INITIATED) get a 2xx so Cal.com keeps the hook."""
    data = sample("booking_created")
    data["triggerEvent"] = "BOOKING_PAYMENT_INITIATED"
    assert (await deliver(gw.client, data)).json() == {"status": "ignored"}
    assert await _intake_count(gw) == 0


async def test_payload_with_unknown_fields_is_accepted(gw: Gateway) -> None:
    """Real deliveries carry more fields than the samples; they are ignored, not rejected."""
    data = sample("booking_created")
    data["payload"]["someFutureField"] = {"nested": [1, 2, 3]}
    data["webhookVersion"] = "2099-01-01"
    assert (await deliver(gw.client, data)).json() == {"status": "created"}


# --- signature, size, shape --------------------------------------------------------------------------


async def test_wrong_signature_is_401(gw: Gateway) -> None:
    """A body signed with another secret is refused with problem JSON and creates nothing."""
    response = await post_webhook(gw.client, encode(sample("booking_created")), secret="not-our-secret")
    _assert_problem(response, 401)
    assert await _intake_count(gw) == 0


async def test_signature_over_a_different_body_is_401(gw: Gateway) -> None:
    """The HMAC covers the exact raw bytes: re-serialising the JSON (one space) breaks it."""
    body = encode(sample("booking_created"))
    from services.gateway.webhooks.signature import sign

    response = await post_webhook(gw.client, body + b" ", signature=sign(body, "whsec-test-secret"))
    _assert_problem(response, 401)


async def test_missing_signature_is_401(gw: Gateway) -> None:
    response = await post_webhook(gw.client, encode(sample("booking_created")), signature=None)
    _assert_problem(response, 401)
    assert await _intake_count(gw) == 0


async def test_no_secret_provided_literal_is_401(gw: Gateway) -> None:
    """Cal.com's ``no-secret-provided`` proves nothing and is refused like a missing signature."""
    response = await post_webhook(gw.client, encode(sample("booking_created")), signature=NO_SECRET)
    _assert_problem(response, 401)
    assert await _intake_count(gw) == 0


async def test_unsigned_is_accepted_only_when_explicitly_allowed(tmp_path: Path, redis_url: str) -> None:
    """With ``calcom_allow_unsigned`` a missing or ``no-secret-provided`` signature is let through."""
    async with open_gateway(tmp_path, redis_url, calcom_allow_unsigned=True) as gw:
        response = await post_webhook(gw.client, encode(sample("booking_created")), signature=NO_SECRET)
        assert response.json() == {"status": "created"}
        bad = await post_webhook(gw.client, encode(sample("booking_created")), secret="wrong")
        _assert_problem(bad, 401)


async def test_no_configured_secret_refuses_signed_webhooks(tmp_path: Path, redis_url: str) -> None:
    """Without a configured secret nothing can be verified, so (unless unsigned is allowed) all is 401."""
    async with open_gateway(tmp_path, redis_url, calcom_webhook_secret="") as gw:
        _assert_problem(await post_webhook(gw.client, encode(sample("booking_created"))), 401)


async def test_body_over_the_cap_is_413(tmp_path: Path, redis_url: str) -> None:
    """A body over ``max_webhook_bytes`` is refused with 413 problem JSON before the signature check."""
    async with open_gateway(tmp_path, redis_url, max_webhook_bytes=2048) as gw:
        data = sample("booking_created")
        data["payload"]["additionalNotes"] = "x" * 4096
        _assert_problem(await post_webhook(gw.client, encode(data)), 413)
        assert await _intake_count(gw) == 0


async def test_chunked_body_over_the_cap_is_413(tmp_path: Path, redis_url: str) -> None:
    """Without a Content-Length the body is counted as it streams in, and still refused at the cap.

    Driven at the ASGI level (chunks with ``more_body``): httpx's in-process test transport cannot stream.
    """
    async with open_gateway(tmp_path, redis_url, max_webhook_bytes=2048) as gw:
        chunks = [{"type": "http.request", "body": b" " * 512, "more_body": True} for _ in range(8)]
        chunks.append({"type": "http.request", "body": b"", "more_body": False})
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return chunks.pop(0) if chunks else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/webhooks/calcom",
            "raw_path": b"/webhooks/calcom",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
            "client": ("127.0.0.1", 5000),
            "server": ("testserver", 80),
            "state": {},
        }
        # in the app's own event loop: the rate limiter counts in the app's Redis, whose connections
        # belong to the loop the test client runs the app in
        gw.client.blocking_portal.call(gw.client.app, scope, receive, send)  # type: ignore[arg-type]
        start = next(m for m in sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        assert start["status"] == 413 and json.loads(body)["status"] == 413
        assert len(chunks) > 1, "the body should not have been read to the end"


async def test_malformed_json_is_400(gw: Gateway) -> None:
    response = await post_webhook(gw.client, b'{"triggerEvent": "BOOKING_CREATED", "payload": {')
    _assert_problem(response, 400)


async def test_json_that_is_not_a_webhook_is_422(gw: Gateway) -> None:
    """Valid JSON without ``triggerEvent`` (or not an object) is 422."""
    _assert_problem(await post_webhook(gw.client, b"[1, 2, 3]"), 422)
    _assert_problem(await post_webhook(gw.client, b'{"createdAt": "2026-11-28T18:04:11.512Z"}'), 422)


async def test_booking_without_required_fields_is_422(gw: Gateway) -> None:
    """A BOOKING_CREATED without a uid, or with an unparseable start time, is 422 and creates nothing."""
    data = sample("booking_created")
    del data["payload"]["uid"]
    _assert_problem(await post_webhook(gw.client, encode(data)), 422)
    data = sample("booking_created")
    data["payload"]["startTime"] = "next tuesday"
    _assert_problem(await post_webhook(gw.client, encode(data)), 422)
    data = sample("booking_created")
    del data["payload"]
    _assert_problem(await post_webhook(gw.client, encode(data)), 422)
    assert await _intake_count(gw) == 0


# --- idempotency and ordering ----------------------------------------------------------------------


async def test_duplicate_delivery_is_acknowledged_once(gw: Gateway) -> None:
    """The same (uid, trigger, createdAt) twice: one intake, one invite, second answer ``duplicate``."""
    body = encode(sample("booking_created"))
    assert (await post_webhook(gw.client, body)).json() == {"status": "created"}
    second = await post_webhook(gw.client, body)
    assert second.status_code == 200 and second.json() == {"status": "duplicate"}
    record = await record_for(gw.services, OLD_UID)
    assert await _intake_count(gw) == 1
    assert [j.kind for j in await jobs_of(gw.services, record.token)].count("invite_email") == 1


async def test_same_booking_created_again_with_new_timestamp_does_not_duplicate(gw: Gateway) -> None:
    """A second BOOKING_CREATED for the same uid (another createdAt) keeps the existing intake."""
    await deliver(gw.client, sample("booking_created"))
    token = (await record_for(gw.services, OLD_UID)).token
    again = sample("booking_created")
    again["createdAt"] = "2026-11-28T18:09:00.000Z"
    assert (await deliver(gw.client, again)).json() == {"status": "duplicate"}
    assert (await record_for(gw.services, OLD_UID)).token == token
    assert await _intake_count(gw) == 1


async def test_cancelled_before_created_does_not_resurrect(gw: Gateway) -> None:
    """A CANCELLED that overtakes its CREATED wins: the late CREATED creates nothing."""
    assert (await deliver(gw.client, sample("booking_cancelled"))).json() == {"status": "cancelled"}
    assert (await deliver(gw.client, sample("booking_created"))).json() == {"status": "ignored"}
    assert await _intake_count(gw) == 0


async def test_late_created_after_rescheduled_does_not_create_a_second_intake(gw: Gateway) -> None:
    """RESCHEDULED first (creates the intake at the new uid), then the old CREATED: still one intake."""
    assert (await deliver(gw.client, upcoming("booking_rescheduled"))).json() == {"status": "created"}
    assert (await deliver(gw.client, upcoming("booking_created"))).json() == {"status": "ignored"}
    assert await _intake_count(gw) == 1
    assert await store_of(gw.services).token_for_booking(OLD_UID) is None
    await record_for(gw.services, NEW_UID)


async def test_a_delivery_that_failed_halfway_can_be_retried(gw: Gateway) -> None:
    """Nothing is marked seen until handling succeeded: a retry after a failure runs again, once."""
    calls: list[str] = []

    async def flaky() -> Ack:
        calls.append("run")
        if len(calls) == 1:
            raise ConnectionError("redis went away mid-way")
        return Ack("created")

    key = "test-delivery-key"
    args = {"trigger": "BOOKING_CREATED", "booking_uid": "u1"}
    try:
        await handle_once(gw.services, key, ["u1"], flaky, **args)
    except ConnectionError:
        pass
    else:
        raise AssertionError("the first attempt should have failed")
    assert (await handle_once(gw.services, key, ["u1"], flaky, **args)).status == "created"
    assert (await handle_once(gw.services, key, ["u1"], flaky, **args)).status == "duplicate"
    assert calls == ["run", "run"]


# --- reschedule ------------------------------------------------------------------------------------


async def _chatted(gw: Gateway, uid: str) -> IntakeRecord:
    """Simulate the chat: the student answered twice (what the chat routes would have stored)."""
    store = store_of(gw.services)
    record = await record_for(gw.services, uid)
    record.status = "active"
    record.interview.messages = [
        ChatMessage("assistant", "What would you like help with?"),
        ChatMessage("student", "My thesis for essay 2 is too broad."),
        ChatMessage("assistant", "What have you tried so far?"),
        ChatMessage("student", "I rewrote it twice."),
    ]
    record.interview.prompt = [{"role": "system", "content": "You are an intake assistant."}]
    await store.save(record)
    return record


async def test_reschedule_moves_the_intake_and_keeps_what_the_student_wrote(gw: Gateway) -> None:
    """RESCHEDULED: same token, new uid/id/times, every message kept, old uid gone, partial due moved."""
    await deliver(gw.client, upcoming("booking_created", days=3))
    before = await _chatted(gw, OLD_UID)
    moved = upcoming("booking_rescheduled", days=5)
    assert (await deliver(gw.client, moved)).json() == {"status": "rescheduled"}
    after = await record_for(gw.services, NEW_UID)
    assert after.token == before.token
    assert after.booking.booking_id == 48377
    assert parse_time(after.booking.start_time) == parse_time(moved["payload"]["startTime"])
    assert after.interview.messages == before.interview.messages
    assert after.interview.prompt == before.interview.prompt
    assert after.status == "active"
    assert await store_of(gw.services).token_for_booking(OLD_UID) is None
    (partial,) = await _partials(gw, after.token)
    expected = partial_due_at(gw.settings, after.booking.start_time)
    assert partial.scheduled_at is not None and abs(partial.scheduled_at - expected) < 5
    assert await _intake_count(gw) == 1


async def test_reschedule_without_an_intake_is_treated_as_a_create(gw: Gateway) -> None:
    """If the old booking never had an intake, the rescheduled booking gets one."""
    assert (await deliver(gw.client, upcoming("booking_rescheduled"))).json() == {"status": "created"}
    record = await record_for(gw.services, NEW_UID)
    assert record.status == "invited" and record.booking.booking_id == 48377


async def test_cancel_after_reschedule_closes_the_moved_intake(gw: Gateway) -> None:
    """CANCELLED for the new uid reaches the intake that moved there."""
    await deliver(gw.client, upcoming("booking_created"))
    await deliver(gw.client, upcoming("booking_rescheduled"))
    cancel = sample("booking_cancelled")
    cancel["payload"]["uid"] = NEW_UID
    await deliver(gw.client, cancel)
    assert (await record_for(gw.services, NEW_UID)).status == "cancelled"


# --- cancel ----------------------------------------------------------------------------------------


async def test_cancel_closes_the_intake_and_deletes_the_transcript(gw: Gateway) -> None:
    """CANCELLED: status cancelled, messages/prompt/summary gone, pending jobs cancelled, token resolves."""
    await deliver(gw.client, upcoming("booking_created"))
    record = await _chatted(gw, OLD_UID)
    record.summary = make_summary(record)
    await store_of(gw.services).save(record)
    assert (await deliver(gw.client, sample("booking_cancelled"))).json() == {"status": "cancelled"}
    closed = await store_of(gw.services).get(record.token)
    assert closed is not None and closed.status == "cancelled"
    assert closed.interview.messages == [] and closed.interview.prompt == []
    assert closed.summary is None
    assert await jobs_of(gw.services, record.token) == [], "pending jobs (the partial summary too) dropped"
    raw = await gw.services.redis.get(f"intake:tok:{record.token}")
    assert b"thesis for essay 2 is too broad" not in raw


async def test_cancel_twice_is_harmless(gw: Gateway) -> None:
    await deliver(gw.client, sample("booking_created"))
    await deliver(gw.client, sample("booking_cancelled"))
    again = sample("booking_cancelled")
    again["createdAt"] = "2026-11-28T19:00:00.000Z"
    assert (await deliver(gw.client, again)).json() == {"status": "cancelled"}
    assert (await record_for(gw.services, OLD_UID)).status == "cancelled"


# --- analytics-only triggers ---------------------------------------------------------------------------


async def test_meeting_ended_and_no_show_are_recorded_for_analytics_only(gw: Gateway) -> None:
    """MEETING_ENDED (top-level fields) and NO_SHOW only go onto the analytics stream (the host by email;
    no student email)."""
    assert (await deliver(gw.client, sample("meeting_ended"))).json() == {"status": "recorded"}
    assert (await deliver(gw.client, sample("booking_no_show_updated"))).json() == {"status": "recorded"}
    entries = await gw.services.redis.xrange(STREAM)
    events = [decode(fields[b"e"]) for _, fields in entries]
    assert [e.kind for e in events] == ["meeting_ended", "no_show"]
    assert all(e.booking == OLD_UID for e in events)
    assert events[0].host == "ana.rivera@univ.example.edu" and events[0].course == "writ101"
    assert events[1].value == "1"
    assert "student.example.edu" not in json.dumps([msgspec.to_builtins(e) for e in events])
    assert await _intake_count(gw) == 0
    assert (await deliver(gw.client, sample("meeting_ended"))).json() == {"status": "duplicate"}


async def test_a_new_booking_emits_its_events_and_a_refused_event_fails_nothing(gw: Gateway) -> None:
    """A creation writes the delivery's events (the booking, the invitation) in its own step; if Redis
    refuses them, the intake, its jobs and the seen mark are still written, and the failure only logged."""
    assert (await deliver(gw.client, upcoming("booking_created"))).json() == {"status": "created"}
    events = [decode(fields[b"e"]) for _, fields in await gw.services.redis.xrange(STREAM)]
    assert [e.kind for e in events] == ["booking_created", "intake_invited"]
    assert all(e.booking == OLD_UID and e.emitted for e in events)
    await gw.services.redis.delete(STREAM)
    await gw.services.redis.set(STREAM, b"not a stream")  # every XADD fails
    other = upcoming("booking_created")
    other["payload"]["uid"] = "refused-events"
    with capture_logs() as lines:
        assert (await deliver(gw.client, other)).json() == {"status": "created"}
    assert [line["event"] for line in lines].count("analytics_emit_failed") == 2
    record = await record_for(gw.services, "refused-events")
    assert sorted(j.kind for j in await jobs_of(gw.services, record.token)) == [
        "invite_email",
        "partial_summary",
        "prepare",
    ]
    assert not await gw.services.intakes.setup_pending(record.token)
    assert not [k async for k in gw.services.redis.scan_iter("calcom:lock:*")], "its locks are freed"
    assert not [k async for k in gw.services.redis.scan_iter("calcom:processing:*")]
    assert (await deliver(gw.client, other)).json() == {"status": "duplicate"}
    await gw.services.redis.delete(STREAM)


async def test_every_job_of_a_delivery_carries_its_request_id(gw: Gateway) -> None:
    """The worker's lines for a job name the request that queued it (``X-Request-ID``)."""
    body = encode(upcoming("booking_created"))
    headers = {
        "content-type": "application/json",
        "x-cal-signature-256": sign(body, SECRET),
        "x-request-id": "req-webhook-1",
    }
    response = await gw.client.post("/webhooks/calcom", content=body, headers=headers)
    assert response.json() == {"status": "created"} and response.headers["x-request-id"] == "req-webhook-1"
    record = await record_for(gw.services, OLD_UID)
    queued = [await gw.services.jobs.intake.job(j.id) for j in await jobs_of(gw.services, record.token)]
    assert len(queued) == 3
    assert {job.meta["request_id"] for job in queued if job is not None} == {"req-webhook-1"}


async def test_every_acknowledgement_is_sent_as_litestar_would_send_the_ack() -> None:
    """The pre-encoded 2xx answers: for every status, the ``Ack``'s JSON with its own length, and fresh
    messages each time (the middlewares add their headers to them)."""
    assert set(ACKNOWLEDGED) == set(handling.AckStatus.__args__)  # type: ignore[attr-defined]
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    for status, answer in ACKNOWLEDGED.items():
        sent.clear()
        for _ in range(2):
            await answer({"type": "http"}, None, send)  # type: ignore[arg-type]
        start, body = sent[0], sent[1]
        assert start["status"] == 200 and body["more_body"] is False
        assert msgspec.json.decode(body["body"], type=Ack) == Ack(status)
        assert body["body"] == msgspec.json.encode(Ack(status))
        assert start["headers"] == [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body["body"])).encode()),
        ]
        assert sent[2]["headers"] is not start["headers"]


async def test_ack_body_is_a_struct(gw: Gateway) -> None:
    """The 2xx body decodes as ``Ack`` (a documented wire shape)."""
    response = await deliver(gw.client, sample("booking_created"))
    assert msgspec.json.decode(response.content, type=Ack).status == "created"


# --- lost or doubled work ------------------------------------------------------------------------------


async def test_a_booking_lock_held_elsewhere_is_waited_for_and_every_lock_taken_is_freed(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim takes the delivery's marker and the free booking locks in one step; a lock another event
    holds is waited for, and when the wait runs out (409) the marker and the lock already taken are freed,
    so the sender's retry goes through."""
    monkeypatch.setattr(handling, "_LOCK_WAIT_S", 0.2)
    redis = gw.services.redis
    other_event = await locks.acquire(redis, f"calcom:lock:{OLD_UID}", ttl_s=30)  # sorts after NEW_UID
    assert other_event is not None
    calls: list[str] = []

    async def run() -> Ack:
        calls.append("run")
        assert await redis.exists(f"calcom:lock:{NEW_UID}", f"calcom:lock:{OLD_UID}") == 2
        return Ack("rescheduled")

    key, uids = "test-locks-key", [NEW_UID, OLD_UID]
    args = {"trigger": "BOOKING_RESCHEDULED", "booking_uid": NEW_UID}
    with pytest.raises(Conflict):
        await handle_once(gw.services, key, uids, run, **args)
    assert not calls
    assert await redis.exists(f"calcom:lock:{NEW_UID}", f"calcom:processing:{key}") == 0
    await other_event.release()
    assert (await handle_once(gw.services, key, uids, run, **args)).status == "rescheduled"
    assert calls == ["run"]
    assert (
        await redis.exists(f"calcom:lock:{NEW_UID}", f"calcom:lock:{OLD_UID}", f"calcom:processing:{key}")
        == 0
    )
    assert (await handle_once(gw.services, key, uids, run, **args)).status == "duplicate"


async def test_a_copy_arriving_while_the_first_is_handled_is_409_not_dropped(
    tmp_path: Path, redis_url: str
) -> None:
    """The first delivery waits for its booking (another event holds it); a copy arriving meanwhile is
    409 (Cal.com sends it again) instead of a 2xx ``duplicate`` that would lose it if the first failed."""
    body = encode(sample("booking_created"))
    async with open_live_app(tmp_path, redis_url) as (services, http):
        other_event = await locks.acquire(services.redis, f"calcom:lock:{OLD_UID}", ttl_s=30)
        assert other_event is not None
        first = asyncio.create_task(post_webhook(http, body))

        async def first_is_processing() -> bool:
            return bool([k async for k in services.redis.scan_iter("calcom:processing:*")])

        await wait_for(first_is_processing)
        copy = await post_webhook(http, body)
        await other_event.release()
        _assert_problem(copy, 409)
        assert (await first).json() == {"status": "created"}
        assert (await post_webhook(http, body)).json() == {"status": "duplicate"}
        assert len(await services.intakes.tokens()) == 1


async def test_a_creation_interrupted_after_the_record_is_finished_by_cal_coms_retry(gw: Gateway) -> None:
    """The creation step stops right after the intake record is written (here: Redis fails the step at
    its first job, and a Lua script's writes before a failure stay). Cal.com's retry of the same delivery
    is not a ``duplicate``: it queues the invitation and says ``created``."""
    incomplete = gw.services.jobs.intake.namespace("incomplete")
    await gw.services.redis.set(incomplete, b"not a sorted set")  # the step's first job fails on it
    body = encode(upcoming("booking_created"))
    assert (await post_webhook(gw.client, body)).status_code == 500
    await gw.services.redis.delete(incomplete)
    record = await record_for(gw.services, OLD_UID)
    assert await jobs_of(gw.services, record.token) == [], "half-created: the record, no jobs"
    assert await gw.services.intakes.setup_pending(record.token)
    assert (await post_webhook(gw.client, body)).json() == {"status": "created"}
    kinds = sorted(j.kind for j in await jobs_of(gw.services, record.token))
    assert kinds == ["invite_email", "partial_summary", "prepare"]
    assert not await gw.services.intakes.setup_pending(record.token)
    assert (await post_webhook(gw.client, body)).json() == {"status": "duplicate"}


async def test_the_worker_finishes_an_interrupted_creation_without_a_retry(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cal.com may never retry: the worker's ``finish_setups`` cron queues the jobs of an intake whose
    creation stopped half-way (as a gateway that stored the record in a step of its own, then died, left
    it), writes its model on it, and leaves complete intakes alone."""
    payload = msgspec.convert(upcoming("booking_created")["payload"], BookingPayload)
    course = gw.services.catalog.for_event_type(payload.event_type_id, payload.type)
    assert course is not None
    record = IntakeRecord(
        token=new_token(),
        booking=to_booking(payload),
        course_slug=course.slug,
        created_at=now_iso(),
        updated_at=now_iso(),
    )
    assert await gw.services.intakes.create(record) == (record.token, True)  # no model, no jobs yet
    complete = upcoming("booking_created", days=4)
    complete["payload"]["uid"] = "a-complete-intake"
    assert (await deliver(gw.client, complete)).json() == {"status": "created"}
    monkeypatch.setattr(job_kinds, "SETUP_GRACE_S", 0.0)
    assert await job_kinds.finish_setups({"services": gw.services}) == 1  # type: ignore[typeddict-item]
    kinds = sorted(j.kind for j in await jobs_of(gw.services, record.token))
    assert kinds == ["invite_email", "partial_summary", "prepare"]
    assert (await record_for(gw.services, OLD_UID)).model, "its model is written on it"
    assert await job_kinds.finish_setups({"services": gw.services}) == 0  # type: ignore[typeddict-item]
