"""``POST /webhooks/calcom``: the Cal.com webhook receiver.

Order matters: the body is read in a bounded way (413 past ``max_webhook_bytes``), then the signature is
checked over the exact raw bytes (401), and only then parsed (400 not JSON / 422 not a Cal.com webhook).
Unknown triggers and event types of no known course are acknowledged (2xx) and logged, so Cal.com does
not disable the subscription; a copy of a delivery that is being handled right now is 409 (send it
again); a client over the webhook rate limit gets 429 (counted as ``intake_rate_limited``, as every
limiter's refusal: the request is counted in the claim's Redis script, or, on a path that fails or
returns before it, by itself first, so such a client gets the 429 whatever it sent). Every other outcome is
counted (``intake_webhooks``).
Only the handling in ``handling.py`` touches Redis.
"""

from __future__ import annotations

from typing import cast

import msgspec
from litestar import Request, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.response.base import ASGIResponse
from litestar.types import ControllerRouterHandler, Message, Receive, Scope, Send

from services.gateway.container import Services
from services.gateway.errors import (
    BadRequest,
    Conflict,
    IntakeError,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
    problems,
)
from services.gateway.metrics import WEBHOOKS
from services.gateway.ratelimit import COUNTED_BY_HANDLER, LIMIT, deferred_count
from services.gateway.webhooks.handling import Ack, AckStatus, decode_envelope, handle_webhook
from services.gateway.webhooks.signature import SIGNATURE_HEADER, verify_signature


class Acknowledged(ASGIResponse):
    """The 2xx answer for one ``Ack`` status, encoded once at import: the same bytes and headers as
    Litestar's own response for the ``Ack`` (``content-type``, ``content-length``; the middlewares add
    theirs), without building a ``Response`` and its headers for every delivery. Litestar sends what a
    handler annotated with an ``ASGIResponse`` returns as it is."""

    def __init__(self, status: AckStatus) -> None:  # (none of ASGIResponse's own set-up: sent as it is)
        self.ack = Ack(status)
        self.body = msgspec.json.encode(self.ack)
        self.headers_raw = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(self.body)),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # fresh messages every time: the middlewares' send wrappers add headers to them
        start = {"type": "http.response.start", "status": 200, "headers": list(self.headers_raw)}
        await send(cast(Message, start))
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


ACKNOWLEDGED = {status: Acknowledged(status) for status in AckStatus.__args__}  # type: ignore[attr-defined]


@post(
    "/webhooks/calcom",
    status_code=200,
    opt={LIMIT: "webhook", COUNTED_BY_HANDLER: True},
    responses={
        200: ResponseSpec(data_container=Ack, description="Request fulfilled, document follows"),
        **problems(BadRequest, Unauthorized, Conflict, PayloadTooLarge, Unprocessable, TooManyRequests),
    },
)
async def calcom_webhook(request: Request) -> Acknowledged:
    # the app's Services straight from its state (what the ``services`` dependency provides), and the
    # answer pre-encoded: no dependency to resolve, no response to build (~10% of a delivery's CPU)
    services = cast(Services, request.app.state.services)
    limit = deferred_count(request)
    try:
        body = await read_bounded(request, services.settings.max_webhook_bytes)
        verify_signature(services.settings, body, request.headers.get(SIGNATURE_HEADER))
        ack = await handle_webhook(services, decode_envelope(body), body, limit)
    except TooManyRequests:
        raise
    except IntakeError as exc:
        if limit is not None:
            await limit.check()  # not counted yet (failed before the claim): over the limit, a 429 instead
        WEBHOOKS.labels(outcome=str(exc.status_code)).inc()
        raise
    WEBHOOKS.labels(outcome=ack.status).inc()
    return ACKNOWLEDGED[ack.status]


async def read_bounded(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than ``limit`` bytes without buffering them (Content-Length or not)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("Content-Length is not a number.")
        if int(declared) > limit:
            raise PayloadTooLarge(f"The webhook body is over {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The webhook body is over {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


ROUTES: list[ControllerRouterHandler] = [calcom_webhook]
