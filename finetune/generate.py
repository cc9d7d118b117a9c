"""Generate synthetic intake conversations in the exact format the gateway sends to the model.

No frontier model is needed: each conversation is driven through the gateway's own ``Interviewer``
(dialogue policy, guardrails, prompt assembly, summary drafting) with a scripted ``ChatModel`` that
answers every model call with an ideal reply composed from phrase banks, the persona and the course
pack. So the stored prompt (system prompt, student messages with bracketed steering notes, replies) is
byte for byte what serving produces, and replies the gateway would reject are never training targets.
Student turns come from style-specific phrase banks (``phrases.toml``).

With ``INTAKE_TEACHER_URL`` pointing at an OpenAI-compatible server with a stronger model
(``INTAKE_TEACHER_MODEL``, default ``default_model``; ``INTAKE_TEACHER_API_KEY`` if needed) the teacher
phrases the interviewer's questions and the student's answers instead; anything it writes that the
gateway's guardrails reject falls back to the composed text.

Usage: ``python -m finetune.generate [--personas N] [--per-persona K] [--data-dir DIR]``
writes ``<data_dir>/finetune/conversations.jsonl``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, cast

import msgspec
import structlog

from finetune.compose import SimulatedStudent, ideal_question, load_phrases, short_title
from finetune.conversation import Conversation, write_jsonl
from finetune.personas import Matrix, Persona, build_personas, load_matrix
from finetune.retrieval import LocalRetriever
from services.coursepack import Catalog, Course, load_catalog
from services.gateway.intake import guardrails, policy, summary
from services.gateway.intake.interview import Interviewer, TurnOutcome
from services.gateway.intake.models import Booking, InterviewState, Person, SummaryStatus
from services.gateway.ports import PromptMessage
from services.settings import Settings, load_settings

_DIFFICULTY_WORDS = [
    "It seems to be a small, specific question.",
    "It sounds like a fairly quick question.",
    "They say they are kind of stuck.",
    "They say they are really stuck.",
    "They say they are completely lost.",
]


class ScriptedModel:
    """A ``ChatModel`` whose replies come from a function of the prompt; records every call."""

    def __init__(self) -> None:
        self.reply_for: Callable[[Sequence[PromptMessage]], str] = lambda _: ""
        self.calls: list[tuple[str, list[PromptMessage], str]] = []

    async def stream(
        self, messages: Sequence[PromptMessage], *, max_tokens: int, stop: Sequence[str] = (), **_: Any
    ) -> AsyncIterator[str]:
        reply = self.reply_for(messages)
        self.calls.append(("stream", list(messages), reply))
        for i in range(0, len(reply), 6):  # small pieces, like a real server's tokens
            yield reply[i : i + 6]

    async def complete(
        self, messages: Sequence[PromptMessage], *, max_tokens: int, stop: Sequence[str] = (), **_: Any
    ) -> str:
        reply = self.reply_for(messages)
        self.calls.append(("complete", list(messages), reply))
        return reply


class Teacher:
    """An optional stronger model behind an OpenAI-compatible API that rephrases composed turns."""

    def __init__(self, url: str, model: str, api_key: str) -> None:
        from openai import OpenAI

        self.client = OpenAI(base_url=url, api_key=api_key or "none", timeout=60.0)
        self.model = model

    @classmethod
    def from_env(cls) -> Teacher | None:
        url = os.environ.get("INTAKE_TEACHER_URL", "")
        if not url:
            return None
        return cls(
            url,
            os.environ.get("INTAKE_TEACHER_MODEL", "default_model"),
            os.environ.get("INTAKE_TEACHER_API_KEY", ""),
        )

    def _chat(self, messages: list[dict[str, str]], max_tokens: int) -> str:
        try:
            out = self.client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=0.8,
            )
            return (out.choices[0].message.content or "").strip()
        except Exception:
            return ""

    def question(self, sent: Sequence[PromptMessage]) -> str:
        return self._chat([{"role": m.role, "content": m.content} for m in sent], 60)

    def student(self, persona: Persona, style: str, question: str, fallback: str) -> str:
        brief = (
            f"Role-play a university student in a short office-hours intake chat. Style: {style}. "
            f"Your facts: {persona.say_stuck}; tried: {persona.say_attempts}; goal: {persona.say_goal}. "
            f"Answer the tutor's question in ONE chat message (under 40 words), in that style. "
            f"A plausible answer would be: {fallback}"
        )
        return self._chat([{"role": "system", "content": brief}, {"role": "user", "content": question}], 80)


def booking_for(persona: Persona, course: Course, variant: int) -> Booking:
    return Booking(
        uid=f"gen-{persona.id}-{variant}",
        event_type_id=next(iter(course.calcom.event_type_ids), None),
        event_type_slug=next(iter(course.calcom.event_type_slugs), None),
        title=f"{course.code} office hours between {course.instructor_name} and {persona.name}",
        start_time=persona.appointment_start,
        organizer=Person(course.instructor_name, course.instructor_email),
        student=Person(persona.name, persona.email),
        notes=persona.booking_note,
    )


def known_values(state: InterviewState, course: Course, booking: Booking, today: dt.date) -> dict[str, str]:
    """Placeholder values limited to what the policy has learned: the bot cannot name what it was not told."""
    facts = state.facts
    values = {"instructor": course.instructor_name, "course": course.code}
    titles = [a.title for a in policy.upcoming_assignments(course, today, 3)]
    if titles:
        values["assignment_list"] = ", ".join(titles[:-1]) + (
            f" or {titles[-1]}" if len(titles) > 1 else titles[0]
        )
    assignment = course.assignment(facts.assignment) if facts.assignment else None
    if assignment:
        values["assignment_title"] = assignment.title
    topic = course.topic(facts.topic) if facts.topic else None
    if topic:
        values["topic_title"] = short_title(topic.title)
    ids = assignment.topics if assignment and assignment.topics else [t.id for t in course.topics]
    choices = [short_title(t.title) for i in ids[:3] if (t := course.topic(i))]
    if choices:
        values["topic_choices"] = ", ".join(choices[:-1]) + (
            f" or {choices[-1]}" if len(choices) > 1 else choices[0]
        )
    return values


def ideal_draft(persona: Persona, course: Course, told: set[str]) -> dict[str, str]:
    """The four free-text summary fields an ideal model writes (the only part the gateway lets it write)."""
    t = persona.truth
    first = persona.name.split()[0]
    assignment = course.assignment(t.assignment) if t.assignment else None
    topic = course.topic(t.topic)
    issue = (
        f'{first} {t.stuck_on}. In their words: "{persona.say_stuck}." {_DIFFICULTY_WORDS[t.difficulty - 1]}'
    )
    prep: list[str] = []
    if assignment:
        prep.append(
            f"Review the {assignment.title} sheet."
        )  # no file path: the gateway reads long tokens as junk
    if topic:
        prep.append(f"Have your notes on {topic.title.lower()} ready.")
    if t.request_type in {"assignment", "draft_feedback"}:
        prep.append(f"Ask {first} to bring their current draft.")
    if t.request_type == "grade":
        prep.append("Have the graded work and the rubric at hand.")
    if t.request_type == "logistics":
        prep.append("Check the syllabus policy on deadlines and submissions.")
    if t.deadline and t.days_to_deadline is not None and t.days_to_deadline >= 0:
        prep.append(f"It is due {t.deadline}, so urgency is {t.urgency}.")
    return {
        "issue_description": issue,
        "student_attempts": t.attempts if "attempts" in told else "Not stated; ask what they have tried.",
        "student_goal": t.goal if "goal" in told else "Not stated; ask what they want from the meeting.",
        "professor_prep_note": " ".join(prep) or "Ask the student what they need first.",
    }


async def compose_conversation(
    persona: Persona,
    variant: int,
    course: Course,
    retriever: LocalRetriever | None,
    settings: Settings,
    phrases: dict[str, Any],
    seed: int,
    teacher: Teacher | None = None,
) -> Conversation:
    """Drive the gateway's Interviewer with a simulated student and a scripted ideal model."""
    rng = random.Random(f"{seed}-{persona.id}-{variant}")
    booking = booking_for(persona, course, variant)
    start = dt.datetime.fromisoformat(persona.appointment_start.replace("Z", "+00:00"))
    today = start.date() - dt.timedelta(days=rng.choice([0, 1, 1, 2, 3]))
    model = ScriptedModel()
    interviewer = Interviewer(model, retriever, settings, today=lambda _course: today)
    state = InterviewState()
    await interviewer.prepare(state, course, booking)
    interviewer.opening(state, course, booking)
    student = SimulatedStudent(persona, course, phrases, rng)

    def ask(sent: Sequence[PromptMessage]) -> str:
        slot = cast(policy.Slot, state.asked[-1])
        variant = max(0, state.asked.count(slot) - 1)
        template = policy.question(slot, course, booking, state.facts, today, variant)
        composed = ideal_question(
            slot, known_values(state, course, booking, today), persona.style, phrases, rng, template
        )
        if teacher:
            phrased = teacher.question(sent)
            if phrased and not guardrails.check_reply(
                phrased, system_prompt=sent[0].content, previous=[], slot=slot
            ):
                return phrased
        return composed

    model.reply_for = ask
    text, status, targets = student.opening(), "active", []
    for _ in range(settings.max_turns + 1):
        calls_before = len(model.calls)
        outcome: TurnOutcome | None = None
        async for item in interviewer.turn(state, course, booking, text):
            if isinstance(item, TurnOutcome):
                outcome = item
        assert outcome is not None
        made = [reply for kind, _, reply in model.calls[calls_before:] if kind == "stream"]
        if made and _same(state.prompt[-1]["content"], made[0]):
            targets.append(len(state.prompt) - 1)
        if outcome.finished:
            status = outcome.status
            break
        slot = state.asked[-1]
        composed = student.reply(slot)  # type: ignore[arg-type]
        if teacher and not student.special_at(student.turn):
            composed = teacher.student(persona, persona.style, outcome.reply, composed) or composed
        text = composed

    draft = json.dumps(
        grounded_draft(ideal_draft(persona, course, student.told | {"issue"}), state, course, booking)
    )
    model.reply_for = lambda _sent: draft
    calls_before = len(model.calls)
    summary_status: SummaryStatus = (
        "escalated" if status == "escalated" else "complete" if status == "complete" else "partial"
    )
    result = await interviewer.summarize(
        state, course, booking, summary_status, f"/staff/intakes/gen-{persona.id}"
    )
    drafts = [(sent, reply) for kind, sent, reply in model.calls[calls_before:] if kind == "complete"]
    summary_prompt = [{"role": m.role, "content": m.content} for m in drafts[0][0]] if drafts else []
    return Conversation(
        id=f"{persona.id}-v{variant}",
        persona=persona,
        variant=variant,
        source=f"teacher:{teacher.model}" if teacher else "composed",
        status=status,
        messages=list(state.messages),
        prompt=list(state.prompt),
        targets=targets,
        asked=list(state.asked),
        summary_prompt=summary_prompt,
        summary_reply=draft if drafts else "",
        summary=msgspec.to_builtins(result),
        draft_rejected=len(drafts) > 1,
        replaced=model_replacements(model, state),
    )


def grounded_draft(
    draft: dict[str, str], state: InterviewState, course: Course, booking: Booking
) -> dict[str, str]:
    """Swap fields the gateway's own draft checks would refuse for text built from what was actually said.

    The ideal wording comes from the persona, but a terse student may never have said all of it, and the
    gateway drops any drafted field not grounded in the student's words; such a field is no target.
    """
    evidence = summary.evidence_text(state, course, booking)
    system = state.prompt[0]["content"]
    bad = summary.bad_fields(msgspec.convert(draft, summary.DraftText), evidence, system)
    facts = state.facts
    fallback = {
        "issue_description": summary.issue_text(state, course, booking, "complete"),
        "student_attempts": facts.attempts or "Nothing yet.",
        "student_goal": facts.goal or "Not said.",
        "professor_prep_note": summary.prep_note(state, course, booking, "complete"),
    }
    return {k: fallback[k] if k in bad else v for k, v in draft.items()}


def model_replacements(model: ScriptedModel, state: InterviewState) -> int:
    """Composed replies the gateway rejected and replaced with its template (never used as targets)."""
    shown = {m.text.strip() for m in state.messages if m.role == "assistant"}
    return sum(1 for kind, _, reply in model.calls if kind == "stream" and reply.strip() not in shown)


def _same(stored: str, composed: str) -> bool:
    return " ".join(stored.split()) == " ".join(composed.split())


async def generate(
    catalog: Catalog,
    matrix: Matrix,
    settings: Settings,
    personas: int | None,
    per_persona: int,
    teacher: Teacher | None = None,
) -> list[Conversation]:
    phrases = load_phrases()
    retriever = LocalRetriever(catalog)
    out = []
    for persona in build_personas(catalog, matrix, personas):
        course = catalog.courses[persona.course_slug]
        for variant in range(per_persona):
            out.append(
                await compose_conversation(
                    persona, variant, course, retriever, settings, phrases, matrix.seed, teacher
                )
            )
    return out


def main(argv: list[str] | None = None) -> int:
    settings = load_settings()
    matrix = load_matrix()
    parser = argparse.ArgumentParser(prog="python -m finetune.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--personas", type=int, default=matrix.personas)
    parser.add_argument("--per-persona", type=int, default=matrix.conversations_per_persona)
    parser.add_argument("--data-dir", type=Path, default=settings.data_path)
    args = parser.parse_args(argv)
    catalog = load_catalog(Path(settings.corpus_dir))
    for problem in catalog.problems:
        print(f"skipping course: {problem}")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    teacher = Teacher.from_env()
    started = time.monotonic()
    conversations = asyncio.run(generate(catalog, matrix, settings, args.personas, args.per_persona, teacher))
    path = args.data_dir / "finetune" / "conversations.jsonl"
    write_jsonl(path, conversations)
    styles = Counter(c.persona.style for c in conversations)
    statuses = Counter(c.status for c in conversations)
    print(
        f"{len(conversations)} conversations from {args.personas} personas "
        f"in {time.monotonic() - started:.1f}s "
        f"({'teacher ' + teacher.model if teacher else 'composed'})"
    )
    print("styles:", dict(sorted(styles.items())), "status:", dict(statuses))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
