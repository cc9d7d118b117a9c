"""The model's circuit breaker: it opens after consecutive failures, refuses calls at once while open, lets
one trial through after the cool-down, and the chat goes on with the policy's questions meanwhile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.gateway import metrics
from services.gateway.breaker import CircuitBreaker
from services.gateway.container import open_openai
from services.gateway.errors import ModelUnavailable
from services.gateway.intake.llm import OpenAIChatModel
from services.gateway.ports import PromptMessage
from tests.gateway.live import HungServer, client, running_app, services_of
from tests.gateway.staff.harness import make_settings, parse_sse, seed_intake, services_factory

PROMPT = [PromptMessage("user", "hello")]


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def opened(failures: int = 3, cooldown_s: float = 30.0) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    breaker = CircuitBreaker(failures, cooldown_s, clock)
    for _ in range(failures):
        breaker.check()
        breaker.failed()
    return breaker, clock


def test_opens_after_consecutive_failures_and_refuses_at_once() -> None:
    """Three failures in a row open it; the next call is refused with a typed 503 carrying Retry-After."""
    breaker, _ = opened(failures=3, cooldown_s=30)
    assert breaker.state == "open"
    with pytest.raises(ModelUnavailable) as refused:
        breaker.check()
    assert refused.value.status_code == 503 and refused.value.headers["Retry-After"] == "30"


def test_a_success_resets_the_count() -> None:
    """Failures must be consecutive: one success in between keeps it closed."""
    breaker = CircuitBreaker(3, 30, Clock())
    for outcome in ("failed", "failed", "succeeded", "failed", "failed"):
        breaker.check()
        getattr(breaker, outcome)()
    assert breaker.state == "closed" and breaker.consecutive == 2


def test_after_the_cool_down_one_trial_goes_out_and_its_success_closes_it() -> None:
    """Half-open: one call is let through, a second at the same time is refused; success closes."""
    breaker, clock = opened(cooldown_s=30)
    clock.now += 29
    with pytest.raises(ModelUnavailable):
        breaker.check()
    clock.now += 1
    breaker.check()  # the trial
    assert breaker.state == "half_open"
    with pytest.raises(ModelUnavailable):
        breaker.check()
    breaker.succeeded()
    assert breaker.state == "closed"
    breaker.check()


def test_a_failed_trial_opens_it_for_another_cool_down() -> None:
    breaker, clock = opened(cooldown_s=30)
    clock.now += 30
    breaker.check()
    breaker.failed()
    assert breaker.state == "open"
    clock.now += 29
    with pytest.raises(ModelUnavailable):
        breaker.check()


def test_an_abandoned_trial_lets_the_next_call_try() -> None:
    """A trial whose caller went away before any answer must not leave the breaker half-open for ever."""
    breaker, clock = opened(cooldown_s=30)
    clock.now += 30
    breaker.check()
    breaker.abandoned()
    breaker.check()
    assert breaker.state == "half_open"


async def test_an_open_breaker_makes_no_network_call(tmp_path: Path, redis_url: str) -> None:
    """Through the real OpenAI adapter against a hung server: two timeouts open the breaker; the third
    call is refused before connecting; after the cool-down the trial connects again and, timing out,
    opens it once more."""
    clock = Clock()
    async with HungServer() as hung:
        settings = make_settings(tmp_path, redis_url, inference_url=hung.url, inference_timeout_s=0.3)
        breaker = CircuitBreaker(2, 30, clock)
        model = OpenAIChatModel(open_openai(settings), "default_model", timeout_s=0.3, breaker=breaker)
        for _ in range(2):
            with pytest.raises(Exception, match=r"timed out|Timeout"):
                await model.complete(PROMPT, max_tokens=2)
        assert breaker.state == "open" and hung.connections == 2
        with pytest.raises(ModelUnavailable):
            await model.complete(PROMPT, max_tokens=2)
        assert hung.connections == 2, "refused without connecting"
        clock.now += 30
        with pytest.raises(Exception, match=r"timed out|Timeout"):
            await model.complete(PROMPT, max_tokens=2)
        assert hung.connections == 3 and breaker.state == "open"
        await model.client.close()


def _value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_with_the_breaker_open_the_chat_goes_on_with_the_policys_questions(
    tmp_path: Path, redis_url: str
) -> None:
    """A hung inference server: once the breaker opened, a student's turn is answered with a question
    and no error, the model is not called (the refusal is counted, the server sees no new connection),
    and the metrics show the breaker open."""
    async with HungServer() as hung:
        settings = make_settings(
            tmp_path,
            redis_url,
            inference_url=hung.url,
            inference_timeout_s=0.3,
            breaker_failures=2,
            breaker_cooldown_s=600,
            max_turns=8,
            min_turns=5,
        )
        record = await seed_intake(redis_url, settings)
        async with running_app(settings, services_factory(None)) as app, client(app) as http:
            breaker = services_of(app).model.breaker  # type: ignore[attr-defined]
            assert (await http.post(f"/api/intakes/{record.token}/consent")).status_code == 200
            answers = iter(["I am stuck on problem set 3, the t-test.", "I tried the notes twice.", "yes"])
            while breaker.state != "open":
                await _turn(http, record.token, next(answers))
            connections, rejected = hung.connections, _value("intake_model_calls_total", outcome="rejected")
            events = await _turn(http, record.token, "I want to understand the p-value before Friday.")
            assert hung.connections == connections, "no call reached the server"
            assert _value("intake_model_calls_total", outcome="rejected") > rejected, "a call was refused"
            scrape = (await http.get("/metrics")).text
    assert [e for e, _ in events if e == "error"] == []
    reply = "".join(d["text"] for e, d in events if e == "token")
    assert reply.rstrip().endswith("?")
    assert "intake_model_breaker_state 2.0" in scrape


async def _turn(http: Any, token: str, text: str) -> list[tuple[str, Any]]:
    response = await http.post(f"/api/intakes/{token}/messages", json={"text": text})
    assert response.status_code == 200, response.text
    return parse_sse(response.text)
