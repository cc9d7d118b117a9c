"""Cal.com's webhook signature: ``X-Cal-Signature-256`` = hex HMAC-SHA256 of the exact raw body.

Every rejection is a 401 (not 403): the request did not prove who sent it, which is an authentication
failure; 403 would mean "we know who you are and you may not". The literal ``no-secret-provided`` is what
Cal.com sends when the subscriber has no secret, so it proves nothing and is treated like a missing header.
"""

from __future__ import annotations

import hashlib
import hmac

from services.gateway.errors import Unauthorized
from services.settings import Settings

SIGNATURE_HEADER = "x-cal-signature-256"
NO_SECRET = "no-secret-provided"


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(settings: Settings, body: bytes, header: str | None) -> None:
    """Raise ``Unauthorized`` unless the body is signed with our secret (or unsigned is allowed)."""
    secret = settings.calcom_webhook_secret
    supplied = (header or "").strip().lower().removeprefix("sha256=")
    if not supplied or supplied == NO_SECRET:
        if settings.calcom_allow_unsigned:
            return
        raise Unauthorized("The webhook is not signed (X-Cal-Signature-256 missing or 'no-secret-provided').")
    if not secret:
        if settings.calcom_allow_unsigned:
            return
        raise Unauthorized(
            "No webhook secret is configured (INTAKE_CALCOM_WEBHOOK_SECRET), so nothing verifies."
        )
    if not hmac.compare_digest(supplied.encode(), sign(body, secret).encode()):
        raise Unauthorized("The webhook signature does not match the body.")
