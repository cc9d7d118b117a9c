"""A signed-webhook fuzzer: Cal.com's own sample deliveries, mutated by hypothesis (values replaced by any
JSON, keys dropped or added, triggers and event types swapped, bookings sharing uids so creations,
reschedules and cancellations of the same booking meet, bytes cut or appended), correctly signed, posted
to the running gateway. Every answer must be one the contract documents for the webhook (200, 400, 409,
413, 422, 429), never a 5xx.

The default run posts a few hundred; ``make fuzz`` posts ``FUZZ_WEBHOOKS`` (default 10,000).
"""

from __future__ import annotations

import copy
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from services.gateway.webhooks.signature import SIGNATURE_HEADER, sign  # noqa: E402
from tests.fixtures.stack import WEBHOOK_SECRET  # noqa: E402
from tests.fuzz.conftest import FuzzGateway  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "calcom"
DOCUMENTED = {200, 400, 409, 413, 422, 429}
TRIGGERS = [
    "BOOKING_CREATED",
    "BOOKING_RESCHEDULED",
    "BOOKING_CANCELLED",
    "MEETING_ENDED",
    "BOOKING_NO_SHOW_UPDATED",
    "BOOKING_REQUESTED",
    "",
]
UIDS = ["fuzz-a", "fuzz-b", "fuzz-c"]  # few, so deliveries about the same booking meet

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(
        ["", "2026-13-45T99:99:99Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "x" * 5000]
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=10,
)


def _samples() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(SAMPLES.glob("*.json"))]


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in the document a value lives (dict keys and list indices), depth first."""
    found = [prefix] if prefix else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found += _paths(value, (*prefix, index))
    return found


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        doc = doc[step]
    return doc


@st.composite
def deliveries(draw: st.DrawFn) -> bytes:
    """One mutated Cal.com delivery, as the bytes that get signed."""
    doc = copy.deepcopy(draw(st.sampled_from(_samples())))
    payload = doc.get("payload")
    if isinstance(payload, dict) and draw(st.integers(0, 3)):
        for key in ("uid", "bookingUid", "rescheduleUid"):
            if key in payload:
                payload[key] = draw(st.sampled_from(UIDS) | st.integers(0, 10**9).map("fuzz-{}".format))
        if draw(st.integers(0, 3)):  # mostly the test course's event type, so bookings reach a course
            payload["eventTypeId"] = draw(st.sampled_from([9110] * 4 + [3101, None, -1, 2**63, "9110"]))
    if draw(
        st.booleans()
    ):  # a new delivery, not a repeat of the sample's (createdAt is part of its identity)
        day, second, micro = draw(st.integers(1, 28)), draw(st.integers(0, 59)), draw(st.integers(0, 999999))
        doc["createdAt"] = f"2026-11-{day:02d}T10:00:{second:02d}.{micro:06d}Z"
    if draw(st.integers(0, 4)) == 0:
        doc["triggerEvent"] = draw(st.sampled_from(TRIGGERS) | st.text(max_size=20))
    for _ in range(draw(st.integers(0, 4))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _parent(doc, path)
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "drop":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(json_values)
    body = json.dumps(doc).encode()
    cut = draw(st.sampled_from(["none"] * 8 + ["truncate", "append"]))
    if cut == "truncate":
        body = body[: draw(st.integers(0, len(body)))]
    elif cut == "append":
        body += draw(st.binary(max_size=20))
    return body


def fuzz_webhooks(gateway: FuzzGateway, count: int) -> Counter[str]:
    """Post ``count`` signed mutated deliveries; every (status, ack) seen. Fails on an undocumented one."""
    seen: Counter[str] = Counter()
    with httpx.Client(base_url=gateway.url, timeout=30) as client:

        @settings(max_examples=count, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(body=deliveries())
        def post(body: bytes) -> None:
            headers = {"content-type": "application/json", SIGNATURE_HEADER: sign(body, WEBHOOK_SECRET)}
            response = client.post("/webhooks/calcom", content=body, headers=headers)
            ack = response.json().get("status") if response.status_code == 200 else ""
            seen[f"{response.status_code} {ack}".strip()] += 1
            assert response.status_code in DOCUMENTED, (response.status_code, response.text[:300], body[:300])

        post()
    print(dict(sorted(seen.items())))
    return seen


def test_mutated_signed_webhooks(fuzz_gateway: FuzzGateway) -> None:
    """A few hundred mutated deliveries: only documented answers; and the fuzzing reached the handlers
    (some created an intake or acted on one, some were refused as malformed)."""
    seen = fuzz_webhooks(fuzz_gateway, 300)
    assert any(key.startswith("200 ") for key in seen)
    assert seen["422"] + seen["400"] > 0


@pytest.mark.fuzz
def test_ten_thousand_mutated_signed_webhooks(fuzz_gateway: FuzzGateway) -> None:
    """``FUZZ_WEBHOOKS`` (10,000) mutated deliveries, 0 server errors (``make fuzz``)."""
    count = int(os.environ.get("FUZZ_WEBHOOKS", "10000"))
    seen = fuzz_webhooks(fuzz_gateway, count)
    assert sum(seen.values()) >= count
