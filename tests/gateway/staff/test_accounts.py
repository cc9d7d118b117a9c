"""Staff accounts through the real app, a real Redis and a real SMTP server: emailed login links (single
use, 15 minutes, the same answer for every address, rate-limited), isolation between two courses' staff,
CSRF refusals, and the audit log the operator reads.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis
from litestar import Litestar
from litestar.testing import AsyncTestClient

from services.coursepack import Course, StaffMember
from services.gateway.app import create_app
from services.gateway.intake.models import IntakeRecord
from services.gateway.staff import accounts, auth
from services.settings import Settings
from tests.fixtures.smtp import SmtpCapture
from tests.gateway.intake.scripted import ScriptedModel
from tests.gateway.staff.harness import (
    STAFF_PASSWORD,
    course,
    csrf_ready,
    make_settings,
    open_login_link,
    save,
    seed_intake,
    services_factory,
)

TA = "ta.stat@example.edu"  # staffs STAT 150 only
BIO = "rivera@example.edu"  # the instructor of BIO 110 only
BOTH = "both@example.edu"  # a TA of both courses
_LINK = re.compile(r"http://127\.0\.0\.1:8080(/staff/login/[A-Za-z0-9_-]+)")


def stat() -> Course:
    return msgspec.structs.replace(course(), staff=[StaffMember(TA, "Sam Tan"), StaffMember(BOTH, "Bo Th")])


def bio() -> Course:
    return msgspec.structs.replace(
        course(),
        slug="bio110",
        code="BIO 110",
        instructor_name="Dr. Ana Rivera",
        instructor_email=BIO,
        staff=[StaffMember(BOTH, "Bo Th")],
    )


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, smtp_server: SmtpCapture) -> Settings:
    return make_settings(tmp_path, redis_url, smtp_host=smtp_server.host, smtp_port=smtp_server.port)


def _app(settings: Settings) -> Litestar:
    return create_app(settings, services_factory=services_factory(ScriptedModel(), [stat(), bio()]))


async def _new_client(settings: Settings) -> AsyncTestClient[Litestar]:
    return AsyncTestClient(_app(settings))


@pytest.fixture(autouse=True)
async def _fresh_limits(redis_url: str) -> AsyncIterator[None]:
    """Link-request windows are per address: each test starts with none used."""
    redis = aioredis.from_url(redis_url)
    try:
        for key in await redis.keys("intake:ratelimit:staff_link_*"):
            await redis.delete(key)
        yield
    finally:
        await redis.aclose()


async def _mail_to(smtp: SmtpCapture, address: str, count: int = 1, wait_s: float = 10.0) -> list[str]:
    """The bodies of the messages to ``address`` once ``count`` arrived (links are sent off-request)."""
    for _ in range(int(wait_s / 0.05)):
        found = smtp.to(address)
        if len(found) >= count:
            return [str(m.get_body(("plain",)).get_content()) for m in found]  # type: ignore[union-attr]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} message(s) to {address} did not arrive")


async def _request_link(client: AsyncTestClient[Litestar], email: str) -> tuple[int, dict[str, str]]:
    response = await client.post("/staff/login/link", json={"email": email})
    return response.status_code, response.json()


async def _login_as(client: AsyncTestClient[Litestar], smtp: SmtpCapture, email: str) -> None:
    """The whole emailed-link login: ask, read the mail, open the link (then send the CSRF header)."""
    before = len(smtp.to(email))
    assert (await _request_link(client, email))[0] == 202
    body = (await _mail_to(smtp, email, before + 1))[-1]
    opened = await open_login_link(client, _LINK.findall(body)[-1])
    assert opened.status_code == 303, opened.text
    await csrf_ready(client)


async def _seed(redis_url: str, settings: Settings, slug: str) -> IntakeRecord:
    record = await seed_intake(redis_url, settings)
    record.course_slug = slug
    await save(redis_url, settings, record)
    return record


async def test_a_course_ta_logs_in_by_an_emailed_link(settings: Settings, smtp_server: SmtpCapture) -> None:
    """The link logs in once, lands on the intakes, and the mail holds nothing but the link."""
    async with await _new_client(settings) as client:
        status, body = await _request_link(client, TA)
        assert status == 202 and body["detail"].startswith("If this address belongs")
        mail = (await _mail_to(smtp_server, TA))[0]
        path = _LINK.findall(mail)[0]
        for _ in range(3):  # opening it (as a mail filter checking links does) neither logs in nor uses it up
            shown = await client.get(path, follow_redirects=False)
            assert shown.status_code == 200 and "Log in" in shown.text
        assert (await client.get("/staff/api/intakes")).status_code == 401
        opened = await open_login_link(client, path)
        assert opened.status_code == 303 and opened.headers["location"] == "/staff/intakes"
        assert (await client.get("/staff/api/intakes")).status_code == 200
        async with await _new_client(settings) as other:  # the same link, a second time: refused
            again = await open_login_link(other, path)
            assert again.status_code == 410 and "expired or was already used" in again.text
            assert (await other.get("/staff/api/intakes")).status_code == 401


async def test_an_expired_link_is_refused(
    settings: Settings, smtp_server: SmtpCapture, redis_url: str
) -> None:
    """Links are stored 15 minutes (by digest only); one past its time logs nobody in."""
    async with await _new_client(settings) as client:
        await _request_link(client, TA)
        path = _LINK.findall((await _mail_to(smtp_server, TA))[0])[0]
        token = path.rsplit("/", 1)[1]
        redis = aioredis.from_url(redis_url)
        try:
            key = accounts.link_key(token)
            assert 880 <= await redis.ttl(key) <= accounts.LINK_TTL_S
            assert token.encode() not in (await redis.get(key) or b"")
            await redis.pexpire(key, 1)
            await asyncio.sleep(0.05)
        finally:
            await redis.aclose()
        assert (await client.get(path, follow_redirects=False)).status_code == 410
        assert (await client.get("/staff/api/intakes")).status_code == 401


async def test_the_answer_is_the_same_for_every_address(settings: Settings, smtp_server: SmtpCapture) -> None:
    """Known, unknown and malformed addresses, JSON or a form: the same 202 and words; only staff get mail."""
    async with await _new_client(settings) as client:
        known = await client.post("/staff/login/link", json={"email": TA})
        unknown = await client.post("/staff/login/link", json={"email": "stranger@example.edu"})
        junk = await client.post(
            "/staff/login/link", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert known.status_code == unknown.status_code == junk.status_code == 202
        assert known.content == unknown.content == junk.content
        form = await client.post("/staff/login/link", data={"email": "stranger@example.edu"})
        assert form.status_code == 202 and known.json()["detail"] in form.text
        await _mail_to(smtp_server, TA)
        await asyncio.sleep(0.3)
        assert not smtp_server.to("stranger@example.edu")


async def test_link_requests_are_limited_per_address(settings: Settings, smtp_server: SmtpCapture) -> None:
    """Past the per-address window the answer stays the same, but no more mail goes out."""
    async with await _new_client(settings) as client:
        for _ in range(auth.LINKS_PER_EMAIL + 3):
            assert (await _request_link(client, TA))[0] == 202
        await _mail_to(smtp_server, TA, auth.LINKS_PER_EMAIL)
        await asyncio.sleep(0.5)
        assert len(smtp_server.to(TA)) == auth.LINKS_PER_EMAIL


async def test_staff_see_only_their_own_courses(
    settings: Settings, smtp_server: SmtpCapture, redis_url: str
) -> None:
    """A STAT TA: the list has only STAT intakes; BIO's detail, page, takeover, messages, rating and events
    are 404 as if the intake did not exist. A TA of both courses sees both."""
    mine = await _seed(redis_url, settings, "stat150")
    theirs = await _seed(redis_url, settings, "bio110")
    async with await _new_client(settings) as client:
        await _login_as(client, smtp_server, TA)
        listed = (await client.get("/staff/api/intakes")).json()
        ids = {r["staff_id"] for r in listed}
        assert mine.staff_id in ids and theirs.staff_id not in ids
        assert (await client.get(f"/staff/api/intakes/{mine.staff_id}")).status_code == 200
        base = f"/staff/api/intakes/{theirs.staff_id}"
        assert (await client.get(base)).status_code == 404
        assert (await client.get(f"/staff/intakes/{theirs.staff_id}")).status_code == 404
        assert (await client.post(f"{base}/takeover", json={"taken_over": True})).status_code == 404
        assert (await client.post(f"{base}/messages", json={"text": "hello"})).status_code == 404
        assert (await client.post(f"{base}/rating", json={"value": "useful"})).status_code == 404
        assert (await client.get(f"{base}/events")).status_code == 404  # refused before any stream starts
        assert (await client.get("/staff/api/intakes?course=bio110")).status_code == 404
        untouched = await client.get(f"/api/intakes/{theirs.token}")
        assert untouched.json()["taken_over"] is False and untouched.json()["messages"] == []
    async with await _new_client(settings) as client:
        await _login_as(client, smtp_server, BOTH)
        ids = {r["staff_id"] for r in (await client.get("/staff/api/intakes")).json()}
        assert {mine.staff_id, theirs.staff_id} <= ids


async def test_a_staff_link_without_a_session_goes_to_the_login_and_back(
    settings: Settings, smtp_server: SmtpCapture, redis_url: str
) -> None:
    """The summary's staff link, opened logged out: the login page, then the link back to the intake."""
    record = await _seed(redis_url, settings, "stat150")
    target = f"/staff/intakes/{record.staff_id}"
    async with await _new_client(settings) as client:
        first = await client.get(target, follow_redirects=False)
        assert first.status_code == 303 and first.headers["location"] == f"/staff/login?next={target}"
        page = await client.get(first.headers["location"])
        assert f'name="next" value="{target}"' in page.text
        asked = await client.post("/staff/login/link", data={"email": TA, "next": target})
        assert asked.status_code == 202
        path = _LINK.findall((await _mail_to(smtp_server, TA))[0])[0]
        opened = await open_login_link(client, path)
        assert opened.headers["location"] == target
        assert (await client.get(target)).status_code == 200


async def test_changes_without_the_csrf_token_are_refused(
    settings: Settings, smtp_server: SmtpCapture, redis_url: str
) -> None:
    """Logged in, a takeover or a logout without the token (or with a wrong one) is 403; with it, 200."""
    record = await _seed(redis_url, settings, "stat150")
    url = f"/staff/api/intakes/{record.staff_id}/takeover"
    async with await _new_client(settings) as client:
        assert (
            await client.post(f"/api/intakes/{record.token}/consent")
        ).status_code == 200  # no token needed
        await _login_as(client, smtp_server, TA)
        token = client.headers.pop("x-csrftoken")
        refused = await client.post(url, json={"taken_over": True})
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("application/problem+json")
        forged = await client.post(url, json={"taken_over": True}, headers={"x-csrftoken": "0" * 128})
        assert forged.status_code == 403
        assert (await client.post("/staff/logout", follow_redirects=False)).status_code == 403
        accepted = await client.post(url, json={"taken_over": True}, headers={"x-csrftoken": token})
        assert accepted.status_code == 200


async def test_the_audit_log_records_who_did_what(
    settings: Settings, smtp_server: SmtpCapture, redis_url: str
) -> None:
    """Login, view, takeover, message and hand-back by a TA appear with their address and the intake's staff
    id; only the operator may read the log."""
    record = await _seed(redis_url, settings, "stat150")
    base = f"/staff/api/intakes/{record.staff_id}"
    async with await _new_client(settings) as client:
        await client.post(f"/api/intakes/{record.token}/consent")
        await _login_as(client, smtp_server, TA)
        await client.get(f"/staff/intakes/{record.staff_id}")
        assert (await client.post(f"{base}/takeover", json={"taken_over": True})).status_code == 200
        assert (await client.post(f"{base}/messages", json={"text": "Hi, Sam here."})).status_code == 200
        assert (await client.post(f"{base}/takeover", json={"taken_over": False})).status_code == 200
        assert (await client.get("/staff/api/audit")).status_code == 403
    async with await _new_client(settings) as operator:
        token = await csrf_ready(operator)
        await operator.post("/staff/login", data={"password": STAFF_PASSWORD, "_csrf_token": token})
        log = (await operator.get(f"/staff/api/audit?actor={TA}")).json()
    mine = [(e["action"], e["target"]) for e in log[:5]]
    assert mine[::-1] == [
        ("login", "link"),
        ("view", record.staff_id),
        ("takeover", record.staff_id),
        ("message", record.staff_id),
        ("hand_back", record.staff_id),
    ]
    assert all(e["actor"] == TA and e["at"] for e in log)
    assert "Hi, Sam here" not in str(log)
