"""``/metrics`` through the real app: this machine only, a student's turn timed as the student saw it,
webhook and job outcomes and queue depth from the real worker, the alert rules' metrics all exposed, and
the OpenAPI schema at ``/schema``."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from services.settings import REPO_ROOT
from tests.gateway.delivery.harness import deliver, encode, open_live_app, post_webhook, upcoming, work_until
from tests.gateway.intake.scripted import ScriptedModel
from tests.gateway.live import ELSEWHERE, client, running_app
from tests.gateway.staff.harness import make_settings, parse_sse, seed_intake, services_factory

ALERTS = REPO_ROOT / "config" / "alerts.yml"


def samples(scrape: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, keyed by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(scrape)
        for s in family.samples
    }


def value(scrape: str, name: str, **labels: str) -> float:
    return samples(scrape).get((name, frozenset(labels.items())), 0.0)


async def scrape(http: httpx.AsyncClient) -> str:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_metrics_answer_this_machine_only(tmp_path: Path, redis_url: str) -> None:
    """Another host and a request through the tunnel get 403; a local Prometheus gets the exposition."""
    settings = make_settings(tmp_path, redis_url)
    app_running = running_app(settings, services_factory(None))
    async with app_running as app, client(app) as local, client(app, ELSEWHERE) as remote:
        assert (await remote.get("/metrics")).status_code == 403
        tunnelled = await local.get("/metrics", headers={"CF-Connecting-IP": "203.0.113.9"})
        assert tunnelled.status_code == 403
        assert "intake_model_breaker_state" in await scrape(local)


async def test_a_turn_is_timed_and_no_token_reaches_a_label(tmp_path: Path, redis_url: str) -> None:
    """One chat turn adds one full-turn and one first-words observation and an ``ok`` turn; the request
    metrics name the route template, never the link's token."""
    settings = make_settings(tmp_path, redis_url)
    record = await seed_intake(redis_url, settings)
    async with running_app(settings, services_factory(ScriptedModel())) as app, client(app) as http:
        before = await scrape(http)
        assert (await http.post(f"/api/intakes/{record.token}/consent")).status_code == 200
        turn = await http.post(f"/api/intakes/{record.token}/messages", json={"text": "I am stuck on PS 3."})
        assert [e for e, _ in parse_sse(turn.text)][-1] == "done"
        after = await scrape(http)
    for name in ("intake_turn_seconds_count", "intake_turn_first_token_seconds_count"):
        assert value(after, name) - value(before, name) == 1, name
    assert (
        value(after, "intake_turns_total", outcome="ok") - value(before, "intake_turns_total", outcome="ok")
        == 1
    )
    template = {"app_name": "gateway", "method": "POST", "path": "/api/intakes/{token}/messages"}
    assert value(after, "intake_http_requests_total", **template, status_code="200") >= 1
    assert record.token not in after


async def test_webhook_and_job_outcomes_and_queue_depth(tmp_path: Path, redis_url: str) -> None:
    """A booking (created) and an unsigned post (401) are counted; its jobs show as queued; once the real
    worker sent the invitation, the delivered job is counted (read from Redis, the worker's process)."""
    async with open_live_app(tmp_path, redis_url) as (services, http):
        before = await scrape(http)
        await deliver(http, upcoming("booking_created"))
        assert (await post_webhook(http, b"{}", signature=None)).status_code == 401
        queued = await scrape(http)
        mail = Path(services.settings.data_dir) / "mail"

        async def invited() -> bool:
            return mail.is_dir() and any(mail.glob("*-invite-*.eml"))

        await work_until(services, invited)
        done = await scrape(http)
    for outcome in ("created", "401"):
        counted = value(queued, "intake_webhooks_total", outcome=outcome)
        assert counted - value(before, "intake_webhooks_total", outcome=outcome) == 1, outcome
    assert value(queued, "intake_queue_jobs", queue="intake", state="queued") >= 1
    assert value(done, "intake_jobs_total", kind="invite_email", outcome="delivered") == 1
    assert value(done, "intake_jobs_dead", queue="intake") == 0
    assert value(done, "intake_queue_redis_up") == 1


async def test_every_metric_the_alert_rules_use_is_exposed(tmp_path: Path, redis_url: str) -> None:
    """A rule over a metric the gateway does not export would never fire: each name must be scraped."""
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    assert {r["alert"] for r in rules} >= {
        "IntakeFirstTokenSlow",
        "IntakeTurnSlow",
        "IntakeErrorRate",
        "IntakeQueueBacklog",
        "IntakeFailedDeliveries",
    }
    used = {_family(name) for rule in rules for name in re.findall(r"\bintake_[a-z_]+", rule["expr"])}
    settings = make_settings(tmp_path, redis_url)
    async with running_app(settings, services_factory(None)) as app, client(app) as http:
        await http.post("/webhooks/calcom", content=b"{}")  # a labelled sample for the webhook counter
        text = await scrape(http)
    exposed = {_family(f.name) for f in text_string_to_metric_families(text)}
    assert used <= exposed, f"alert rules use metrics nobody exports: {used - exposed}"
    assert all(r["labels"]["severity"] and r["annotations"]["summary"] for r in rules)


def _family(name: str) -> str:
    return re.sub(r"_(bucket|count|sum|total)$", "", name)


async def test_the_openapi_schema_is_published(tmp_path: Path, redis_url: str) -> None:
    """``/schema`` is the OpenAPI document (JSON) with the public routes; operator read-outs stay out."""
    settings = make_settings(tmp_path, redis_url)
    async with running_app(settings, services_factory(None)) as app, client(app, ELSEWHERE) as http:
        schema = (await http.get("/schema")).json()
        same = (await http.get("/schema/openapi.json")).json()
    assert schema == same and schema["openapi"].startswith("3.")
    paths = set(schema["paths"])
    assert {"/webhooks/calcom", "/api/intakes/{token}/messages", "/api/intakes/{token}", "/readyz"} <= paths
    assert "/metrics" not in paths


def test_alert_rules_pass_promtool() -> None:
    """The rules and the example configuration load in Prometheus (Debian's ``prometheus`` package)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    for args in (["check", "rules", str(ALERTS)], ["check", "config", str(ALERTS.parent / "prometheus.yml")]):
        result = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


async def test_the_request_metrics_count_time_and_release_every_request(
    tmp_path: Path, redis_url: str
) -> None:
    """The request metrics (Litestar's Prometheus middleware): every webhook post counted and timed once
    under its status, a 5xx counted as an error too, none left in progress."""
    route = {"app_name": "gateway", "method": "POST", "path": "/webhooks/calcom"}
    async with open_live_app(tmp_path, redis_url) as (services, http):
        before = await scrape(http)
        await deliver(http, upcoming("booking_created"))
        assert (await post_webhook(http, b"{}", signature=None)).status_code == 401
        assert (await post_webhook(http, b"{}", signature=None)).status_code == 401
        incomplete = services.jobs.intake.namespace("incomplete")
        await services.redis.set(incomplete, b"not a sorted set")  # the creation step fails: a 500
        broken = upcoming("booking_created")
        broken["payload"]["uid"] = "fails-with-a-500"
        assert (await post_webhook(http, encode(broken))).status_code == 500
        await services.redis.delete(incomplete)
        after = await scrape(http)

    def added(name: str, status: str) -> float:
        return value(after, name, **route, status_code=status) - value(
            before, name, **route, status_code=status
        )

    for status, count in (("200", 1), ("401", 2), ("500", 1)):
        assert added("intake_http_requests_total", status) == count, status
        assert added("intake_http_request_duration_seconds_count", status) == count, status
        assert added("intake_http_request_duration_seconds_sum", status) > 0, status
    assert added("intake_http_requests_error_total", "500") == 1
    assert added("intake_http_requests_error_total", "401") == 0
    assert value(after, "intake_http_requests_in_progress", **route, status_code="200") == 0
