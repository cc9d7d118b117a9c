"""Summary validity over scripted intakes with the real model, and how many model retries it took.

Simulated students (the fine-tuning personas, every style but distress, whose summary never asks the
model) answer the gateway's own ``Interviewer`` talking to a running inference server; then ``summarize``
drafts summary v1. Counted from the interviewer's own log events: interview replies the checks rejected,
summary drafts whose free-text fields were all usable first time, after the one re-ask, or replaced by the
facts-based text, and whether every final summary round-trips through the msgspec schema.

    .venv/bin/python -m bench.summary_validity --intakes 20     # against INTAKE_INFERENCE_URL
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections import Counter
from pathlib import Path

import msgspec
import structlog
from openai import AsyncOpenAI

from finetune.compose import SimulatedStudent, load_phrases
from finetune.generate import booking_for
from finetune.personas import build_personas, load_matrix
from services.coursepack import load_catalog
from services.gateway.intake.interview import Interviewer, TurnOutcome
from services.gateway.intake.llm import OpenAIChatModel
from services.gateway.intake.models import InterviewState, Summary
from services.settings import load_settings


async def run_one(interviewer: Interviewer, persona, course, phrases, settings, seed: int) -> dict:  # type: ignore[no-untyped-def]
    booking = booking_for(persona, course, 0)
    state = InterviewState()
    await interviewer.prepare(state, course, booking)
    interviewer.opening(state, course, booking)
    student = SimulatedStudent(persona, course, phrases, random.Random(seed))
    text, status = student.opening(), "active"
    for _ in range(settings.max_turns + 1):
        outcome: TurnOutcome | None = None
        async for item in interviewer.turn(state, course, booking, text):
            if isinstance(item, TurnOutcome):
                outcome = item
        assert outcome is not None
        if outcome.finished:
            status = outcome.status
            break
        text = student.reply(state.asked[-1])  # type: ignore[arg-type]
    interview_retries = state.model_retries
    started = time.perf_counter()
    summary = await interviewer.summarize(
        state, course, booking, "complete" if status == "complete" else "partial", "/staff/intakes/bench"
    )
    valid = msgspec.json.decode(msgspec.json.encode(summary), type=Summary) == summary
    return {
        "turns": state.turn,
        "interview_retries": interview_retries,
        "summary_retries": state.model_retries - interview_retries,
        "summary_s": time.perf_counter() - started,
        "valid": valid,
    }


async def main_async(count: int, seed: int) -> None:
    settings = load_settings()
    catalog = load_catalog(Path(settings.corpus_dir))
    personas = [p for p in build_personas(catalog, load_matrix()) if p.style != "distress"]
    random.Random(seed).shuffle(personas)
    client = AsyncOpenAI(
        base_url=settings.inference_url, api_key="local", timeout=settings.inference_timeout_s
    )
    interviewer = Interviewer(OpenAIChatModel(client, settings.model_name), None, settings)
    phrases = load_phrases()
    rows, events = [], Counter[str]()
    drafted: list[int] = []
    for index, persona in enumerate(personas[:count]):
        with structlog.testing.capture_logs() as logs:
            rows.append(
                await run_one(
                    interviewer, persona, catalog.courses[persona.course_slug], phrases, settings, index
                )
            )
        events.update(entry["event"] for entry in logs)
        drafted += [entry["model_fields"] for entry in logs if entry["event"] == "summary_drafted"]
        print(f"intake {index + 1}/{count}: {rows[-1]}", flush=True)
    await client.close()
    n = len(rows)
    print(f"\nmodel {settings.model_path}, {n} scripted intakes")
    print(f"final summaries schema-valid: {sum(r['valid'] for r in rows)}/{n}")
    print(
        f"turns per intake: median {statistics.median(r['turns'] for r in rows)}, "
        f"range {min(r['turns'] for r in rows)}-{max(r['turns'] for r in rows)}"
    )
    print(
        "interview replies rejected by the checks (retried or replaced): "
        f"{events['interview_reply_rejected']}"
        f" over {sum(r['turns'] for r in rows)} turns; model errors: {events['interview_model_failed']}"
    )
    print(
        f"summary drafts: {len(drafted)} finished, {events['summary_draft_failed']} failed or timed out "
        f"(facts-based summary used)"
    )
    if drafted:
        print(
            f"  free-text fields taken from the model (of 4): mean {statistics.mean(drafted):.2f}; "
            f"all 4: {sum(d == 4 for d in drafted)}, none: {sum(d == 0 for d in drafted)}"
        )
    print(
        f"summary re-asks: {sum(r['summary_retries'] for r in rows)}; "
        f"summary time median {statistics.median(r['summary_s'] for r in rows):.1f}s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--intakes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    options = parser.parse_args()
    asyncio.run(main_async(options.intakes, options.seed))


if __name__ == "__main__":
    main()
