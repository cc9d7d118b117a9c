"""Cal.com API v1 client: read a booking's description and write it back with our summary block.

API v2 has no way to update notes, so this uses v1 (``?apiKey=``). Every call has a timeout; errors say
whether retrying can help (5xx, 429, timeouts) or not (401 bad key, 404 booking gone, other 4xx).
"""

from __future__ import annotations

import httpx
import msgspec

from services.gateway.delivery.render import merge_description
from services.gateway.intake.models import Summary


class CalcomError(Exception):
    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class CalBooking(msgspec.Struct, frozen=True):
    id: int
    description: str | None = None


class _BookingEnvelope(msgspec.Struct, frozen=True):
    booking: CalBooking


class CalcomClient:
    def __init__(self, http: httpx.AsyncClient, base_url: str, api_key: str, timeout_s: float) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._key = api_key
        self._timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0))

    async def get_booking(self, booking_id: int) -> CalBooking:
        response = await self._call("GET", booking_id)
        try:
            return msgspec.json.decode(response.content, type=_BookingEnvelope).booking
        except msgspec.DecodeError as exc:
            raise CalcomError(f"unexpected booking body: {exc}", retryable=True) from None

    async def set_description(self, booking_id: int, description: str) -> None:
        await self._call("PATCH", booking_id, {"description": description})

    async def write_summary(self, booking_id: int, summary: Summary) -> None:
        """Read the current description, replace (or append) our block, write it back."""
        booking = await self.get_booking(booking_id)
        await self.set_description(booking_id, merge_description(booking.description, summary))

    async def _call(self, method: str, booking_id: int, body: dict[str, str] | None = None) -> httpx.Response:
        url = f"{self._base}/v1/bookings/{booking_id}"
        try:
            response = await self._http.request(
                method, url, params={"apiKey": self._key}, json=body, timeout=self._timeout
            )
        except httpx.TimeoutException:
            raise CalcomError(f"{method} booking timed out", retryable=True) from None
        except httpx.HTTPError as exc:
            raise CalcomError(f"{method} booking failed: {type(exc).__name__}", retryable=True) from None
        if response.status_code >= 400:
            retryable = response.status_code >= 500 or response.status_code in (408, 429)
            raise CalcomError(f"{method} booking answered {response.status_code}", retryable=retryable)
        return response
