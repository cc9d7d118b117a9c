"""The dialogue policy: what is known, what to ask next, when to stop. Plain Python, no I/O.

``update`` folds one ``Observation`` (see ``reading``) into the facts; ``decide`` picks the next move.
The policy asks for what the professor needs and stops when it has it, within ``min_turns`` and
``max_turns`` student turns; its last question is always a recap the student confirms or corrects.

Slots, in the order they are usually asked::

    issue -> assignment -> stuck_on -> topic -> q:<course question> -> attempts -> goal -> deadline
          -> example -> anything_else -> recap

A filled slot is never asked again; a vague or junk answer earns one follow-up instead of counting.
Courses add their own must-ask questions (``[[questions]]`` in ``course.toml``) as ``q:<id>`` slots.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

import msgspec

from services.coursepack import Course, Question
from services.gateway.intake import dates, matching, request_kind
from services.gateway.intake.models import Booking, Facts, InterviewState, Section
from services.gateway.intake.reading import Observation
from services.gateway.intake.text import NOTHING, clip, content_words, is_confused, is_non_answer

Slot = str  # one of SLOT_ORDER, "recap", or "q:<course question id>"
SLOT_ORDER: tuple[str, ...] = (
    "issue",
    "assignment",
    "stuck_on",
    "topic",
    "custom",
    "attempts",
    "goal",
    "deadline",
    "example",
    "anything_else",
)
MAX_ASKS_PER_SLOT = 2
FIRST, AGAIN, DEEPER = 0, 1, 2  # ``Decision.variant``
VAGUE_WORDS = 4  # a stuck point with fewer content words than this gets one more, more specific ask
_FACT_CHARS = 600
# a topic the assignment's sheet does not list counts half: the course pack says which topics the work is
# about, so "the 3D plate with two cables" on a rigid-body problem set is rigid-body equilibrium even though
# the student talked mostly of unit vectors (make replay: +3 on the blind packs, -1 on eval, a proposal
# whose sheet lists only the writing topics)
OFF_SHEET_TOPIC = 0.5
SECTION_TOPIC_WEIGHT = 2.5  # course packs keep one notes file per topic, and retrieval found that file


class Decision(msgspec.Struct, frozen=True):
    """What the interviewer does next: ask ``slot``, or finish. ``variant``: ``FIRST`` ask, ``AGAIN`` (the
    slot was asked and not answered), or ``DEEPER`` (a stuck point already told, asked one step further)."""

    action: Literal["ask", "finish"]
    slot: Slot | None = None
    variant: int = 0


# ---------------------------------------------------------------- updating facts


def update(state: InterviewState, course: Course, obs: Observation, today: dt.date) -> None:
    """Fold one observation into ``state.facts``. Junk fills nothing; a recap correction overrides."""
    facts = state.facts
    if obs.guard == "distress" or obs.junk:
        return
    if obs.answering == "recap":
        facts.recap_confirmed = obs.confirms
        if obs.confirms:
            return
        facts.corrected = True
        _apply_correction(facts, obs)
    elif obs.answering == "attempts" and NOTHING.match(obs.clean_text) and not facts.attempts:
        facts.attempts = "Nothing yet."
    else:
        _add_sentences(facts, obs, course)
    if obs.answering and obs.answering.startswith("q:") and (answer := obs.said(obs.answering)):
        facts.custom = {**facts.custom, obs.answering[2:]: clip(answer, 300)}
    facts.assignment_evidence = _add(facts.assignment_evidence, obs.assignment_evidence)
    if facts.corrected and obs.answering == "recap" and (named := _named(obs.assignment_evidence)):
        # "it's for the formal report, not lab 6": the student's correction outranks whatever the chat
        # said before, however often it said it
        others = [v for k, v in facts.assignment_evidence.items() if k != named]
        facts.assignment_evidence[named] = round(max([*others, 0.0]) * 1.5 + 6.0, 3)
    restated = obs.answering == "recap" and bool(obs.said("stuck_on")) and bool(obs.topic_evidence)
    if restated:
        # "actually the part I'm stuck on is...": the recap got the stuck point wrong, so what the topic
        # was inferred from counts for half, and the notes section matched to it goes
        facts.topic_evidence = {k: round(v / 2, 3) for k, v in facts.topic_evidence.items()}
        facts.section = None
    facts.topic_evidence = _add(facts.topic_evidence, obs.topic_evidence)
    if obs.no_assignment:
        facts.no_assignment = True
    said_problem = f"{obs.said('stuck_on')} {obs.said('assignment')}"
    if obs.section and (facts.section is None or obs.said("stuck_on")) and substance(said_problem, course):
        facts.section = obs.section  # not from "just from Tuesday's seminar": that names no problem
    for sentence in [
        s for k, s in obs.sentences if k in {"deadline", "assignment", "context", "feelings"}
    ] + ([obs.clean_text] if obs.answering == "deadline" else []):
        if deadline := dates.extract_deadline(sentence, today, answering=obs.answering == "deadline"):
            facts.deadline = deadline
            break
    _resolve(state, course, today)


def _add_sentences(facts: Facts, obs: Observation, course: Course) -> None:
    if stuck := obs.said("stuck_on"):
        if obs.answering == "example" and not facts.example:
            facts.example = clip(stuck, 300)
        if facts.stuck_on and not substance(facts.stuck_on, course) and substance(stuck, course):
            # "just from Tuesday's seminar" was where the question came from; now they say what it is
            facts.context, facts.stuck_on = _join(facts.context, facts.stuck_on), None
        facts.stuck_on = _join(facts.stuck_on, stuck)
    if tried := obs.said("attempts"):
        facts.attempts = _join(facts.attempts, tried)
    if goal := obs.said("goal"):
        facts.goal = _join(facts.goal, goal)
    if context := obs.said("context"):
        facts.context = _join(facts.context, context)
    if obs.answering == "deadline" and not facts.deadline and (said := obs.said("deadline")):
        facts.deadline = clip(said, 80)


def _apply_correction(facts: Facts, obs: Observation) -> None:
    """What the student says in answer to the recap replaces what the recap got wrong."""
    if stuck := obs.said("stuck_on"):
        facts.stuck_on = clip(stuck, _FACT_CHARS)
    if goal := obs.said("goal"):
        facts.goal = clip(goal, _FACT_CHARS)
    if tried := obs.said("attempts"):
        facts.attempts = clip(tried, _FACT_CHARS)
    if obs.assignment_evidence:
        facts.ambiguous = []


def _named(evidence: dict[str, float]) -> str | None:
    """The one assignment a message names (positive evidence for it alone), if any."""
    named = [k for k, v in evidence.items() if v >= 2.0]
    return named[0] if len(named) == 1 else None


def _join(old: str | None, new: str) -> str:
    """Answers accumulate as sentences (students often skip the full stop)."""
    new = new if re.search(r"[.!?…]$", new) else new + "."
    if not old:
        return clip(new, _FACT_CHARS)
    if new in old:
        return old
    return clip(f"{old} {new}", _FACT_CHARS)


def _add(old: dict[str, float], new: dict[str, float]) -> dict[str, float]:
    out = dict(old)
    for key, value in new.items():
        out[key] = round(out.get(key, 0.0) + value, 3)
    return out


def _resolve(state: InterviewState, course: Course, today: dt.date) -> None:
    """Assignment, topic and request type from the evidence of the whole chat, not the last message."""
    facts = state.facts
    evidence = _with_due_dates(facts.assignment_evidence, course, today)
    best = matching.best_of(evidence, floor=2.0, margin=0.0)
    ranked = sorted(((v, k) for k, v in facts.assignment_evidence.items() if v > 0), reverse=True)
    if best and len(ranked) > 1 and ranked[1][0] >= 2.0 and ranked[1][0] > 0.7 * ranked[0][0]:
        facts.ambiguous = [ranked[0][1], ranked[1][1]]  # close: ask which one instead of guessing
        best = None if facts.assignment is None else facts.assignment
    elif best:
        facts.ambiguous = []
    if facts.no_assignment and (not best or facts.assignment_evidence.get(best, 0.0) < 6.0):
        # "not for an assignment": only the student's own strong naming overrides it, not a due date
        best = None
    facts.assignment = best
    if best and facts.section and _on_other_sheet(course, facts.section, best):
        facts.section = None  # a problem of another assignment's sheet is not where this student is stuck
    facts.topic = _topic(facts, course)
    about = [facts.stuck_on or "", facts.context or ""]
    if kind := request_kind.classify_request(about, facts.assignment is not None):
        facts.request_type = kind


def _on_other_sheet(course: Course, section: Section, assignment_id: str) -> bool:
    return any(a.file == section.source and a.id != assignment_id for a in course.assignments)


def _with_due_dates(evidence: dict[str, float], course: Course, today: dt.date) -> dict[str, float]:
    """Among mentioned assignments, one due soon is likelier than one due weeks ago (a mild prior)."""
    out = dict(evidence)
    for assignment_id, value in evidence.items():
        due = (a := course.assignment(assignment_id)) and a.due_date
        if value > 0 and due:
            days = (due - today).days
            out[assignment_id] = value * (1.15 if 0 <= days <= 14 else 0.8 if days < -3 else 1.0)
    return out


def _topic(facts: Facts, course: Course) -> str | None:
    """The best-evidenced topic; among equals, the assignment's own; with no clear winner, what they tried
    tips it (among the assignment's own topics when there is one)."""
    scores = dict(facts.topic_evidence)
    assignment = course.assignment(facts.assignment) if facts.assignment else None
    if assignment:
        for topic_id in assignment.topics:
            if scores.get(topic_id, 0.0) > 0:
                scores[topic_id] += 0.75
        if assignment.topics:
            scores = {t: v if t in assignment.topics else v * OFF_SHEET_TOPIC for t, v in scores.items()}
    if facts.section and (owner := _section_topic(course, facts.section)):
        scores[owner] = scores.get(owner, 0.0) + SECTION_TOPIC_WEIGHT  # the notes the stuck point matched
    best = matching.best_of(scores, floor=1.0, margin=0.25)
    if best:
        return best
    # the stuck point names no topic clearly: where they looked ("I read the Kant notes") breaks the tie,
    # at half weight, and among the assignment's own topics when it is known
    tried = matching.topic_scores(course, [matching.without_titles(course, facts.attempts or "")])
    hinted = {t: scores.get(t, 0.0) + tried.get(t, 0.0) / 2 for t in {*scores, *tried}}
    if assignment and assignment.topics:
        return max(assignment.topics, key=lambda t: hinted.get(t, 0.0))
    if best := matching.best_of(hinted, floor=1.0, margin=0.25):
        return best
    return max(scores, key=lambda t: scores[t]) if scores and max(scores.values()) > 0 else facts.topic


def _section_topic(course: Course, section: Section) -> str | None:
    """The topic of the matched section: its heading's when the heading names one (a "common errors"
    file spans topics: its "Temperature in °C in a gas law" section is about gas laws), else its file's;
    on an assignment sheet, the topic one numbered problem's own text names (none for the rest of it)."""
    if any(a.file == section.source for a in course.assignments):
        return section.topic
    by_heading = matching.topic_of_source(course, "", section.heading) if section.heading else None
    return by_heading or matching.topic_of_source(course, section.source, section.title)


# ---------------------------------------------------------------- deciding


# Words that greet or say where a question comes from, not what the problem is: "hey, this isn't for
# paper 2 or anything, just from Tuesday's seminar" or a booking note's "I'd like help with the next
# assignment" names no stuck point yet.
_PROVENANCE = frozenset(
    content_words(
        "hey hello isnt isn't it's that's anything something stuff thing things question questions help homework "
        "assignment next due booking booked appointment meeting office hours class lecture seminar week today "
        "yesterday tomorrow monday tuesday wednesday thursday friday saturday sunday"
    )
)


def substance(stuck_on: str, course: Course) -> set[str]:
    """The stuck point's words that describe the problem: not greetings, days, the kind of session or
    the names of the course's assignments."""
    return content_words(stuck_on) - _PROVENANCE - matching.assignment_words(course)


def custom_questions(facts: Facts, course: Course) -> list[Question]:
    """The course's own must-ask questions that apply to this intake and are still unanswered."""
    return [
        q for q in course.questions if q.id not in facts.custom and q.applies(facts.topic, facts.assignment)
    ]


def decide(state: InterviewState, course: Course, *, min_turns: int, max_turns: int) -> Decision:
    """Next move after the student's latest message (already in ``state.messages``)."""
    turn, facts, asked = state.turn, state.facts, state.asked
    last = asked[-1] if asked else None
    if turn >= max_turns or last == "recap":
        return Decision("finish")  # a recap is answered by a yes, a correction, or nothing worth another turn
    if turn + 1 >= max_turns:
        return Decision("ask", "recap")
    latest = next((m.text for m in reversed(state.messages) if m.role == "student"), "")
    if last and _follow_up(state, course, last, latest):
        return Decision("ask", last, variant=AGAIN)
    if facts.ambiguous and asked.count("which_assignment") == 0:
        return Decision("ask", "which_assignment")
    for slot in _candidates(facts, course):
        if _wanted(slot, state, course):
            return Decision("ask", slot, variant=_variant(slot, state, course))
    if turn + 1 >= min_turns:
        return Decision("ask", "recap")
    for filler in _FILLERS:
        if _filler_useful(filler, state, course):
            return Decision("ask", filler, variant=_variant(filler, state, course))
    return Decision("ask", "recap")


def _variant(slot: str, state: InterviewState, course: Course) -> int:
    if state.asked.count(slot):
        return AGAIN
    told = state.facts.stuck_on and len(substance(state.facts.stuck_on, course)) >= VAGUE_WORDS + 1
    return DEEPER if slot == "stuck_on" and told else FIRST


# Asked only while the interview is short of ``min_turns``: each still tells the professor something.
_FILLERS = ("example", "stuck_on", "anything_else", "deadline")


def _filler_useful(slot: str, state: InterviewState, course: Course) -> bool:
    facts, asked = state.facts, state.asked.count(slot)
    if slot == "example":
        return asked == 0 and not facts.example
    if slot == "stuck_on":
        return asked < MAX_ASKS_PER_SLOT  # one step deeper into the stuck point (names the section)
    if slot == "deadline":
        return asked == 0 and _deadline_open(facts, course)
    return asked == 0


def _deadline_open(facts: Facts, course: Course) -> bool:
    """A deadline is worth asking for only about graded work whose due date the course pack lacks."""
    return (
        not facts.deadline
        and dates.due_date(facts, course) is None
        and not facts.no_assignment
        and (
            facts.assignment is not None
            or facts.request_type in {"assignment", "exam_prep", "draft_feedback"}
        )
    )


def _candidates(facts: Facts, course: Course) -> list[str]:
    out: list[str] = []
    for slot in SLOT_ORDER:
        if slot == "custom":
            out += [f"q:{q.id}" for q in custom_questions(facts, course)]
        else:
            out.append(slot)
    return out


def _follow_up(state: InterviewState, course: Course, last: str, latest: str) -> bool:
    """A junk, empty or confused answer to a slot that is still open earns one more ask of it."""
    if state.asked.count(last) >= MAX_ASKS_PER_SLOT or last in {"anything_else", "which_assignment"}:
        return False
    if not (is_non_answer(latest) or is_confused(latest)):
        return False
    return _open(last, state, course)


def _open(slot: str, state: InterviewState, course: Course) -> bool:
    facts = state.facts
    return {
        "issue": not facts.stuck_on,
        "stuck_on": not facts.stuck_on or len(substance(facts.stuck_on, course)) < VAGUE_WORDS,
        "attempts": not facts.attempts,
        "goal": not facts.goal,
        "deadline": not facts.deadline,
        "assignment": not facts.assignment and not facts.no_assignment,
        "example": not facts.example,
        "topic": not facts.topic,
    }.get(slot, slot.startswith("q:") and slot[2:] not in facts.custom)


def _wanted(slot: str, state: InterviewState, course: Course) -> bool:
    facts, asked = state.facts, state.asked.count(slot)
    if asked >= 1:
        return False  # asked once already: follow-ups happen in ``_follow_up`` only
    if slot == "issue":
        return not facts.stuck_on
    if slot == "assignment":
        return (
            bool(course.assignments)
            and not facts.assignment
            and not facts.no_assignment
            and facts.request_type not in {"concept", "logistics"}
        )
    if slot == "stuck_on":
        return True  # once: an opening that told the stuck point gets one step deeper (``DEEPER``)
    if slot == "topic":
        return bool(course.topics) and not facts.topic and "stuck_on" in state.asked
    if slot.startswith("q:"):
        return True
    if slot == "attempts":
        return not facts.attempts
    if slot == "goal":
        return not facts.goal
    if slot == "deadline":
        return _deadline_open(facts, course)
    return False  # example, anything_else: fillers only (see ``decide``)


# ---------------------------------------------------------------- estimates for the summary


def difficulty(facts: Facts, state: InterviewState, course: Course, booking: Booking) -> int:
    """A rough 1–5: lost students and near deadlines are harder meetings to prepare."""
    score = 2
    said = " ".join(m.text for m in state.messages if m.role == "student").lower()
    if re.search(
        r"\b(?:completely|totally|really) (?:lost|confused|stuck)|no idea|don'?t understand anything|"
        r"don'?t know where to start",
        said,
    ):
        score += 1
    if not facts.attempts or (facts.attempts or "").lower().startswith("nothing"):
        score += 1
    if dates.urgency(facts, course, booking) == "high":
        score += 1
    if facts.request_type in {"logistics", "grade"}:
        score -= 1
    return max(1, min(5, score))
