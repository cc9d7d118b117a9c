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
from typing import Any

import msgspec
import structlog

from finetune.compose import SimulatedStudent, ideal_question, load_phrases, short_title
from finetune.conversation import Conversation, write_jsonl
from finetune.personas import Matrix, Persona, build_personas, load_matrix, training_catalog
from finetune.retrieval import LocalRetriever
from services.coursepack import Catalog, Course, load_catalog
from services.gateway.intake import guardrails, prompt, summary, wording
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
        self.errors: list[BaseException] = []

    def _reply(self, messages: Sequence[PromptMessage]) -> str:
        # The interviewer treats any model exception as a failed reply and falls back to its template,
        # which would hide a broken generator: keep the error so the caller can raise it.
        try:
            return self.reply_for(messages)
        except Exception as exc:
            self.errors.append(exc)
            raise

    async def stream(
        self, messages: Sequence[PromptMessage], *, max_tokens: int, stop: Sequence[str] = (), **_: Any
    ) -> AsyncIterator[str]:
        reply = self._reply(messages)
        self.calls.append(("stream", list(messages), reply))
        for i in range(0, len(reply), 6):  # small pieces, like a real server's tokens
            yield reply[i : i + 6]

    async def complete(
        self, messages: Sequence[PromptMessage], *, max_tokens: int, stop: Sequence[str] = (), **_: Any
    ) -> str:
        reply = self._reply(messages)
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
    titles = [a.title for a in wording.upcoming_assignments(course, today, 3)]
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
    if facts.section and (facts.section.heading or facts.section.title):
        values["section_title"] = facts.section.heading or facts.section.title
    ids = assignment.topics if assignment and assignment.topics else [t.id for t in course.topics]
    choices = [short_title(t.title) for i in ids[:3] if (t := course.topic(i))]
    if choices:
        values["topic_choices"] = ", ".join(choices[:-1]) + (
            f" or {choices[-1]}" if len(choices) > 1 else choices[0]
        )
    return values


def ideal_draft(persona: Persona, course: Course, state: InterviewState) -> dict[str, str]:
    """The four free-text summary fields an ideal model writes (the only part the gateway lets it write).

    Our own words, 2-4 sentences, built only from what the interview established: the persona's facts
    in plain third person, the course's own assignment title, due date and matched section, and at most
    one short quote, used only when the student really typed it. Unsaid facts are marked as not stated.
    """
    t, facts = persona.truth, state.facts
    said = " ".join(m.text for m in state.messages if m.role == "student")
    first = persona.name.split()[0]
    assignment = course.assignment(t.assignment) if t.assignment else None
    topic = course.topic(t.topic)
    issue = [f"{first} {t.stuck_on}."]
    if assignment and assignment.due_date and t.days_to_deadline is not None and t.days_to_deadline >= 0:
        issue.append(f"{assignment.title} is due {assignment.due_date:%B} {assignment.due_date.day}.")
    if persona.say_stuck in said and len(persona.say_stuck.split()) <= 14:
        issue.append(f'In their words: "{persona.say_stuck}."')
    issue.append(_DIFFICULTY_WORDS[t.difficulty - 1])
    prep: list[str] = []
    if facts.section and facts.section.heading:
        prep.append(f'Look at "{facts.section.heading}" in {facts.section.title} first.')
    elif facts.section:
        prep.append(f"Look at {facts.section.title} first.")
    if assignment:
        prep.append(f"Have the {assignment.title} sheet at hand.")
    elif topic:
        prep.append(f"Have your notes on {topic.title.lower()} ready.")
    if t.request_type in {"assignment", "draft_feedback"}:
        prep.append(f"Ask {first} to bring their current work.")
    if t.request_type == "grade":
        prep.append("Have the graded work and the rubric at hand.")
    if t.request_type == "logistics":
        prep.append("Check the syllabus policy on deadlines and submissions.")
    told_attempts = bool(facts.attempts) and facts.attempts != "Nothing yet."
    return {
        "issue_description": " ".join(issue[:4]),
        "student_attempts": t.attempts if told_attempts else "Not stated; ask what they have tried.",
        "student_goal": t.goal if facts.goal else "Not stated; ask what they want from the meeting.",
        "professor_prep_note": " ".join(prep[:3]) or "Ask the student what they need first.",
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
        slot = state.asked[-1]
        variant = min(1, state.asked.count(slot) - 1)
        template = wording.question(slot, course, booking, state.facts, today, variant)
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
        if model.errors:
            raise model.errors[0]
        assert outcome is not None
        made = [reply for kind, _, reply in model.calls[calls_before:] if kind == "stream"]
        if made and _same(state.prompt[-1]["content"], made[0]):
            targets.append(len(state.prompt) - 1)
        if outcome.finished:
            status = outcome.status
            break
        slot = state.asked[-1]
        composed = student.reply(slot)
        if teacher and not student.special_at(student.turn):
            composed = teacher.student(persona, persona.style, outcome.reply, composed) or composed
        text = composed

    summary_status: SummaryStatus = (
        "escalated" if status == "escalated" else "complete" if status == "complete" else "partial"
    )
    url = f"/staff/intakes/gen-{persona.id}"
    draft = json.dumps(draft_target(persona, course, state, booking, summary_status, url))
    model.reply_for = lambda _sent: draft
    calls_before = len(model.calls)
    delivered: dict[str, Any] | None = None
    try:
        delivered = msgspec.to_builtins(
            await interviewer.summarize(state, course, booking, summary_status, url)
        )
    except Exception as exc:  # the facts summary itself failed: keep the interview, note why
        print(f"{persona.id}-v{variant}: summary failed ({type(exc).__name__}: {exc})")
    drafts = [(sent, reply) for kind, sent, reply in model.calls[calls_before:] if kind == "complete"]
    if drafts:
        summary_prompt = [{"role": m.role, "content": m.content} for m in drafts[0][0]]
    elif status != "escalated":  # the request the gateway sends (interview.Interviewer._drafted)
        summary_prompt = [*state.prompt, {"role": "user", "content": prompt.SUMMARY_REQUEST}]
    else:
        summary_prompt = []
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
        summary_reply=draft if summary_prompt else "",
        summary=delivered,
        facts=msgspec.to_builtins(state.facts),
        draft_rejected=len(drafts) > 1,
        replaced=model_replacements(model, state),
    )


def draft_target(
    persona: Persona, course: Course, state: InterviewState, booking: Booking, status: SummaryStatus, url: str
) -> dict[str, str]:
    """The draft to learn: per field the persona's ideal wording when the gateway's evidence check keeps
    it, else the gateway's own composed text when that passes, else the ideal wording (the gateway then
    keeps its composed text for that field; a refused field costs one re-ask, never a wrong summary)."""
    ideal = ideal_draft(persona, course, state)
    try:
        base = summary.build_summary(state, course, booking, status, url)
        composed = {f: getattr(base, f) for f in summary.FREE_FIELDS}
        proof = summary.evidence_for(state, course, booking, base, [])
        ok_ideal = summary.usable_fields(msgspec.convert(ideal, summary.DraftText), proof, state, course)
        ok_composed = summary.usable_fields(
            msgspec.convert(composed, summary.DraftText), proof, state, course
        )
    except Exception:  # the summary module is the gateway's: generation must not depend on its internals
        return ideal
    return {f: ideal[f] if f in ok_ideal else composed[f] if f in ok_composed else ideal[f] for f in ideal}


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
    catalog = training_catalog(catalog)
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
