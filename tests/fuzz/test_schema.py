"""Schemathesis against the gateway's published OpenAPI schema (``/schema``): every operation, generated
requests (valid and invalid), and every answer must be a status the schema documents for that operation,
never a 5xx. Path tokens are often a real intake's, so the chat handlers behind the lookup are fuzzed too.

The short run (a few examples per operation) is part of the default test run; ``make fuzz`` runs the
marked one with many more (``FUZZ_SCHEMA_EXAMPLES``, default 100 per operation).
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest
import requests

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402  (after the skip: a dev dependency)
from hypothesis import strategies as st  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import status_code_conformance  # noqa: E402

from tests.fuzz.conftest import STAFF_PASSWORD, FuzzGateway  # noqa: E402


def fuzz_schema(gateway: FuzzGateway, examples: int) -> tuple[Counter[str], list[str]]:
    """Every operation of the published schema, ``examples`` generated requests each; the statuses seen
    (``METHOD path status``) and every failed check (with the request that failed it)."""
    tokens = [gateway.new_intake(n) for n in range(3)]
    staff = _staff_session(gateway)
    schema = schemathesis.openapi.from_url(f"{gateway.url}/schema")
    seen: Counter[str] = Counter()
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/events"):
            continue  # live event streams stay open by design (tests/gateway/staff/test_live_events.py)

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(), real=st.booleans(), pick=st.sampled_from(tokens))
        def call(case: Any, real: bool, pick: str) -> None:
            if real and case.path_parameters and "token" in case.path_parameters:
                case.path_parameters["token"] = pick
            logged_in = real and case.path.startswith("/staff/") and case.path != "/staff/logout"
            as_staff = {"session": staff} if logged_in else {}
            try:
                response = case.call_and_validate(
                    checks=[_no_server_error, status_code_conformance], timeout=60, **as_staff
                )
                seen[f"{case.method.upper()} {case.path} {response.status_code}"] += 1
            except (AssertionError, BaseExceptionGroup) as exc:  # schemathesis' failures: report them all
                failures.append(f"{case.method.upper()} {case.path}: {_summary(exc)}")

        call()
    return seen, failures


def _staff_session(gateway: FuzzGateway) -> requests.Session:
    """A logged-in staff member, so half the staff requests get past the login (never used to log out)."""
    session = requests.Session()
    session.get(f"{gateway.url}/staff/login", timeout=30)  # sets the CSRF cookie, sent back as the pages do
    token = session.cookies.get("staff_csrf") or ""
    session.headers["X-CSRFToken"] = token
    form = {"password": STAFF_PASSWORD, "_csrf_token": token}
    response = session.post(f"{gateway.url}/staff/login", data=form, allow_redirects=False, timeout=30)
    assert response.status_code == 303, response.text
    return session


def _no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 5xx, except ``/readyz``'s documented 503 (this gateway has no model or Chroma behind it)."""
    if case.path == "/readyz" and response.status_code == 503:
        return None
    return not_a_server_error(ctx, response, case)


def _summary(exc: BaseException) -> str:
    """The failure's names and the first lines of the response, without the reproduction noise."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " | ".join(lines[:8])[:700]


def _check(gateway: FuzzGateway, examples: int) -> Counter[str]:
    seen, failures = fuzz_schema(gateway, examples)
    print("\n".join(f"{n:5d} {key}" for key, n in sorted(seen.items())))
    assert not failures, "\n\n".join(failures[:20])
    return seen


def test_every_operation_answers_only_documented_statuses(fuzz_gateway: FuzzGateway) -> None:
    """A few generated requests per operation: no 5xx, only documented statuses; and the fuzzing reached
    real intakes (some chat request answered 200) and got refusals (some 4xx)."""
    seen = _check(fuzz_gateway, examples=6)
    statuses = Counter(key.rsplit(" ", 1)[1] for key in seen.elements())
    assert statuses["200"] and sum(n for s, n in statuses.items() if s.startswith("4"))
    assert any(key.startswith("GET /api/intakes/{token} 200") for key in seen)


@pytest.mark.fuzz
def test_every_operation_at_length(fuzz_gateway: FuzzGateway) -> None:
    """The same, ``FUZZ_SCHEMA_EXAMPLES`` requests per operation (``make fuzz``)."""
    _check(fuzz_gateway, examples=int(os.environ.get("FUZZ_SCHEMA_EXAMPLES", "100")))
