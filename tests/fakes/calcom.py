"""A fake Cal.com API v1 (the only fake in the test suite): a real HTTP server on a free loopback port.

It speaks what the gateway uses, as Cal.com v1 does: ``GET /v1/bookings/{id}`` and ``PATCH
/v1/bookings/{id}`` with the key in the ``apiKey`` query parameter (401 without it or with a wrong one),
answers ``{"booking": {...}}``, and a PATCH accepts only the fields Cal.com accepts (title, description,
startTime, endTime, status; anything else is a 400). ``fail(...)`` makes the next N requests, or every
request for a while, answer 500 or hang past the client's timeout, to test retries.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

PATCHABLE = frozenset({"title", "description", "startTime", "endTime", "status"})
FailMode = Literal["500", "hang"]


@dataclass
class Request:
    method: str
    booking_id: int
    body: dict[str, Any] | None
    status: int


@dataclass
class FakeCalcom:
    api_key: str = "cal_test_key"
    bookings: dict[int, dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    hang_s: float = 5.0
    _fail_count: int = 0
    _fail_until: float = 0.0
    _fail_mode: FailMode = "500"
    _lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def add_booking(self, booking_id: int, description: str | None = None, **fields: Any) -> None:
        self.bookings[booking_id] = {
            "id": booking_id,
            "description": description,
            "status": "ACCEPTED",
            **fields,
        }

    def description(self, booking_id: int) -> str | None:
        return self.bookings[booking_id].get("description")

    def fail(self, *, times: int = 0, for_s: float = 0.0, mode: FailMode = "500") -> None:
        """Fail the next ``times`` requests and/or every request for ``for_s`` seconds."""
        with self._lock:
            self._fail_count, self._fail_mode = times, mode
            self._fail_until = time.monotonic() + for_s if for_s else 0.0

    def recover(self) -> None:
        self.fail(times=0, for_s=0.0)

    def _should_fail(self) -> FailMode | None:
        with self._lock:
            if self._fail_count > 0:
                self._fail_count -= 1
                return self._fail_mode
            if time.monotonic() < self._fail_until:
                return self._fail_mode
            return None

    def patches(self, booking_id: int) -> list[Request]:
        return [
            r for r in self.requests if r.method == "PATCH" and r.booking_id == booking_id and r.status == 200
        ]


def _handler(fake: FakeCalcom) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            self._handle("GET")

        def do_PATCH(self) -> None:
            self._handle("PATCH")

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            segments = parts.path.strip("/").split("/")
            if len(segments) != 3 or segments[:2] != ["v1", "bookings"] or not segments[2].isdigit():
                return self._reply(404, {"message": "Not found"}, method, 0, None)
            booking_id = int(segments[2])
            body = json.loads(raw) if raw else None
            mode = fake._should_fail()
            if mode == "hang":
                time.sleep(fake.hang_s)
                return self._reply(504, {"message": "hung"}, method, booking_id, body)
            if mode == "500":
                return self._reply(500, {"message": "Internal Server Error"}, method, booking_id, body)
            if parse_qs(parts.query).get("apiKey") != [fake.api_key]:
                return self._reply(401, {"message": "Your API key is not valid."}, method, booking_id, body)
            booking = fake.bookings.get(booking_id)
            if booking is None:
                return self._reply(404, {"message": "Booking not found"}, method, booking_id, body)
            if method == "PATCH":
                if not isinstance(body, dict) or set(body) - PATCHABLE:
                    unknown = sorted(set(body or {}) - PATCHABLE) if isinstance(body, dict) else ["<body>"]
                    return self._reply(
                        400, {"message": f"Unrecognized key(s): {unknown}"}, method, booking_id, body
                    )
                booking.update(body)
            return self._reply(200, {"booking": booking}, method, booking_id, body)

        def _reply(self, status: int, payload: Any, method: str, booking_id: int, body: Any) -> None:
            fake.requests.append(Request(method, booking_id, body, status))
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): fine
                pass

    return Handler


@contextmanager
def running_fake_calcom(api_key: str = "cal_test_key") -> Iterator[FakeCalcom]:
    fake = FakeCalcom(api_key=api_key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fake-calcom", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
