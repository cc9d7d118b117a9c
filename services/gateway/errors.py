"""One error hierarchy for the API, rendered as RFC 9457 problem JSON by Litestar's problem-details plugin.

Two families under ``IntakeError``: ``ClientError`` (4xx: the request cannot be served as sent) and
``UpstreamError`` (502, and ``UpstreamTimeout`` 504: Redis, inference, Chroma or Cal.com failed us;
``ModelUnavailable`` 503: the circuit breaker keeps calls away from a failing model).
``NotConfigured`` (503) is the one other case: a feature the operator has switched off. Exceptions of the
client libraries that escape a handler are mapped onto the upstream family in ``PROBLEM_MAP``, so a
dependency outage is a 502/504 problem, never a bare 500.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import openai
import redis.exceptions
import structlog
from litestar.openapi.datastructures import ResponseSpec
from litestar.plugins.problem_details import ProblemDetailsException

PROBLEM_BASE = "https://office-hours-intake.invalid/problems/"
log = structlog.get_logger()


class IntakeError(ProblemDetailsException):
    """Base of every error the gateway reports on purpose."""

    status: int = 500
    slug: str = "internal"
    title_text: str = "Internal error"

    def __init__(
        self,
        detail: str = "",
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            detail=detail or self.title_text,
            status_code=self.status,
            type_=PROBLEM_BASE + self.slug,
            title=self.title_text,
            extra=extra,
            headers=headers,
        )


# --- the client's side (4xx) ------------------------------------------------------------------------


class ClientError(IntakeError):
    status, slug, title_text = 400, "bad-request", "Bad request"


class BadRequest(ClientError):
    status, slug, title_text = 400, "bad-request", "Bad request"


class Unauthorized(ClientError):
    status, slug, title_text = 401, "unauthorized", "Not authenticated"


class Forbidden(ClientError):
    status, slug, title_text = 403, "forbidden", "Forbidden"


class NotFound(ClientError):
    status, slug, title_text = 404, "not-found", "Not found"


class Conflict(ClientError):
    status, slug, title_text = 409, "conflict", "Conflict"


class Gone(ClientError):
    status, slug, title_text = 410, "gone", "No longer available"


class PayloadTooLarge(ClientError):
    status, slug, title_text = 413, "payload-too-large", "Payload too large"


class Unprocessable(ClientError):
    status, slug, title_text = 422, "unprocessable", "Unprocessable content"


class TooManyRequests(ClientError):
    status, slug, title_text = 429, "too-many-requests", "Too many requests"


# --- a dependency's side (502 / 504) ----------------------------------------------------------------


class UpstreamError(IntakeError):
    status, slug, title_text = 502, "upstream", "An upstream service failed"


class UpstreamTimeout(UpstreamError):
    status, slug, title_text = 504, "upstream-timeout", "An upstream service timed out"


class ModelUnavailable(UpstreamError):
    """The circuit breaker is open: the model failed repeatedly, so it is not called for a while. Raised
    before any network call; the interview catches it and asks the policy's own question instead."""

    status, slug, title_text = 503, "model-unavailable", "The model is resting after repeated failures"


# --- switched off by the operator (503) -------------------------------------------------------------


class NotConfigured(IntakeError):
    status, slug, title_text = 503, "not-configured", "This feature is turned off"


class Problem(msgspec.Struct, frozen=True):
    """The RFC 9457 body of every error answer (``application/problem+json``), for the OpenAPI schema."""

    status: int
    title: str
    detail: str
    type: str


def problems(*errors: type[IntakeError]) -> dict[int, ResponseSpec]:
    """The OpenAPI ``responses`` of a route that answers with these errors, so the published schema lists
    every status a client can get (a route's decorator: ``responses=problems(NotFound, Gone)``)."""
    return {
        error.status: ResponseSpec(
            data_container=Problem,
            description=error.title_text,
            media_type="application/problem+json",
            generate_examples=False,
        )
        for error in errors
    }


def _timeout(exc: Exception) -> IntakeError:
    log.warning("upstream_timed_out", error=type(exc).__name__)
    return UpstreamTimeout(f"A service we depend on did not answer in time ({type(exc).__name__}).")


def _failed(exc: Exception) -> IntakeError:
    log.warning("upstream_failed", error=type(exc).__name__)
    return UpstreamError(f"A service we depend on failed ({type(exc).__name__}). Try again in a minute.")


# Litestar picks the first registered class along the exception's MRO, so the timeouts (subclasses of the
# connection errors in openai) win over the general failures.
PROBLEM_MAP: dict[type[Exception], Callable[[Any], IntakeError]] = {
    httpx.TimeoutException: _timeout,
    openai.APITimeoutError: _timeout,
    redis.exceptions.TimeoutError: _timeout,
    httpx.HTTPError: _failed,
    openai.APIError: _failed,
    redis.exceptions.ConnectionError: _failed,
}
