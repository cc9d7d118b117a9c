"""One error hierarchy for the API, rendered as RFC 9457 problem JSON by Litestar's problem-details plugin."""

from __future__ import annotations

from typing import Any

from litestar.plugins.problem_details import ProblemDetailsException

PROBLEM_BASE = "https://office-hours-intake.invalid/problems/"


class IntakeError(ProblemDetailsException):
    """Base of every error the gateway reports on purpose."""

    status: int = 500
    slug: str = "internal"
    title_text: str = "Internal error"

    def __init__(self, detail: str = "", *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(
            detail=detail or self.title_text,
            status_code=self.status,
            type_=PROBLEM_BASE + self.slug,
            title=self.title_text,
            extra=extra,
        )


class BadRequest(IntakeError):
    status, slug, title_text = 400, "bad-request", "Bad request"


class Unauthorized(IntakeError):
    status, slug, title_text = 401, "unauthorized", "Not authenticated"


class Forbidden(IntakeError):
    status, slug, title_text = 403, "forbidden", "Forbidden"


class NotFound(IntakeError):
    status, slug, title_text = 404, "not-found", "Not found"


class Conflict(IntakeError):
    status, slug, title_text = 409, "conflict", "Conflict"


class Gone(IntakeError):
    status, slug, title_text = 410, "gone", "No longer available"


class PayloadTooLarge(IntakeError):
    status, slug, title_text = 413, "payload-too-large", "Payload too large"


class Unprocessable(IntakeError):
    status, slug, title_text = 422, "unprocessable", "Unprocessable content"


class UpstreamError(IntakeError):
    status, slug, title_text = 502, "upstream", "An upstream service failed"


class UpstreamTimeout(IntakeError):
    status, slug, title_text = 504, "upstream-timeout", "An upstream service timed out"
