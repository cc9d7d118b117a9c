"""Why a model call is made, said by the caller and read by whoever records the call.

The interviewer and the summary job wrap their calls in ``calling("interview_question")`` and the like;
the model-call log (``quality/recording.py``) reads ``current_purpose()`` when a call starts. A context
variable keeps the ``ChatModel`` port unchanged: callers that say nothing are logged as ``other``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal, get_args

Purpose = Literal[
    "interview_question",  # a question streamed to the student
    "interview_retry",  # the same question asked again after a rejected reply
    "summary_draft",  # the model's draft of the summary's free text
    "summary_retry",  # the fields the draft got wrong, asked once more
    "warm_up",  # the prompt sent ahead so the server's cache holds it
    "readiness_probe",  # /readyz's two-token completion
    "other",
]
PURPOSES: tuple[Purpose, ...] = get_args(Purpose)
_PURPOSE: ContextVar[Purpose] = ContextVar("model_call_purpose", default="other")


def current_purpose() -> Purpose:
    return _PURPOSE.get()


@contextmanager
def calling(purpose: Purpose) -> Iterator[None]:
    """Model calls started inside the block are recorded with ``purpose``."""
    token = _PURPOSE.set(purpose)
    try:
        yield
    finally:
        _PURPOSE.reset(token)
