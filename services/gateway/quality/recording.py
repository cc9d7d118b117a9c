"""``RecordingChatModel``: the ``ChatModel`` port around another ``ChatModel``, logging every call.

It adds nothing to the wire and changes nothing in the streaming: pieces pass straight through. When a
call ends (finished, closed early, failed) it reads the wrapped model's ``last_usage`` (``intake/llm.py``:
tokens and the server's timings), falling back to its own clock for a model that keeps none (the scripted
one in tests), and hands a ``CallRecord`` to the ``CallLog`` in the background.

Reading ``last_usage`` is safe although one ``OpenAIChatModel`` serves every student: it is set in the
wrapped stream's last step, and this wrapper reads it in the same step of the same task, with no await in
between for another call to overwrite it. A ``last_usage`` that did not change (the breaker refused the
call before it started) is not this call's.

The purpose comes from ``services.gateway.purpose`` (read when the call starts); the intake from
``for_intake`` (``Services.model_for`` hands each intake its own view); the request id from the log
context, as ``llm.py`` sends it to the server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

import openai

from services.gateway.errors import ModelUnavailable
from services.gateway.logs import current_request_id
from services.gateway.ports import ChatModel, PromptMessage
from services.gateway.purpose import Purpose, current_purpose
from services.gateway.quality.calls import (
    PROBE_PROMPT_VERSION,
    PROMPT_VERSION,
    CallLog,
    CallRecord,
    CallStatus,
    iso,
    new_call_id,
    now_utc,
)


class RecordingChatModel:
    """A ``ChatModel`` that logs each call of ``inner`` as model ``model_id`` (for intake ``intake`` of the
    course ``course``)."""

    def __init__(
        self, inner: ChatModel, calls: CallLog, model_id: str, intake: str = "", course: str = ""
    ) -> None:
        self.inner = inner
        self.calls = calls
        self.model_id = model_id
        self.intake = intake
        self.course = course

    def for_intake(self, token: str, course: str = "") -> RecordingChatModel:
        """The same model, its calls recorded against the intake ``token`` of the course ``course``."""
        return RecordingChatModel(self.inner, self.calls, self.model_id, token, course)

    def __getattr__(self, name: str) -> Any:  # the wrapped adapter's own attributes (breaker, name)
        return getattr(self.inner, name)

    def stream(
        self, messages: Sequence[PromptMessage], *, max_tokens: int, stop: Sequence[str] = (), **kw: Any
    ) -> AsyncIterator[str]:
        """The wrapped stream; the purpose is read now, when the caller asks, not at the first piece."""
        inner = self.inner.stream(messages, max_tokens=max_tokens, stop=stop, **kw)
        return self._recorded(inner, current_purpose(), current_request_id() or "")

    async def _recorded(
        self, inner: AsyncIterator[str], purpose: Purpose, request_id: str
    ) -> AsyncIterator[str]:
        before = getattr(self.inner, "last_usage", None)
        started = time.perf_counter()
        first: float | None = None
        pieces = 0
        status: CallStatus | None = None
        try:
            async for piece in inner:
                if first is None:
                    first = time.perf_counter() - started
                pieces += 1
                yield piece
            status = "ok"
        except GeneratorExit:  # the caller had what it needed
            status = "ok" if first is not None else "abandoned"
            raise
        except BaseException as exc:
            status = status_of(exc)
            raise
        finally:
            if isinstance(inner, AsyncGenerator):
                await inner.aclose()
            self._log(purpose, request_id, status or "abandoned", before, first, pieces, started)

    async def complete(
        self, messages: Sequence[PromptMessage], *, max_tokens: int, stop: Sequence[str] = (), **kw: Any
    ) -> str:
        purpose, request_id = current_purpose(), current_request_id() or ""
        before = getattr(self.inner, "last_usage", None)
        started = time.perf_counter()
        status: CallStatus = "error"
        text = ""
        try:
            text = await self.inner.complete(messages, max_tokens=max_tokens, stop=stop, **kw)
            status = "ok"
            return text
        except BaseException as exc:
            status = status_of(exc)
            raise
        finally:
            elapsed = time.perf_counter() - started
            self._log(
                purpose, request_id, status, before, elapsed if text else None, len(text.split()), started
            )

    def _log(
        self,
        purpose: Purpose,
        request_id: str,
        status: CallStatus,
        before: Any,
        first: float | None,
        pieces: int,
        started: float,
    ) -> None:
        usage = getattr(self.inner, "last_usage", None)
        if usage is before:
            usage = None  # the wrapped model kept no usage for this call (or keeps none at all)
        total = time.perf_counter() - started
        self.calls.spawn(
            CallRecord(
                id=new_call_id(),
                request_id=request_id,
                intake=self.intake,
                course=self.course,
                purpose=purpose,
                model=self.model_id,
                prompt_version=PROMPT_VERSION,
                prompt_tokens=(usage.prompt_tokens or None) if usage else None,
                completion_tokens=usage.completion_tokens if usage else pieces,
                cached_tokens=usage.cached_tokens if usage else None,
                first_token_s=_round(usage.first_token_s if usage else first),
                total_s=_round(usage.total_s if usage else total) or 0.0,
                status=status,
                created_at=iso(now_utc()),
            )
        )


def status_of(exc: BaseException) -> CallStatus:
    """How a failed call is counted: refused by the open breaker, out of time, or an error."""
    if isinstance(exc, ModelUnavailable):
        return "rejected"
    if isinstance(exc, TimeoutError | asyncio.CancelledError | openai.APITimeoutError):
        return "timeout"
    return "error"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def record_probe(calls: CallLog, model_id: str, ok: bool, latency_s: float) -> None:
    """``/readyz``'s generation probe (its own client, outside the breaker), logged like any call; the
    probe keeps no usage, so its tokens are not known."""
    calls.spawn(
        CallRecord(
            id=new_call_id(),
            request_id=current_request_id() or "",
            intake="",
            purpose="readiness_probe",
            model=model_id,
            prompt_version=PROBE_PROMPT_VERSION,
            total_s=round(latency_s, 4),
            status="ok" if ok else "error",
            created_at=iso(now_utc()),
        )
    )
