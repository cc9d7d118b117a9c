"""Wording: the policy's own question for every slot, the steer sent to the model, greeting, recap, closing.

Templates name what is already known (the assignment, the topic, the course section) so the student can
tell the bot listened; the model only rephrases them, and they are used as they are when it fails.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from services.coursepack import Assignment, Course
from services.gateway.intake import dates
from services.gateway.intake.models import Booking, Facts
from services.gateway.intake.policy import AGAIN, DEEPER
from services.gateway.intake.text import (
    LEADING_FILLER,
    clause_prefix,
    clip,
    content_words,
    first_name,
    sentences,
    without_disclaimer,
)

RECAP_CUE = "Did I get that right"  # public: the recap is the message that contains this phrase


def subject(facts: Facts, course: Course) -> str:
    """How to name what the student is working on: the assignment's title, else the topic's, else generic."""
    if facts.assignment and (a := course.assignment(facts.assignment)):
        return a.title
    if facts.topic and (t := course.topic(facts.topic)):
        return t.title.lower() if not t.title.isupper() else t.title
    return "this"


def _section_name(facts: Facts) -> str | None:
    """A short name for the matched course section, quoted; long error-pattern headings read badly."""
    section = facts.section
    if not section:
        return None
    for name in (section.heading, section.title):
        if name and len(name.split()) <= 6:
            bare = name.strip().strip("\"“”'").rstrip(".:?")  # a heading that is itself a quote
            return f"“{bare}”"
    return None


def _section_place(facts: Facts, course: Course) -> str | None:
    """Where the matched section is, for a question: "“Tie-breaking” in the course notes", "“Problem 2”
    on the Problem Set 4 sheet"; None for the syllabus, or a sheet as a whole (the question names the
    assignment already)."""
    section, name = facts.section, _section_name(facts)
    if not section or not name:
        return None
    sheet = next((a for a in course.assignments if a.file == section.source), None)
    if sheet:
        own = section.heading and section.heading.strip().lower() != sheet.title.strip().lower()
        return f"{name} on the {sheet.title} sheet" if own else None
    if "/" not in section.source:
        return None  # syllabus.md and other top-level files: the schedule, not course material
    return f"{name} in the course notes"


def upcoming_assignments(course: Course, today: dt.date, n: int = 2) -> list[Assignment]:
    """The next ``n`` assignments by due date (the ones a student most likely means)."""
    dated = sorted(
        (a for a in course.assignments if a.due_date and a.due_date >= today),
        key=lambda a: a.due_date or today,
    )
    rest = [a for a in course.assignments if a not in dated]
    return (dated + rest)[:n]


def _topic_choices(course: Course, facts: Facts) -> list[str]:
    assignment = course.assignment(facts.assignment) if facts.assignment else None
    ids = assignment.topics if assignment and assignment.topics else [t.id for t in course.topics]
    return [t.title for i in ids[:3] if (t := course.topic(i))]


def or_list(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]


def _titles(course: Course, ids: Sequence[str]) -> list[str]:
    return [a.title for i in ids if (a := course.assignment(i))]


def question(
    slot: str, course: Course, booking: Booking, facts: Facts, today: dt.date, variant: int = 0
) -> str:
    """The policy's own question for a slot: used when the model's phrasing fails validation."""
    what = subject(facts, course)
    on = f" on {what}" if what != "this" else ""
    section = _section_place(facts, course)
    instructor = course.instructor_name
    if slot.startswith("q:"):
        asked = next((q.ask for q in course.questions if q.id == slot[2:]), "Can you tell me a bit more?")
        return (
            asked
            if variant != AGAIN
            else "No problem if you're unsure: what do you see on your side, roughly?"
        )
    if slot == "recap":
        return recap(course, facts, today)
    choices = [a.title for a in upcoming_assignments(course, today)]
    templates: dict[str, tuple[str, str]] = {
        "issue": (
            "What would you like help with?",
            "In a few words, what do you want to work on in the meeting?",
        ),
        "assignment": (
            f"Is this for one of the assignments, like {or_list(choices)}, or something else?"
            if choices
            else "Is this for a specific assignment?",
            "Which assignment or part of the course is this about?",
        ),
        "which_assignment": (
            f"Just to be sure: is this mainly about {or_list(_titles(course, facts.ambiguous))}?",
            f"Which one is the meeting about: {or_list(_titles(course, facts.ambiguous))}?",
        ),
        "stuck_on": (
            f"Thinking of {section}, which step is giving you the most trouble?"
            if section and facts.stuck_on
            else f"Which part of {what} is giving you the most trouble?"
            if what != "this"
            else "Which part exactly is giving you the most trouble?",
            f"Can you describe the exact spot{on} where you get stuck?",
        ),
        "topic": (
            f"Which of these is it closest to: {or_list(_topic_choices(course, facts))}?"
            if _topic_choices(course, facts)
            else "Which part of the course does this relate to?",
            "Which part of the course does this relate to?",
        ),
        "attempts": (
            f"What have you tried so far{on}?",
            "What have you already done to work on it, even if it did not help?",
        ),
        "goal": (
            f"What would you like to get out of your meeting with {instructor}?",
            "What would make the meeting a success for you?",
        ),
        "deadline": (
            f"When is {what} due for you?" if facts.assignment else "When is it due?",
            "Is there a deadline coming up for this?",
        ),
        "example": (
            f"Could you share one short example of where you get stuck{on}, like a line, a step or an error?",
            "Can you paste one short piece that shows the problem?",
        ),
        "anything_else": (
            f"Is there anything else {instructor} should know before the meeting?",
            "Anything else you want to add before I pass this on?",
        ),
    }
    first, second = templates[slot]
    if slot == "stuck_on" and variant == DEEPER and not section:
        return f"Of what you described{on}, which exact step, line or idea gives you the most trouble?"
    return second if variant == AGAIN else first


# The deeper stuck-point steer, and the same ask as a question to the student: the small model often opens
# its question with the steer's words ("Which exact step or idea ..."), and a copy that goes wrong is
# completed with this question's rest
_DEEPER_ASK = "which exact step or idea in what {0} described is hardest for {1}"
DEEPER_AIM = f"Ask {_DEEPER_ASK.format('they', 'them')}."
DEEPER_AIM_QUESTION = f"{_DEEPER_ASK.format('you', 'you').capitalize()}?"


def aim_question(slot: str, variant: int) -> str | None:
    """The turn's steer as a question to the student, when the model tends to copy the steer's words."""
    return DEEPER_AIM_QUESTION if slot == "stuck_on" and variant == DEEPER else None


def instruction(
    slot: str, course: Course, booking: Booking, facts: Facts, today: dt.date, variant: int = 0
) -> str:
    """The short bracketed steer appended to the student's message; it stays in the stored prompt."""
    what = subject(facts, course)
    aims = {
        "issue": "Ask what they want help with.",
        "assignment": "Ask which assignment this is for.",
        "which_assignment": "Ask which of the two assignments it is.",
        "stuck_on": DEEPER_AIM
        if variant == DEEPER
        else f"Ask which part of {what} is hardest for them."
        if what != "this"
        else "Ask where exactly they get stuck.",
        "topic": "Ask which part of the course this relates to.",
        "attempts": "Ask what they have already tried.",
        "goal": "Ask what they want to get from the meeting.",
        "deadline": "Ask when it is due.",
        "example": "Ask for a short example of where they get stuck.",
        "anything_else": f"Ask if {course.instructor_name} should know anything else.",
    }
    aim = aims.get(slot, "Ask the course's question.")
    again = "They did not answer: ask again, more simply. " if variant == AGAIN else ""
    example = question(slot, course, booking, facts, today, variant)
    return f'[{again}{aim} One short question, e.g. "{example}" Do not solve anything.]'


def opening(course: Course, booking: Booking, facts: Facts, today: dt.date) -> str:
    """Greeting + first question: instant and deterministic, it also tells the student what this is."""
    name = first_name(booking.student.name)
    hello = f"Hi {name}! " if name else "Hi! "
    intro = (
        f"I'll ask a few short questions so {course.instructor_name} can prepare for your "
        f"{course.code} meeting."
    )
    if facts.assignment and (a := course.assignment(facts.assignment)):
        ask = f"What would you like help with on {a.title}?"
    else:
        ask = "What would you like help with?"
    return f"{hello}{intro} {ask}"


_PRONOUNS = (
    (r"\bI'm\b", "you're"),
    (r"\bI am\b", "you are"),
    (r"\bI was\b", "you were"),
    (r"\bI wasn'?t\b", "you weren't"),
    (r"\bI've\b", "you've"),
    (r"\bI'd\b", "you'd"),
    (r"\bI'll\b", "you'll"),
    (r"\bI\b", "you"),
    (r"\bmy\b", "your"),
    (r"\bme\b", "you"),
    (r"\bmyself\b", "yourself"),
    (r"\bmine\b", "yours"),
    (r"\bwas\b(?= stuck| confused| lost)", "were"),
)


def second_person(text: str) -> str:
    """The student's sentence as the bot says it back: "I'm lost on my loop" -> "you're lost on your loop"."""
    out = text
    for pattern, repl in _PRONOUNS:
        out = re.sub(pattern, repl, out, flags=re.I)
    return out


# Words that make a sentence the telling one to say back (broader than the reading's stuck cue: "wrong",
# "error" and "problem" mark the sentence worth repeating, not which slot it fills).
_TELLING = re.compile(
    r"\b(?:stuck|confus\w*|don'?t (?:understand|get|know)|not sure|can'?t|cannot|wrong|error|fails?|"
    r"problem(?!\s*\d)|trouble|hard|lost)\b",
    re.I,
)


def _short(text: str | None, limit: int = 150) -> str | None:
    """The most telling sentence of a fact, said back in the second person; a long one is shortened to
    its first whole clauses, not cut mid-phrase ("… different answers every…")."""
    if not text:
        return None
    parts = [without_disclaimer(s) or s for s in sentences(text)] or [text]  # "not for the lab, just ..."
    first = max(parts, key=lambda s: (bool(_TELLING.search(s)), min(len(s.split()), 18)))
    first = LEADING_FILLER.sub("", first)
    return _whole_clauses(second_person(first.rstrip(".!")), limit)


_LEADING_LINK = re.compile(r"^(?:and\s+)?(?:but|because|so|then|whereas)?\s*", re.I)
_CLAUSE_BREAK = re.compile(r"(?<=[,;:])\s+|\s+(?=(?:but|because|so|and then|which|whereas)\b)", re.I)


def _whole_clauses(text: str, limit: int) -> str:
    """``text`` when it fits; else as many of its first clauses as fit, when they make at least half of
    ``limit`` and leave no trouble out (the story before "I don't know if ..." is not the stuck point);
    else the first clause that names the trouble in three content words or more ("but that can't be
    right" says too little); else those first clauses when they make a third of ``limit``, trouble
    included; else cut on a word with a mark."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    kept = clause_prefix(text, limit)
    complete = bool(_TELLING.search(kept)) or not _TELLING.search(text)  # the trouble is not left out
    if len(kept) >= limit // 2 and complete:
        return kept
    telling = next(
        (
            c
            for c in _CLAUSE_BREAK.split(text)
            if _TELLING.search(c)
            and len(c) <= limit
            and len(content_words(c)) >= 3
            and not c.lower().startswith("which")  # "which is higher than ..." needs what came before
        ),
        None,
    )
    if telling:
        return _LEADING_LINK.sub("", telling).rstrip(",;: ")
    if len(kept) >= limit // 3 and complete:
        return kept
    return clip(text, limit)


def recap(course: Course, facts: Facts, today: dt.date) -> str:
    """A plain-language recap for the student (never the professor-only fields), ending in one question."""
    parts = []
    assignment = course.assignment(facts.assignment) if facts.assignment else None
    if assignment:
        due = dates.due_date(facts, course)
        parts.append(f"you're working on {assignment.title}" + (f" (due {due:%b %-d})" if due else ""))
    elif facts.topic and (topic := course.topic(facts.topic)):
        parts.append(f"this is about {topic.title}")
    if stuck := _short(facts.stuck_on):
        parts.append(f"the hard part: {stuck}")
    if goal := _short(facts.goal, 90):
        parts.append(f"from the meeting: {goal}")
    body = "; ".join(parts) if parts else "you'd like help in the meeting"
    return f"Here's what I'll pass on to {course.instructor_name}: {body}. {RECAP_CUE}, or is there something to fix?"


def check_in(course: Course, *, again: bool = False) -> str:
    """Asked when a message might be distress but nothing is sure: the answer decides. ``again``: the
    student said they were okay, and a later message showed another uncertain sign."""
    if again:
        return (
            "Thanks for bearing with me. I want to check once more, because it matters: "
            "are you safe right now?"
        )
    return "That sounds like a lot to carry. Before we go on: are you feeling okay and safe right now?"


def closing(course: Course, booking: Booking, *, corrected: bool = False) -> str:
    """The last message: no question, tells the student what happens next."""
    name = first_name(booking.student.name)
    thanks = f"Thank you, {name}!" if name else "Thank you!"
    fixed = " I've updated the summary with your correction." if corrected else ""
    return (
        f"{thanks}{fixed} That gives {course.instructor_name} a clear picture. I'll send a short summary "
        "before your meeting, so you can start right away. See you there!"
    )
