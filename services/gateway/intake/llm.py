"""``ChatModel`` over any OpenAI-compatible server (mlx_lm.server by default), through ``AsyncOpenAI``.

Every call carries ``X-Request-ID``: the id of the request (or job) it serves, taken from the log context,
so the inference server's log lines join the gateway's.

Streams with ``stream_options.include_usage`` so the last usage (prompt tokens, and cached tokens
when the server reports ``prompt_tokens_details.cached_tokens``) is kept for benchmarks: the share of
cached prompt tokens shows whether the append-only prompts really hit the server's prompt cache.

With a ``CircuitBreaker`` every call asks it first (an open breaker raises ``ModelUnavailable`` before
any network call) and reports how the call went: timeouts, connection errors and 5xx answers are
failures; a 4xx answer still proves the server alive. Each call is measured into the Prometheus metrics
(first token, whole call, tokens and cached share when the server reports usage).

The interviewer stops showing a reply at its first '?' but keeps reading the stream in a background task
until the server ends it (at most a few seconds): mlx_lm.server keeps a conversation in its prompt cache
only when its generation ends by itself. So a call's ``Usage`` (and whatever wraps this adapter and reads
it, e.g. the model-call log) is complete when the stream is exhausted or closed, not when the student saw
the question: ``completion_tokens`` and ``total_s`` include that tail, ``first_token_s`` does not change.
The ``ChatModel`` port itself is unchanged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import msgspec
import openai
from openai import AsyncOpenAI

from services.gateway import metrics
from services.gateway.breaker import CircuitBreaker
from services.gateway.logs import current_request_id
from services.gateway.ports import PromptMessage


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """Token counts and timing of the last call."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int | None = None  # None: the server did not say
    first_token_s: float | None = None
    total_s: float = 0.0


class OpenAIChatModel:
    """One adapter class for the ``ChatModel`` port; temperature low, a timeout, no SDK retries.

    Built once per process; ``request_id`` pins one id for every call (else the current request's).
    """

    def __init__(
        self,
        client: AsyncOpenAI,
        model_name: str,
        request_id: str | None = None,
        *,
        temperature: float = 0.3,
        timeout_s: float = 60.0,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.client = client
        self.breaker = breaker
        self.model_name = model_name
        self.request_id = request_id
        self.temperature = temperature
        self.timeout_s = timeout_s
        self.last_usage: Usage | None = None

    def _kwargs(
        self,
        messages: Sequence[PromptMessage],
        max_tokens: int,
        stop: Sequence[str],
        temperature: float | None,
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.model_name,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": max_tokens,
            "temperature": self.temperature if temperature is None else temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
            "timeout": self.timeout_s,
        }
        if stop:
            kwargs["stop"] = list(stop)
        request_id = self.request_id or current_request_id()
        if request_id:
            kwargs["extra_headers"] = {"X-Request-ID": request_id}
        return kwargs

    async def stream(
        self,
        messages: Sequence[PromptMessage],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        temperature: float | None = None,
    ) -> AsyncIterator[str]:
        """Text pieces as the server produces them; closing the iterator early closes the HTTP stream."""
        if self.breaker is not None:
            self.breaker.check()
        started = time.perf_counter()
        first: float | None = None
        usage: Any = None
        completion = 0
        outcome: _Outcome | None = None
        response: Any = None
        try:
            response = await self.client.chat.completions.create(
                **self._kwargs(messages, max_tokens, stop, temperature)
            )
            async for chunk in response:
                if getattr(chunk, "usage", None):
                    usage = chunk.usage
                for choice in chunk.choices or []:
                    piece = choice.delta.content if choice.delta else None
                    if piece:
                        completion += 1
                        if first is None:
                            first = time.perf_counter() - started
                        yield piece
            outcome = "ok"
        except GeneratorExit:  # the caller had what it needed (or gave up before the first piece)
            outcome = "ok" if first is not None else None
            raise
        except BaseException as exc:
            outcome = _outcome_of(exc)
            raise
        finally:
            if response is not None:
                await response.close()
            self.last_usage = _usage(usage, completion, first, time.perf_counter() - started)
            self._report(outcome, self.last_usage)

    def _report(self, outcome: _Outcome | None, usage: Usage) -> None:
        """Tell the breaker and the metrics how the call went."""
        if self.breaker is not None:
            if outcome in ("timeout", "error"):
                self.breaker.failed()
            elif outcome is None:
                self.breaker.abandoned()
            else:
                self.breaker.succeeded()
        metrics.MODEL_CALLS.labels(outcome=_METRIC_OUTCOME[outcome]).inc()
        metrics.MODEL_CALL_SECONDS.observe(usage.total_s)
        if usage.first_token_s is not None:
            metrics.MODEL_FIRST_TOKEN.observe(usage.first_token_s)
        if usage.prompt_tokens:
            metrics.MODEL_TOKENS.labels(kind="prompt").inc(usage.prompt_tokens)
        metrics.MODEL_TOKENS.labels(kind="completion").inc(usage.completion_tokens)
        if usage.cached_tokens is not None and usage.prompt_tokens:
            metrics.MODEL_TOKENS.labels(kind="cached_prompt").inc(usage.cached_tokens)
            metrics.MODEL_CACHED_SHARE.observe(min(1.0, usage.cached_tokens / usage.prompt_tokens))

    async def complete(
        self,
        messages: Sequence[PromptMessage],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        temperature: float | None = None,
    ) -> str:
        """The whole reply (still streamed underneath, so usage and timings are recorded the same way)."""
        pieces = [
            p async for p in self.stream(messages, max_tokens=max_tokens, stop=stop, temperature=temperature)
        ]
        return "".join(pieces)


# how a call ended: "alive" is an answer the server refused (4xx): not the server's failure
_Outcome = Literal["ok", "alive", "timeout", "error"]
_METRIC_OUTCOME: dict[_Outcome | None, str] = {
    "ok": "ok",
    "alive": "error",
    "timeout": "timeout",
    "error": "error",
    None: "abandoned",
}


def _outcome_of(exc: BaseException) -> _Outcome:
    if isinstance(exc, TimeoutError | asyncio.CancelledError | openai.APITimeoutError):
        return "timeout"  # a caller's deadline cancels the call: the server did not answer in time
    if isinstance(exc, openai.APIStatusError) and exc.status_code < 500:
        return "alive"
    return "error"


def _usage(usage: Any, pieces: int, first: float | None, total: float) -> Usage:
    if usage is None:
        return Usage(completion_tokens=pieces, first_token_s=first, total_s=total)
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    return Usage(
        prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
        completion_tokens=getattr(usage, "completion_tokens", pieces) or pieces,
        cached_tokens=cached,
        first_token_s=first,
        total_s=total,
    )
