"""The outbox on a real Redis: claiming, leasing, backoff, dead letters, requeue, cancellation."""

from __future__ import annotations

import time

from services.gateway.delivery.outbox import Outbox, backoff_delay, partial_due_at
from services.gateway.intake.store import parse_time
from services.settings import Settings
from tests.gateway.delivery.harness import Gateway


def test_backoff_grows_exponentially_with_jitter_and_a_ceiling(gw: Gateway) -> None:
    """Delay n is in [base*2^(n-1)/2, base*2^(n-1)], capped at the maximum."""
    settings = Settings(outbox_backoff_base_s=10, outbox_backoff_max_s=100)
    for attempt, ceiling in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (9, 100)]:
        delays = {backoff_delay(settings, attempt) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1, "jitter spreads retries"


async def test_a_claimed_job_is_leased_not_lost(gw: Gateway) -> None:
    """Claiming hides a job from other workers, but it comes back if its worker never reports."""
    outbox = Outbox(gw.services.redis, gw.settings)
    job = await outbox.enqueue("invite_email", "tok")
    assert [j.id for j in await outbox.claim_due()] == [job.id]
    assert await outbox.claim_due() == []
    later = time.time() + 301
    assert [j.id for j in await outbox.claim_due(now=later)] == [job.id]


async def test_not_yet_due_jobs_wait(gw: Gateway) -> None:
    outbox = Outbox(gw.services.redis, gw.settings)
    await outbox.enqueue("invite_email", "tok", delay_s=60)
    assert await outbox.claim_due() == []


async def test_failures_back_off_then_dead_letter_and_requeue_revives(gw: Gateway) -> None:
    """Each failure counts an attempt and reschedules; the last one parks the job in the dead letters."""
    outbox = Outbox(gw.services.redis, gw.settings)  # outbox_max_attempts = 4 in the test settings
    job = await outbox.enqueue("summary_calcom", "tok")
    delays = []
    for _ in range(3):
        (claimed,) = await outbox.claim_due(now=time.time() + 10)
        delays.append(await outbox.retry_or_bury(claimed, "GET booking answered 500"))
    assert all(d is not None and d > 0 for d in delays)
    (claimed,) = await outbox.claim_due(now=time.time() + 10)
    assert await outbox.retry_or_bury(claimed, "GET booking answered 500") is None
    (dead,) = await outbox.dead_letters()
    assert (dead.id, dead.state, dead.attempts, dead.last_error) == (
        job.id,
        "dead",
        4,
        "GET booking answered 500",
    )
    assert await outbox.claim_due(now=time.time() + 3600) == []
    assert await outbox.requeue(job.id)
    (revived,) = await outbox.claim_due()
    assert (revived.state, revived.attempts) == ("pending", 0)
    assert await outbox.dead_letters() == []


async def test_cancel_for_cancels_pending_and_dead_jobs_of_one_intake_only(gw: Gateway) -> None:
    outbox = Outbox(gw.services.redis, gw.settings)
    mine = await outbox.enqueue("summary_email", "tok-a")
    dead = await outbox.enqueue("summary_calcom", "tok-a")
    await outbox.bury(dead, "down")
    other = await outbox.enqueue("summary_email", "tok-b")
    assert await outbox.cancel_for("tok-a") == 2
    assert {(await outbox.get(mine.id)).state, (await outbox.get(dead.id)).state} == {"cancelled"}  # type: ignore[union-attr]
    assert [j.id for j in await outbox.claim_due()] == [other.id]
    assert await outbox.dead_letters() == []


def test_partial_due_time_is_before_the_meeting_or_halfway_for_late_bookings(gw: Gateway) -> None:
    """Due ``partial_before_meeting_s`` (2 h) before; a booking made less than 2 h ahead: halfway there."""
    now = 1_790_000_000.0  # 2026-09-21, well before the meeting
    start = parse_time("2027-01-15T08:00:00Z").timestamp()
    assert partial_due_at(gw.settings, "2027-01-15T08:00:00Z", now=now) == start - 7200
    soon = now + 3600
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(soon))
    assert partial_due_at(gw.settings, iso, now=now) == now + 1800
