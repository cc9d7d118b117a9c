"""The understanding half of the interview, replayed offline: every eval student, no model, in seconds.

``make eval`` measures the whole product through the public API and takes the better part of an hour on
two cores. Most changes to the understanding (reading a message, the course map, the policy, the
check-in) can be judged in half a minute: this runs each student of ``eval_students.toml`` through
``Interviewer`` in-process with the real classifier and course map, the policy's own questions (no model:
every question is the template the interview falls back to) and a retriever, and prints per student
whether the topic and the assignment came out right, how the chat ended, every check-in or
escalation of a student who is not in distress and every student in distress who was not escalated;
with ``-v``, each conversation and the summary composed from its facts (what the professor reads when
the model's polish is rejected or absent).

It is a developer's instrument, not the evaluation: questions worded by a model differ, so a student's
answers can land in other slots; the figures in the README come from ``make eval``. ::

    python -m finetune.replay                       # all students, the offline keyword retriever
    python -m finetune.replay cs-05 ph-21 -v        # those students, with the conversation
    python -m finetune.replay --index .data/eval/stack --chroma http://127.0.0.1:8082   # hybrid retrieval
    python -m finetune.replay --eval-set finetune/blind/students.toml --corpus finetune/blind/corpus
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import msgspec

from finetune.eval_player import StudentPlayer
from finetune.eval_students import EVAL_STUDENTS_PATH, EvalStudent, course_questions, load_eval_set
from finetune.evaluate import appointment_for, iso
from finetune.retrieval import LocalRetriever
from services.coursepack import Catalog, Course, load_catalog
from services.gateway.intake.interview import Interviewer, TurnOutcome
from services.gateway.intake.models import Booking, InterviewState, Person, SummaryStatus
from services.gateway.intake.reader import EmbeddingReader
from services.gateway.intake.summary import build_summary
from services.gateway.ports import CourseRetriever, PromptMessage
from services.settings import Settings

CHECK_INS = ("okay and safe", "safe right now")


class NoModel:
    """A ``ChatModel`` that is never there: every question is the policy's template."""

    async def stream(
        self, messages: Sequence[PromptMessage], *, max_tokens: int, stop: Sequence[str] = ()
    ) -> AsyncIterator[str]:
        raise ConnectionError("offline replay: no model")
        yield ""  # pragma: no cover - makes this an async generator

    async def complete(
        self, messages: Sequence[PromptMessage], *, max_tokens: int, stop: Sequence[str] = ()
    ) -> str:
        raise ConnectionError("offline replay: no model")


class Replayed(msgspec.Struct, frozen=True):
    student: str
    topic_ok: bool
    assignment_ok: bool
    status: str
    turns: int
    check_ins: int
    lines: list[str]


async def replay(
    student: EvalStudent, course: Course, interviewer: Interviewer, cues: dict[str, list[str]]
) -> Replayed:
    rng = random.Random(student.id)
    start = appointment_for(student, rng)
    booking = Booking(
        uid=f"replay-{student.id}",
        title=f"Office hours: {course.code}",
        start_time=iso(start),
        organizer=Person(course.instructor_name, course.instructor_email),
        student=Person(student.name, student.email),
        notes=student.notes,
    )
    state = InterviewState()
    await interviewer.prepare(state, course, booking)
    bot = interviewer.opening(state, course, booking)
    player = StudentPlayer(student, course, course_questions(course), cues, rng)
    lines, status, text = [f"bot: {bot}"], "active", player.opening()
    for _ in range(12):
        lines.append(f"student: {text}")
        reply, finished = "", False
        async for piece in interviewer.turn(state, course, booking, text):
            if isinstance(piece, TurnOutcome):
                status, finished = piece.status, piece.finished
            elif isinstance(piece, str):
                reply += piece
        lines.append(f"bot: {reply}")
        if finished:
            break
        text = player.reply(reply)
    facts, truth = state.facts, student.truth
    ended: SummaryStatus = (
        "escalated" if status == "escalated" else "complete" if status == "complete" else "partial"
    )
    summary = build_summary(state, course, booking, ended, "")
    return Replayed(
        student=student.id,
        topic_ok=facts.topic == (truth.topic or None),
        assignment_ok=(facts.assignment or None) == (truth.assignment or None),
        status=status,
        turns=state.turn,
        check_ins=sum(any(c in line for c in CHECK_INS) for line in lines if line.startswith("bot:")),
        lines=[
            *lines,
            f"facts: topic={facts.topic} assignment={facts.assignment} section={facts.section}",
            f"stuck_on: {facts.stuck_on!r}",
            f"evidence: topic={facts.topic_evidence} assignment={facts.assignment_evidence}",
            f"issue_description: {summary.issue_description}",
            f"professor_prep_note: {summary.professor_prep_note}",
            "suggested_materials: "
            + "; ".join(
                f"{m.source}" + (f" ({m.section})" if m.section else "") for m in summary.suggested_materials
            ),
        ],
    )


def retriever_for(args: argparse.Namespace, catalog: Catalog) -> CourseRetriever:
    if args.index is None:
        return LocalRetriever(catalog)
    from services.indexer.retrieval import open_retriever

    return open_retriever(Settings(data_dir=str(args.index.resolve()), chroma_url=args.chroma))


async def run(args: argparse.Namespace) -> int:
    catalog = load_catalog(args.corpus)
    eval_set = load_eval_set(args.eval_set)
    students = [s for s in eval_set.students if not args.students or s.id in args.students]
    interviewer = Interviewer(
        NoModel(),
        retriever_for(args, catalog),
        Settings(),
        reader=EmbeddingReader(),
        courses=list(catalog.courses.values()),
    )
    both = alarms = missed = 0
    for student in students:
        done = await replay(student, catalog.courses[student.course], interviewer, eval_set.question_cues)
        distressed = "distress" in student.cases
        ok = done.topic_ok and done.assignment_ok
        both += ok
        false_alarm = not distressed and done.status == "escalated"
        alarms += false_alarm
        miss = distressed and done.status != "escalated"  # the one failure that must never happen
        missed += miss
        marks = ("" if done.topic_ok else " topic") + ("" if done.assignment_ok else " assignment")
        marks += " DISTRESS-MISSED" if miss else ""
        extra = f" check-ins={done.check_ins}" if done.check_ins and not distressed else ""
        verdict = "ok " if ok and not miss else "BAD"
        print(f"{verdict} {student.id:6} {done.status:9} turns={done.turns}{marks}{extra}")
        if args.verbose:
            print("\n".join(f"      {line}" for line in done.lines))
    print(
        f"topic and assignment right: {both}/{len(students)}; false escalations: {alarms}; "
        f"distress missed: {missed}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune.replay", description=__doc__.split("\n")[0])
    parser.add_argument("students", nargs="*", help="student ids (default: all)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each conversation")
    parser.add_argument("--corpus", type=Path, default=Path(Settings().corpus_dir))
    parser.add_argument(
        "--eval-set", type=Path, default=EVAL_STUDENTS_PATH, help="a students file like eval_students.toml"
    )
    parser.add_argument("--index", type=Path, default=None, help="a data dir with an index: hybrid retrieval")
    parser.add_argument("--chroma", default="http://127.0.0.1:8082", help="with --index: its Chroma server")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
