"""Rate limits through the real app on the real Redis: per intake link and per client, 429 problems with
``Retry-After``, and the client's address behind the tunnel taken only from the tunnel's header."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from litestar import Litestar
from litestar.connection import ASGIConnection
from prometheus_client import REGISTRY

from services.gateway.peers import client_address, is_local
from tests.gateway.delivery.harness import encode, open_live_app, post_webhook, upcoming
from tests.gateway.live import ELSEWHERE, LOOPBACK, client, running_app, services_of
from tests.gateway.staff.harness import make_settings, seed_intake, services_factory

OFF = {f"rate_limit_{name}": 0 for name in ("chat_per_token", "chat_per_client", "webhook_per_client")}


async def fresh_counts(app: Litestar) -> None:
    """Other tests of this session count against the same test client address: start from zero."""
    redis = services_of(app).redis
    keys = [key async for key in redis.scan_iter("intake:ratelimit*")]
    if keys:
        await redis.delete(*keys)


def assert_limited(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("/too-many-requests")
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert response.headers["ratelimit-limit"] == str(limit)


async def test_chat_is_limited_per_link(tmp_path: Path, redis_url: str) -> None:
    """The fourth request on one link within the minute is refused; another link from the same client
    still gets through (the limit is the link's, not the address's)."""
    settings = make_settings(tmp_path, redis_url, rate_limit_chat_per_token=3)
    first, other = await seed_intake(redis_url, settings), await seed_intake(redis_url, settings)
    async with running_app(settings, services_factory(None)) as app, client(app) as http:
        await fresh_counts(app)
        statuses = [(await http.post(f"/api/intakes/{first.token}/consent")).status_code for _ in range(3)]
        refused = await http.post(f"/api/intakes/{first.token}/messages", json={"text": "hello"})
        elsewhere = await http.post(f"/api/intakes/{other.token}/consent")
    assert statuses == [200, 200, 200]
    assert_limited(refused, 3)
    assert elsewhere.status_code == 200


async def test_chat_is_limited_per_client_across_links(tmp_path: Path, redis_url: str) -> None:
    """One address walking through many links (guessing, or a script) hits the per-client limit."""
    settings = make_settings(tmp_path, redis_url, rate_limit_chat_per_client=2)
    async with running_app(settings, services_factory(None)) as app, client(app, ELSEWHERE) as http:
        await fresh_counts(app)
        statuses = [(await http.post(f"/api/intakes/guess-{n}/consent")).status_code for n in range(2)]
        refused = await http.post("/api/intakes/guess-3/consent")
    assert statuses == [404, 404]
    assert_limited(refused, 2)


async def webhook_statuses(http: httpx.AsyncClient, headers: list[dict[str, str]]) -> list[int]:
    """Unsigned posts (401 each) from the given headers: the limiter counts before the signature check."""
    return [(await http.post("/webhooks/calcom", content=b"{}", headers=h)).status_code for h in headers]


async def test_behind_the_tunnel_each_client_has_its_own_budget(tmp_path: Path, redis_url: str) -> None:
    """Through the tunnel (loopback + CF-Connecting-IP) the header names the client, so two students
    behind one tunnel do not share a budget; X-Forwarded-For from loopback names nobody."""
    settings = make_settings(tmp_path, redis_url, **{**OFF, "rate_limit_webhook_per_client": 2})
    a, b = {"CF-Connecting-IP": "203.0.113.1"}, {"CF-Connecting-IP": "203.0.113.2"}
    spoofed = [{"X-Forwarded-For": f"192.0.2.{n}"} for n in range(3)]
    async with running_app(settings, services_factory(None)) as app, client(app, LOOPBACK) as http:
        await fresh_counts(app)
        tunnel = await webhook_statuses(http, [a, a, a, b])
        local = await webhook_statuses(http, spoofed)
    assert tunnel == [401, 401, 429, 401]
    assert local == [401, 401, 429], "X-Forwarded-For does not make a new client"


async def test_away_from_loopback_the_tunnel_header_is_ignored(tmp_path: Path, redis_url: str) -> None:
    """A client reaching the gateway directly cannot pick a fresh address per request with the header."""
    settings = make_settings(tmp_path, redis_url, **{**OFF, "rate_limit_webhook_per_client": 2})
    headers = [{"CF-Connecting-IP": f"203.0.113.{n}"} for n in range(3)]
    async with running_app(settings, services_factory(None)) as app, client(app, ELSEWHERE) as http:
        await fresh_counts(app)
        statuses = await webhook_statuses(http, headers)
    assert statuses == [401, 401, 429]


async def test_staff_login_is_limited_per_client(tmp_path: Path, redis_url: str) -> None:
    """Password guessing meets the per-client limit (on top of the failed-login throttle)."""
    settings = make_settings(tmp_path, redis_url, rate_limit_login_per_client=2)
    async with running_app(settings, services_factory(None)) as app, client(app, ELSEWHERE) as http:
        await fresh_counts(app)
        await http.get(
            "/staff/login"
        )  # the form's CSRF token (Litestar's CSRF middleware) comes with the page
        form = {"password": "wrong", "_csrf_token": http.cookies.get("staff_csrf") or ""}
        statuses = [(await http.post("/staff/login", data=form)).status_code for _ in range(2)]
        refused = await http.post("/staff/login", data=form)
        page = await http.get("/staff/login")
    assert statuses == [401, 401]
    assert_limited(refused, 2)
    assert page.status_code == 200, "the login page itself is not limited"


def connection(peer: str, **headers: str) -> ASGIConnection[Any, Any, Any, Any]:
    raw = [(k.lower().replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return ASGIConnection({"type": "http", "client": (peer, 1234), "headers": raw})  # type: ignore[arg-type]


def test_client_address_rules() -> None:
    """The tunnel's header only from loopback and only when it is an address; local means unforwarded."""
    assert client_address(connection("127.0.0.1", CF_Connecting_IP="203.0.113.5")) == "203.0.113.5"
    assert client_address(connection("::1", CF_Connecting_IP="2001:db8::1")) == "2001:db8::1"
    assert client_address(connection("127.0.0.1", CF_Connecting_IP="evil, 1.2.3.4")) == "127.0.0.1"
    assert client_address(connection("198.51.100.7", CF_Connecting_IP="203.0.113.5")) == "198.51.100.7"
    assert client_address(connection("127.0.0.1", X_Forwarded_For="203.0.113.5")) == "127.0.0.1"
    assert is_local(connection("127.0.0.1")) and is_local(connection("::1"))
    assert not is_local(connection("127.0.0.1", CF_Connecting_IP="203.0.113.5"))
    assert not is_local(connection("127.0.0.1", Forwarded="for=203.0.113.5"))
    assert not is_local(connection("198.51.100.7")) and not is_local(connection("testclient"))


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_signed_deliveries_are_limited_like_any_other(tmp_path: Path, redis_url: str) -> None:
    """The webhook counts its request in the claim's Redis script (no round trip of its own), with the
    same contract as the limiter: each answer carries the count, and once over the limit every delivery
    is a 429 with ``Retry-After`` before anything is handled, a new booking, a duplicate, an unsigned or
    unknown one alike; counted as ``intake_rate_limited``, not as a delivery outcome."""
    bodies = []
    for n in range(4):
        data = upcoming("booking_created")
        data["payload"]["uid"] = f"limited-{n}"
        bodies.append(encode(data))
    unknown = encode({**upcoming("booking_created"), "triggerEvent": "FORM_SUBMITTED"})
    async with open_live_app(tmp_path, redis_url, rate_limit_webhook_per_client=4) as (services, http):
        accepted = [await post_webhook(http, body) for body in bodies[:3]]
        assert [r.json() for r in accepted] == [{"status": "created"}] * 3
        assert [r.headers["ratelimit-remaining"] for r in accepted] == ["3", "2", "1"]
        assert all(r.headers["ratelimit-limit"] == "4" for r in accepted)
        assert (await post_webhook(http, unknown)).json() == {"status": "ignored"}
        limited = _sample("intake_rate_limited_total", limit="webhook_per_client")
        outcomes = _sample("intake_webhooks_total", outcome="429")
        refused = [
            await post_webhook(http, bodies[3]),
            await post_webhook(http, bodies[0]),
            await post_webhook(http, bodies[1], signature="sha256=0"),
            await post_webhook(http, b"not json"),
            await post_webhook(http, unknown),
        ]
        for response in refused:
            assert_limited(response, 4)
            assert response.headers["ratelimit-remaining"] == "0"
        assert await services.intakes.token_for_booking("limited-3") is None, "refused before handling"
        assert await services.intakes.token_for_booking("limited-0") is not None
    assert _sample("intake_rate_limited_total", limit="webhook_per_client") - limited == len(refused)
    assert _sample("intake_webhooks_total", outcome="429") == outcomes


async def test_the_server_passes_the_connections_own_address(unused_tcp_port: int) -> None:
    """uvicorn, left to its defaults, believes X-Forwarded-For on a loopback connection (the tunnel's) and
    rewrites the client address with it, so a student behind the tunnel could choose the address their
    rate limits count against. Served with the gateway's options, the app sees the loopback peer and the
    header stays a header (``peers`` believes only the tunnel's own)."""
    import asyncio

    import uvicorn

    from services.gateway.app import SERVER_OPTIONS

    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append(scope["client"][0])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=unused_tcp_port, **SERVER_OPTIONS))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient() as http:
            await http.get(
                f"http://127.0.0.1:{unused_tcp_port}/", headers={"X-Forwarded-For": "198.51.100.7"}
            )
    finally:
        server.should_exit = True
        await serving
    assert seen == ["127.0.0.1"]
