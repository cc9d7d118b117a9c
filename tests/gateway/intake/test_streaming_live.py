"""With the real model behind mlx_lm.server: the student's first words leave before the reply is done."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from openai import AsyncOpenAI

from services.gateway.intake.interview import Interviewer, TurnOutcome
from services.gateway.intake.llm import OpenAIChatModel
from services.gateway.intake.models import InterviewState
from services.gateway.ports import PromptMessage
from services.settings import Settings
from tests.gateway.intake.scripted import TODAY, ListRetriever, make_booking, make_course, make_passages

ANSWERS = [
    "I'm stuck on problem set 3, the t-test questions: I can't tell when the p-value means I should reject the null.",
    "I don't get when to reject the null hypothesis with the p-value.",
    "I re-read the lecture notes and tried problem 2 twice.",
    "I want to understand how to read a p-value.",
]


class Watched:
    """The real adapter, noting in one shared log when the model sent a piece and when it ended."""

    def __init__(self, model: OpenAIChatModel, log: list[str]) -> None:
        self.model, self.log = model, log

    async def stream(self, messages: Sequence[PromptMessage], **kw: Any) -> AsyncIterator[str]:
        async for piece in self.model.stream(messages, **kw):
            self.log.append("model")
            yield piece
        self.log.append("model_end")

    async def complete(self, messages: Sequence[PromptMessage], **kw: Any) -> str:
        return await self.model.complete(messages, **kw)


@pytest.mark.slow
async def test_the_first_words_reach_the_student_while_the_model_is_still_writing(
    inference_server: str,
) -> None:
    """Of the turns the model answered itself, at least one yielded words to the student before the
    model's last piece (and every turn's pieces still add up to the stored reply). The small model's
    replies are sampled and often rejected (garbled, off the slot, a repeat: the template is shown then),
    so up to three whole intakes are played to see one model-written turn."""
    client = AsyncOpenAI(base_url=inference_server, api_key="local", max_retries=0, timeout=120)
    log: list[str] = []
    model = Watched(OpenAIChatModel(client, "default_model", timeout_s=120), log)
    settings = Settings(inference_timeout_s=120.0)
    iv = Interviewer(model, ListRetriever(make_passages()), settings, today=lambda c: TODAY)  # type: ignore[arg-type]
    course, booking = make_course(), make_booking()
    streamed_turns = 0
    try:
        for _ in range(3):
            state = InterviewState()
            await iv.prepare(state, course, booking)
            iv.opening(state, course, booking)
            for answer in ANSWERS:
                log.clear()
                pieces: list[str] = []
                async for item in iv.turn(state, course, booking, answer):
                    if isinstance(item, str):
                        log.append("shown")
                        pieces.append(item)
                    elif isinstance(item, TurnOutcome):
                        assert "".join(pieces) == item.reply
                model_pieces = [i for i, e in enumerate(log) if e == "model"]
                if "shown" in log and model_pieces and log.index("shown") < model_pieces[-1]:
                    streamed_turns += 1
            if streamed_turns:
                break
    finally:
        await client.close()
    assert streamed_turns >= 1, "no turn showed words before the model finished"
