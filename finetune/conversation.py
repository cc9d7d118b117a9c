"""The stored shapes of the pipeline: one generated conversation, one MLX training example.

Both are msgspec Structs written as JSON lines, so generation, curation, splitting and the tests read
exactly what the previous step wrote.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from finetune.personas import Persona
from services.gateway.intake.models import ChatMessage

T = TypeVar("T")


class Conversation(msgspec.Struct, kw_only=True):
    """One composed intake, as the gateway would have stored it, plus what the model should answer.

    ``prompt`` is the append-only OpenAI message list the gateway sent (system prompt, student messages
    with bracketed steering notes, assistant replies); ``targets`` are the indices in ``prompt`` of the
    replies the model produced (not the opening or template replies written by code).
    """

    id: str
    persona: Persona
    variant: int
    source: str  # "composed" or "teacher:<model>"
    status: str  # final interview status: complete | escalated | active
    messages: list[ChatMessage]
    prompt: list[dict[str, str]]
    targets: list[int]
    asked: list[str] = []
    summary_prompt: list[dict[str, str]] = []  # what the gateway sent to draft the summary
    summary_reply: str = ""  # the draft JSON the model should write (the four free-text fields)
    summary: dict[str, Any] | None = None  # the summary v1 the gateway delivers with that draft
    facts: dict[str, Any] = {}  # the policy's facts at the end (assignment, topic, section...)
    draft_rejected: bool = False  # the gateway's checks refused part of the ideal draft
    replaced: int = 0  # composed questions the gateway's checks refused (replaced by its template)


class Example(msgspec.Struct):
    """One line of train/valid/test.jsonl: ``mlx_lm.lora`` chat format, plus which replies to learn.

    ``train_on`` holds the indices in ``messages`` of the assistant replies the loss is computed on (the
    ones the gateway asks the model for); empty means the last message only, as ``mlx_lm.lora`` with
    ``mask_prompt: true`` does. ``finetune/train.py`` reads it; stock ``mlx_lm`` ignores the extra key.
    """

    messages: list[dict[str, str]]
    train_on: list[int] = []


def write_jsonl(path: Path, items: Iterable[object]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    encoder = msgspec.json.Encoder()
    count = 0
    with path.open("wb") as out:
        for item in items:
            out.write(encoder.encode(item) + b"\n")
            count += 1
    return count


def read_jsonl(path: Path, kind: type[T]) -> list[T]:
    decoder = msgspec.json.Decoder(kind)
    with path.open("rb") as lines:
        return [decoder.decode(line) for line in lines if line.strip()]
