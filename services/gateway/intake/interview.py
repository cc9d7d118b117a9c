"""The interviewer: glue between the dialogue policy, guardrails, prompt assembly and the model.

Lifecycle, as the routes drive it::

    iv = Interviewer(chat_model, retriever, settings)
    await iv.prepare(state, course, booking)        # once: retrieval + fixed system prompt, no model call
    text = iv.opening(state, course, booking)       # first assistant message, instant, no model
    await iv.warm(state)                            # right after consent: fills the server's prompt cache
    async for item in iv.turn(state, course, booking, student_text):
        if isinstance(item, str): send a `token` SSE event
        else: outcome = item                        # exactly one TurnOutcome, always last
    summary = draft_summary(...)                    # instant, facts only
    summary = await iv.summarize(...)               # model-drafted text, validated, never raises

All methods mutate ``state`` in place; the caller persists it afterwards.

Streaming contract: the pieces a turn yields always concatenate to ``TurnOutcome.reply`` — the
student never sees text that is later taken back. Model words are released as they arrive, with the
short look-ahead ``guardrails.PrefixGuard`` needs: the word in progress, the start of a solution or leak
phrase, a run of words shared with the system prompt or an earlier question, the start of an
assignment's name, a question until it asks for the slot. What fails a prefix check is never shown:
the reply ends with what was shown and the policy's template question. At the first '?' the whole
reply passes ``guardrails.check_reply``; if it fails before any of the question was shown, it is
retried once (greedy, only when the first attempt was quick: ``RETRY_BUDGET_S``) or replaced by the
template (``state.model_retries`` counts the failed attempts). While the model is busy with other
students the turn waits in a line (``GenerationSlots``) and yields ``Queued`` places. Guardrail cases
(distress, homework, injection, off-topic) and the closing message are answered from templates without
calling the model.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import cast

import msgspec
import structlog

from services.coursepack import Course
from services.gateway.intake import guardrails, policy, prompt, reading, summary, wording
from services.gateway.intake.models import (
    Booking,
    ChatMessage,
    IntakeStatus,
    InterviewState,
    Summary,
    SummaryStatus,
)
from services.gateway.intake.text import clip, question_text
from services.gateway.ports import (
    ChatModel,
    CourseRetriever,
    GenerationSlots,
    LineTimeout,
    MessageReader,
    Passage,
    PromptMessage,
    SearchHealth,
    SearchState,
)
from services.gateway.purpose import calling
from services.settings import Settings

log = structlog.get_logger()

MAX_CONTEXT_SOURCES = 5
RETRY_BUDGET_S = 4.0  # retry a rejected reply only if the first attempt was this quick
DRAIN_S = 5.0  # after the cut at '?', how long the server may finish the reply (for its prompt cache)
_SENTENCE_END = re.compile(r"[.!?…][\"')\]]*\s*$")
_drains: set[asyncio.Task[None]] = set()  # keeps the drain tasks from being garbage-collected
MAX_CHECK_INS = 2  # "are you okay?" at most twice; an uncertain sign after that escalates unless it is weak
# A student who has said they are okay is not asked again on a sign barely over the classifier's
# recall-first threshold ("I keep losing points for leaving out 'me' or 'se'": 0.83 is strong, "Una forma
# rápida de decidir" 0.28 is not; its words are not the encoder's language), and one who has said it twice
# is not escalated on one, nor on coursework that names self-harm (the rules' check-in); a sign at least
# this strong still is. Rules and the sure level escalate at any time.
PERSISTENT_SIGNAL = 0.5
# exact wording matters more than variety: the recap, and the questions that list assignment titles (the
# model wrote "Lab 8: Pre-lab Quiz 7: Spectrophotometry" for two of them in the make run demo)
_TEMPLATE_ONLY = frozenset({"recap", "which_assignment", "assignment"})
_GUARD_NOTES = {
    "distress": "[The student seems to be in distress. Support resources were shown; the interview stopped.]",
    "injection": "[Message withheld: it asked for hidden instructions or other people's data.]",
    "homework": "[The student asked for the answer; declined.]",
    "off_topic": "[Off-topic message; redirected.]",
    "reschedule": "[Asked to move or cancel the meeting; gave the booking's own links.]",
    "person": "[Asked to talk to a person; the course staff were told.]",
    "check_in": "[The student may be struggling; asked how they are before going on.]",
    "handed_back": "[Course staff answered the student for a while and handed the chat back; go on.]",
}


class TurnOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """The result of one student turn, yielded once after the streamed pieces.

    ``reply`` is the text to store and show; it equals the concatenated pieces. ``finished`` is True
    when the interview is over (status ``complete`` or ``escalated``) and a summary should be made.
    """

    status: IntakeStatus  # "active" | "complete" | "escalated"
    reply: str
    finished: bool
    asked_for_person: bool = False  # this message asked to talk to a person (again, maybe)


class _Attempt:
    """One streamed model reply: what was shown to the student so far and what was received."""

    def __init__(self) -> None:
        self.released = ""  # yielded to the student: always a prefix of ``text``
        self.text = ""  # the reply received, cut after its first '?'
        self.problems: list[str] = []  # what the prefix checks (or the call) found; never in ``released``

    @property
    def mid_sentence(self) -> bool:
        """Part of an unfinished sentence is on the student's screen: the reply can only go on from it."""
        return bool(self.released.strip()) and not _SENTENCE_END.search(self.released)


_SENTENCE_BREAK = re.compile(r"[.!?…][\"')\]]*\s+")


def _unfinished(shown: str) -> str:
    """The sentence on screen that has not ended yet (after the last sentence end)."""
    return shown[max((m.end() for m in _SENTENCE_BREAK.finditer(shown)), default=0) :]


def _rest_of(shown: str, question: str) -> str | None:
    """The rest of the policy's ``question`` when the unfinished sentence on screen is its start ("What
    have you tried so far on Paper 2" + "?"), else None."""
    said = _unfinished(shown).split()
    asked = list(re.finditer(r"\S+", question))
    if said and len(said) <= len(asked):
        *whole, last = (w.lower() for w in said)
        if [m.group().lower() for m in asked[: len(whole)]] == whole and (
            asked[len(whole)].group().lower().startswith(last)
        ):
            rest = question[asked[len(whole)].start() + len(last) :]
            if rest.strip():
                return rest.lstrip() if shown[-1:].isspace() else rest
    return None


def _our_rest(shown: str, questions: Sequence[str]) -> str | None:
    """The rest of the first of our ``questions`` whose start the unfinished sentence on screen is."""
    return next((rest for q in questions if (rest := _rest_of(shown, q)) is not None), None)


_QUESTION_START = re.compile(
    r"(?:what|which|how|where|when|why|who|could|can|do|does|did|is|are|would)\b", re.I
)


def _closed_at_name(shown: str, names: Sequence[str]) -> str | None:
    """What closes an unfinished question on screen that ends with a name of the course, or with the first
    words of one: "?" after "What have you tried on Final Paper Proposal", "Loop Patterns?" after "What
    would you like to understand better about Lab 5:". None when it does not end so."""
    unfinished = _unfinished(shown).rstrip()
    if not _QUESTION_START.match(unfinished):
        return None
    said = unfinished.lower().split()
    for name in sorted(names, key=len, reverse=True):
        words = name.split()
        for k in range(len(words), 1, -1):  # at least two words of it, so "Lab" alone is no name
            if said[-k:] == [w.lower() for w in words[:k]] and len(said) > k:
                space = "" if shown[-1:].isspace() else " "
                return f"{space}{' '.join(words[k:]) or 'in particular'}?"
    return None


class Queued(msgspec.Struct, frozen=True):
    """Yielded by ``Interviewer.turn`` while the turn waits for a generation slot: the place in line."""

    position: int


class Interviewer:
    """Runs Socratic intake interviews; holds no per-interview state (that lives in ``InterviewState``)."""

    def __init__(
        self,
        model: ChatModel,
        retriever: CourseRetriever | None,
        settings: Settings,
        *,
        reader: MessageReader | None = None,
        courses: Sequence[Course] = (),
        today: Callable[[Course], dt.date] | None = None,
        slots: GenerationSlots | None = None,
    ) -> None:
        self.model = model
        self.slots = slots  # the line for a generation slot, shared by every gateway (None: no line)
        self.drain_s = DRAIN_S
        self.retriever = retriever
        self.reader = reader
        self.courses = list(courses)  # the catalog: another course's terms in a draft reject its sentence
        self.settings = settings
        self._today = today or summary.today_for

    # ------------------------------------------------------------ start

    async def prepare(self, state: InterviewState, course: Course, booking: Booking) -> None:
        """Retrieve context once (booking notes + course), store its sources, build the fixed system prompt.

        No model call. The retriever is sync and runs in a worker thread; if it fails the interview
        runs without materials. Facts already in the booking notes (an assignment, a deadline) are
        recorded so the bot does not ask for them again. Idempotent: a prepared state is left alone.
        """
        if state.prompt:
            return
        system, chosen = await self.course_prompt(course)
        state.materials = await self._search_state(course)
        note_passage = None
        if booking.notes.strip():
            found = await self._retrieve(
                course, " ".join(x for x in (booking.notes, booking.title) if x.strip()), 3
            )
            note_passage = next((p for p in found if p.source not in {c.source for c in chosen}), None)
        state.context_sources = [p.source for p in ([note_passage] if note_passage else []) + chosen]
        if booking.notes.strip():
            heard = await self._hear(course, booking.notes, None)
            obs = reading.read(booking.notes, course, answering=None, heard=heard, from_notes=True)
            if obs.guard == "ok":
                policy.update(state, course, obs, self._today(course))
        state.prompt = [
            {"role": "system", "content": system},
            {"role": "user", "content": prompt.booking_turn(booking, note_passage)},
        ]
        log.info(
            "interview_prepared",
            course=course.slug,
            passages=len(chosen) + (note_passage is not None),
            system_tokens=prompt.estimate_tokens(system),
        )

    async def course_prompt(self, course: Course) -> tuple[str, list[Passage]]:
        """The course's system prompt (the same for all its students while the index is unchanged)."""
        passages = await self._retrieve(course, prompt.course_query(course), 4)
        chosen = prompt.choose_passages(course, passages)
        return prompt.system_prompt(course, chosen), chosen

    async def warm_course(self, system: str) -> bool:
        """Put a course's system prompt (``course_prompt``) into the server's prompt cache.

        Takes a generation slot only if one is free now (a busy server reads it with the next student
        anyway). Never raises; True when the server answered.
        """
        return await self._warm([PromptMessage("system", system), PromptMessage("user", "[Warm-up.]")])

    def opening(self, state: InterviewState, course: Course, booking: Booking) -> str:
        """The first assistant message (greeting + first question): deterministic, instant, no model.

        Appended to ``state.messages`` and ``state.prompt``; calling it again returns the same text.
        """
        if state.messages and state.messages[0].role == "assistant":
            return state.messages[0].text
        text = wording.opening(course, booking, state.facts, self._today(course))
        state.messages.append(ChatMessage("assistant", text))
        state.prompt.append({"role": "assistant", "content": text})
        state.asked.append("issue")
        return text

    async def warm(self, state: InterviewState) -> None:
        """Send ``state.prompt`` with ``max_tokens=1`` so the server's prompt cache holds the prefix.

        Never raises: a failed warm-up only costs latency on the first answer.
        """
        await self._warm(prompt.messages(state.prompt))

    async def _warm(self, sent: Sequence[PromptMessage]) -> bool:
        try:
            async with self._slot() as positions:
                async for _ in positions:
                    log.info("interview_warm_skipped")  # the line is busy: no extra work for the server
                    return False
                with calling("warm_up"):
                    await asyncio.wait_for(
                        self.model.complete(sent, max_tokens=1), self.settings.inference_timeout_s
                    )
                return True
        except Exception as exc:
            log.warning("interview_warm_failed", error=type(exc).__name__)
            return False

    def resume(self, state: InterviewState, course: Course, booking: Booking) -> str:
        """After staff hand a taken-over chat back: the policy's question for what is still missing (the
        template, no model), recorded like a turn so the next prompt extends this one. Facts, asked slots
        and flags stay as they were: the interview goes on, it never starts again."""
        decision = policy.decide(
            state, course, min_turns=self.settings.min_turns, max_turns=self.settings.max_turns
        )
        slot = decision.slot if decision.action == "ask" and decision.slot else "recap"
        variant = decision.variant if decision.action == "ask" else 0
        state.asked.append(slot)
        question = wording.question(slot, course, booking, state.facts, self._today(course), variant)
        reply = f"Thanks for waiting, I am back to help you get ready. {question}"
        self._record(state, _GUARD_NOTES["handed_back"], reply)
        log.info("interview_resumed", turn=state.turn, slot=slot)
        return reply

    # ------------------------------------------------------------ turns

    async def turn(
        self, state: InterviewState, course: Course, booking: Booking, text: str
    ) -> AsyncIterator[str | Queued | TurnOutcome]:
        """Handle one student message: understand once, decide once, word once, check once.

        Yields reply pieces (``Queued`` places in line while waiting for the model), then exactly one
        ``TurnOutcome``. Mutates ``state``.
        """
        text = text.strip()[: self.settings.max_message_chars]
        today = self._today(course)
        pending = state.asked[-1] if state.asked else None
        state.messages.append(ChatMessage("student", text))
        heard = await self._hear(course, text, pending, state.facts.stuck_on)
        obs = reading.read(text, course, answering=pending, heard=heard)
        check_ins = state.asked.count("wellbeing")
        if obs.guard == "check_in" and check_ins and not self._persists(obs, heard):
            obs = msgspec.structs.replace(obs, guard="ok", rule="")  # they said they are okay: a weak sign
        if obs.guard == "check_in" and check_ins < MAX_CHECK_INS:
            # asked again (once) when a student who said they were okay shows another uncertain sign:
            # an anxious student is not escalated for being anxious twice, and a "not really" still is
            policy.update(state, course, obs, today)  # what they said still counts if they are fine
            state.asked.append("wellbeing")
            reply = wording.check_in(course, again=check_ins > 0)
            self._record(state, _GUARD_NOTES["check_in"], reply)
            log.info("interview_checked_in", turn=state.turn)
            yield reply
            yield TurnOutcome(status="active", reply=reply, finished=False)
            return
        if obs.guard == "check_in":  # an uncertain sign past every check-in: escalate if it is not weak
            persists = obs.rule == "classifier" and self._persists(obs, heard)
            obs = msgspec.structs.replace(
                obs, guard="distress" if persists else "ok", rule="second_signal" if persists else ""
            )
        if obs.guard == "distress":
            state.flags = msgspec.structs.replace(state.flags, distress=True, escalated_to_human=True)
            reply = guardrails.support_reply(course)
            self._record(state, _GUARD_NOTES["distress"], reply)
            log.warning("interview_escalated", turn=state.turn, rule=obs.rule)
            yield reply
            yield TurnOutcome(status="escalated", reply=reply, finished=True)
            return
        if obs.guard == "off_topic":
            state.flags = msgspec.structs.replace(state.flags, off_topic=True)
        person = obs.guard == "person"
        if person:  # the chat goes on; the staff are told (chat.py, on the flag or a new request)
            state.flags = msgspec.structs.replace(state.flags, escalated_to_human=True)
        before = (state.facts.assignment, state.facts.topic)
        policy.update(state, course, obs, today)
        focus_changed = before != (state.facts.assignment, state.facts.topic)
        decision = policy.decide(
            state, course, min_turns=self.settings.min_turns, max_turns=self.settings.max_turns
        )
        if decision.action == "finish":
            reply = wording.closing(course, booking, corrected=state.facts.corrected)
            note = _GUARD_NOTES.get(obs.guard) or prompt.student_turn(
                obs.clean_text or text, "[Thank them; the interview is over.]"
            )
            self._record(state, note, reply)
            log.info("interview_completed", turn=state.turn, retries=state.model_retries)
            yield reply
            yield TurnOutcome(status="complete", reply=reply, finished=True, asked_for_person=person)
            return
        assert decision.slot is not None
        slot, variant = decision.slot, decision.variant
        state.asked.append(slot)
        fallback = wording.question(slot, course, booking, state.facts, today, variant)
        if obs.guard != "ok" or slot in _TEMPLATE_ONLY or slot.startswith("q:"):
            times = sum(1 for m in state.prompt if m["content"] == _GUARD_NOTES.get(obs.guard))
            reply = (
                guardrails.guard_reply(obs.guard, course, fallback, times, self._links(obs.guard, booking))
                if obs.guard != "ok"
                else fallback
            )
            note = _GUARD_NOTES.get(obs.guard) or prompt.student_turn(obs.clean_text or text, f"[{slot}]")
            self._record(state, note, reply)
            log.info("interview_templated", turn=state.turn, kind=obs.guard, rule=obs.rule, slot=slot)
            yield reply
            yield TurnOutcome(status="active", reply=reply, finished=False, asked_for_person=person)
            return
        material = self._late_context(state, heard) if focus_changed else None
        steer = wording.instruction(slot, course, booking, state.facts, today, variant)
        user = prompt.student_turn(obs.clean_text or text, steer, material)
        pieces: list[str] = []
        aim = wording.aim_question(slot, variant)
        questions = (fallback, aim) if aim else (fallback,)
        async for piece in self._ask_model(state, user, slot, questions, course):
            if isinstance(piece, str):
                pieces.append(piece)
            yield piece
        reply = "".join(pieces)
        self._record(state, user, reply)
        log.info("interview_turn", turn=state.turn, slot=slot, variant=variant, retries=state.model_retries)
        yield TurnOutcome(status="active", reply=reply, finished=False, asked_for_person=person)

    @staticmethod
    def _persists(obs: reading.Observation, heard: reading.Heard) -> bool:
        """A sign that still counts after the student said they are okay: a rule's, or the classifier's
        at ``PERSISTENT_SIGNAL`` or more."""
        if obs.rule != "classifier":
            return True
        return heard.understanding is None or heard.understanding.intents.distress >= PERSISTENT_SIGNAL

    def _links(self, guard: str, booking: Booking) -> tuple[str, str] | None:
        """The booking's own reschedule and cancel pages, for a student who asks to move or cancel."""
        if guard != "reschedule" or not booking.uid:
            return None
        return guardrails.booking_links(self.settings.calcom_web_url, booking.uid)

    async def _hear(
        self, course: Course, text: str, pending: str | None, stuck_so_far: str | None = None
    ) -> reading.Heard:
        """The I/O half of reading a message: classifier, course map and chunk retrieval, each optional."""
        if not text.strip():
            return reading.Heard()
        understanding = similarity = None
        if self.reader is not None:
            try:
                understanding = await asyncio.to_thread(self.reader.understand, text)
                if "distress" in understanding.sure:
                    return reading.Heard(understanding=understanding)
                similarity = await asyncio.to_thread(self.reader.similarity, course, text)
            except Exception as exc:  # the rules still run; a broken classifier must not stop the chat
                log.warning("interview_reader_failed", error=type(exc).__name__)
        passages: list[Passage] = []
        if pending not in {"attempts", "goal", "deadline", "recap"} and len(text.split()) >= 3:
            query = f"{clip(text, 300)} {clip(stuck_so_far or '', 150)}".strip()  # the stuck point so far
            passages = await self._retrieve(course, query, 3)
        return reading.Heard(understanding=understanding, passages=passages, similarity=similarity)

    def _record(self, state: InterviewState, user: str, reply: str) -> None:
        """Append the exact user message sent and the reply shown: the next prompt extends this one."""
        state.prompt.append({"role": "user", "content": user})
        state.prompt.append({"role": "assistant", "content": reply})
        state.messages.append(ChatMessage("assistant", reply))

    async def _ask_model(
        self, state: InterviewState, user: str, slot: str, questions: Sequence[str], course: Course
    ) -> AsyncIterator[str | Queued]:
        """Stream a checked model question word by word; pieces always add up to the final reply.

        Words are shown once the prefix checks (``guardrails.PrefixGuard``) let them go, so a problem
        they find is never on screen: the reply then ends with what was shown and the policy's question.
        At the question mark ``check_reply`` judges the whole reply: if nothing of the question was
        shown yet, a failed reply is retried once (greedy, only when the first try was quick) or replaced
        by the policy's question; once the question is partly on screen it is kept (logged).
        """
        sent = prompt.messages([*state.prompt, {"role": "user", "content": user}])
        system = prompt.hidden_context(state.prompt)  # the system prompt and every course snippet sent
        previous = [m.text for m in state.messages if m.role == "assistant"]
        guard = guardrails.PrefixGuard(
            system_prompt=system,
            previous=previous,
            slot=slot,
            course=course,
            assignment=state.facts.assignment,
            given="\n".join(m.content for m in sent),
            questions=questions,
        )
        fallback = questions[0]
        released = ""
        async with self._slot() as positions:
            try:
                async for position in positions:
                    yield Queued(position)
            except LineTimeout:  # the line is too long for the model to answer in time: the policy asks
                log.info("interview_reply_rejected", attempt=0, problems=["line_timeout"], slot=slot)
                yield fallback
                return
            started = time.monotonic()

            def end_checks(reply: str, released: str) -> list[str]:
                """The finished reply's checks, after what earlier attempts left on screen."""
                return guardrails.check_reply(
                    _join(released, reply),
                    system_prompt=system,
                    previous=previous,
                    slot=slot,
                    course=course,
                    assignment=state.facts.assignment,
                )

            for attempt_no in range(2):
                if attempt_no and time.monotonic() - started > RETRY_BUDGET_S:
                    break  # a slow model's retry would keep the student waiting: the template is instant
                attempt = _Attempt()
                async for piece in self._stream_attempt(
                    sent, attempt, guard, show=attempt_no == 0, greedy=attempt_no > 0
                ):
                    yield piece
                text = attempt.text if attempt_no == 0 else question_text(attempt.text)
                hard = attempt.problems or guard.check(text).problems
                problems = hard or end_checks(text, released)
                if not problems:
                    yield _lead(released, text) if attempt_no else text[len(attempt.released) :].rstrip()
                    return
                if attempt.mid_sentence:  # cannot be taken back: go on from what is on screen

                    def acceptable(reply: str, released: str = released) -> bool:
                        return not guard.check(reply).problems and not end_checks(reply, released)

                    yield self._finish_shown(
                        attempt, text, hard, problems, questions, slot, course, acceptable
                    )
                    return
                released += attempt.released
                state.model_retries += 1
                log.info("interview_reply_rejected", attempt=attempt_no, problems=problems, slot=slot)
        yield _lead(released, fallback)

    def _finish_shown(
        self,
        attempt: _Attempt,
        text: str,
        hard: list[str],
        problems: list[str],
        questions: Sequence[str],
        slot: str,
        course: Course,
        acceptable: Callable[[str], bool],
    ) -> str:
        """The rest of a reply whose unfinished sentence is already on screen. ``questions``: the policy's
        question, then any other question of ours the model was steered by."""
        log.info("interview_reply_kept", problems=problems, hard=bool(hard), slot=slot)
        if (ours := _our_rest(attempt.released, questions)) is not None:
            return ours  # a copy of our question on screen (where it turned away was held): ours ends it
        if hard:  # the checked words stay; what failed never shows, the policy asks instead
            return self._go_on(attempt.released, questions, course, acceptable)
        rest = text[len(attempt.released) :].rstrip()
        if "?" in text:
            return rest  # a question the end checks did not like, but it passed every prefix check
        if _SENTENCE_END.search(text):
            return f"{rest} {questions[0]}"
        return rest + self._go_on(text, questions, course, acceptable)  # stopped without a question

    @staticmethod
    def _go_on(
        shown: str, questions: Sequence[str], course: Course, acceptable: Callable[[str], bool]
    ) -> str:
        """What follows an unfinished sentence on screen to end the reply with one question, never the
        same words twice: the rest of one of our ``questions`` (the policy's first) when the screen shows
        its start; the model's own question closed where it named the work ("What confuses you about
        Lab 5: Loop Patterns" + " in particular?") when that passes the reply checks; else "… " and the
        policy's question."""
        if (rest := _our_rest(shown, questions)) is not None:
            return rest
        names = [a.title for a in course.assignments] + [t.title for t in course.topics]
        closing = _closed_at_name(shown, names)
        if closing and acceptable(shown + closing):
            return closing
        return f"… {questions[0]}"

    async def _stream_attempt(
        self,
        sent: Sequence[PromptMessage],
        attempt: _Attempt,
        guard: guardrails.PrefixGuard,
        *,
        show: bool,
        greedy: bool,
    ) -> AsyncIterator[str]:
        """Read one model reply up to its first '?', yielding (with ``show``) what the prefix checks allow."""
        buffer = ""
        try:
            async with asyncio.timeout(self.settings.inference_timeout_s):
                stream = self._open_stream(sent, greedy)
                cut = False
                try:
                    async for piece in stream:
                        buffer = (buffer + piece).lstrip()
                        if "?" in buffer:
                            attempt.text = _cut_question(buffer)
                            if guard.check(attempt.text).problems == ["wrong_assignment"]:
                                attempt.text = (
                                    guard.repair(attempt.text, len(attempt.released)) or attempt.text
                                )
                            cut = True
                            return
                        release = guard.check(buffer)
                        repaired = (
                            guard.repair(buffer, len(attempt.released))
                            if release.problems == ["wrong_assignment"]
                            else None
                        )
                        if repaired is not None:
                            buffer = repaired  # the wrong name was never shown: the right one instead
                            release = guard.check(buffer)
                        if release.problems:
                            attempt.problems = release.problems
                            break
                        if show and release.safe > len(attempt.released):
                            out = buffer[len(attempt.released) : release.safe]
                            attempt.released += out
                            yield out
                finally:
                    await self._close(stream, drain=cut)
            attempt.text = buffer
        except Exception as exc:
            attempt.text = attempt.text or buffer
            attempt.problems = [f"model_error:{type(exc).__name__}"]
            log.warning("interview_model_failed", error=type(exc).__name__)

    async def _close(self, stream: AsyncIterator[str], *, drain: bool) -> None:
        """Close the model stream; after a good cut, let the server finish the reply in the background.

        mlx_lm.server stores a conversation in its prompt cache only when the generation ends by itself
        (a closed connection drops it), so reading the few tokens after the '?' lets the next turn read
        only the student's new message. The drain has its own short deadline and never holds the turn.
        """
        generator = cast(AsyncGenerator[str, None], stream)
        if not drain or self.drain_s <= 0:
            await generator.aclose()
            return
        _drains.add(task := asyncio.create_task(_drain(generator, self.drain_s)))
        task.add_done_callback(_drains.discard)

    def _slot(self) -> AbstractAsyncContextManager[AsyncIterator[int]]:
        return self.slots.acquire() if self.slots is not None else _no_line()

    def _open_stream(self, sent: Sequence[PromptMessage], greedy: bool) -> AsyncIterator[str]:
        with calling("interview_retry" if greedy else "interview_question"):
            return self._started_stream(sent, greedy)

    def _started_stream(self, sent: Sequence[PromptMessage], greedy: bool) -> AsyncIterator[str]:
        max_tokens, stop = self.settings.reply_max_tokens, prompt.STOP
        if greedy:
            try:  # adapters that support it (OpenAIChatModel) retry with temperature 0
                return self.model.stream(sent, max_tokens=max_tokens, stop=stop, temperature=0.0)  # type: ignore[call-arg]
            except TypeError:
                pass
        return self.model.stream(sent, max_tokens=max_tokens, stop=stop)

    def _late_context(self, state: InterviewState, heard: reading.Heard) -> str | None:
        """Once the assignment or topic becomes clear, one fresh passage rides along in the steer."""
        if len(state.context_sources) >= MAX_CONTEXT_SOURCES:
            return None
        fresh = next((p for p in heard.passages if p.source not in state.context_sources), None)
        if not fresh:
            return None
        state.context_sources.append(fresh.source)
        return prompt.snippet(fresh, 40)

    async def _search_state(self, course: Course) -> SearchState:
        """How the course could be searched just now; a retriever that cannot tell is taken at its word."""
        if not isinstance(self.retriever, SearchHealth):
            return "ok"
        try:
            return await asyncio.to_thread(self.retriever.search_state, course.slug)
        except Exception:
            return "unavailable"

    async def _retrieve(self, course: Course, query: str, k: int) -> list[Passage]:
        if not self.retriever:
            return []
        try:
            return await asyncio.to_thread(self.retriever.retrieve, course.slug, query, k)
        except Exception as exc:
            log.warning("interview_retrieval_failed", course=course.slug, error=type(exc).__name__)
            return []

    # ------------------------------------------------------------ summary

    async def summarize(
        self,
        state: InterviewState,
        course: Course,
        booking: Booking,
        status: SummaryStatus,
        transcript_url: str,
    ) -> Summary:
        """Model-drafted free text over the facts summary, validated and repaired. Never raises.

        The request is appended to the interview prompt, so the server's cache already holds almost
        all of it. Structured fields always come from the policy. Each unusable field is re-asked
        once (one extra call for all of them), then falls back to the facts-based text.
        """
        base = draft_summary(state, course, booking, status, transcript_url)
        if status in {"no_intake", "escalated"} or state.turn == 0 or not state.prompt:
            return base
        try:
            return await asyncio.wait_for(
                self._drafted(state, course, booking, base), 2 * self.settings.inference_timeout_s
            )
        except Exception as exc:
            log.warning("summary_draft_failed", error=type(exc).__name__)
            return base

    async def _drafted(
        self, state: InterviewState, course: Course, booking: Booking, base: Summary
    ) -> Summary:
        """The model's polish of the free text, sentence by sentence: each sentence it writes is checked
        against the intake's evidence, and a field left with too few usable sentences keeps the composed
        text. Fields that failed are re-asked once (one extra call for all of them)."""
        others = [c for c in self.courses if c.slug != course.slug]  # their vocabulary is refused
        proof = summary.evidence_for(state, course, booking, base, others)
        sent = prompt.messages([*state.prompt, {"role": "user", "content": prompt.SUMMARY_REQUEST}])
        with calling("summary_draft"):
            text = await self._complete_json(sent)
        usable = summary.usable_fields(summary.parse_draft(text), proof, state, course, base)
        missing = [f for f in summary.draftable(state) if f not in usable]
        if missing:
            state.model_retries += 1
            retry = [
                *sent,
                PromptMessage("assistant", text),
                PromptMessage("user", prompt.summary_retry(missing)),
            ]
            with calling("summary_retry"):
                redrafted = await self._complete_json(retry)
            again = summary.usable_fields(summary.parse_draft(redrafted), proof, state, course, base)
            usable |= {f: again[f] for f in missing if f in again}
        log.info("summary_drafted", model_fields=len(usable), retries=state.model_retries)
        return summary.merge(base, usable)

    async def _complete_json(self, sent: Sequence[PromptMessage]) -> str:
        """A draft that ends at its closing brace: the free-text object has no nested braces, and a small
        model tends to keep talking after it, at a tenth of a second per token on a CPU."""
        text = await self.model.complete(
            sent, max_tokens=self.settings.summary_max_tokens, stop=(*prompt.STOP[:2], "}")
        )
        text = text or ""
        return text if text.rstrip().endswith("}") else text + "}"


# The deterministic summary from the policy's facts only (no model): instant and always valid. Used at the
# end of the interview before the model draft, and for partial / no_intake summaries.
draft_summary = summary.build_summary


@asynccontextmanager
async def _no_line() -> AsyncIterator[AsyncIterator[int]]:
    yield _nothing()


async def _nothing() -> AsyncIterator[int]:
    return
    yield  # an async generator that yields nothing


def _cut_question(text: str) -> str:
    """Everything up to and including the first '?' (one question only; the rest is never shown)."""
    return text[: text.index("?") + 1].strip()


def _lead(before: str, text: str) -> str:
    """``text`` with a separating space when something was already released (and did not end with one)."""
    if before and not before[-1].isspace() and text.strip():
        return f" {text.strip()}"
    return text.strip()


async def _drain(generator: AsyncGenerator[str, None], deadline_s: float) -> None:
    """Read a model stream to its end (or the deadline), then close it; never raises."""
    try:
        async with asyncio.timeout(deadline_s):
            async for _ in generator:
                pass
    except Exception as exc:
        log.debug("interview_drain_stopped", error=type(exc).__name__)
    finally:
        await generator.aclose()


def _join(before: str, text: str) -> str:
    return before + _lead(before, text)
