"""Composed dialogue without a frontier model: simulated student turns and ideal interviewer questions.

Both come from the phrase banks in ``phrases.toml`` filled with the persona's facts and the course pack's
real assignment and topic names. The student side is reused by the evaluation harness, which has to
answer free-text questions from the model under test, hence ``slot_of_question``.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from finetune.personas import PHRASES_PATH, Persona
from services.coursepack import Course
from services.gateway.intake.wording import RECAP_CUE

# The dialogue policy's slots (services/gateway/intake/policy.py: its SLOT_ORDER, "which_assignment",
# "recap" and "q:<course question id>") plus "request_type", which only a free-text model question asks
# about (the evaluation harness meets those).
Slot = str
SLOTS: tuple[Slot, ...] = ("issue", "assignment", "stuck_on", "attempts", "goal", "deadline")
Special = Literal["off_topic", "homework", "injection", "distress"]

# Words in a question that tell which fact it asks for; checked in this order (first hit wins).
_SLOT_CUES: list[tuple[Slot, tuple[str, ...]]] = [
    ("recap", (RECAP_CUE.lower(), "is there something to fix")),
    ("which_assignment", ("just to be sure: is this mainly about", "which one is the meeting about")),
    ("deadline", ("due", "deadline", "when do you need", "how much time", "when is")),
    ("attempts", ("tried", "try so far", "have you done", "looked at", "attempted", "so far")),
    ("goal", ("leave the meeting", "leave with", "success", "most want", "hope to", "goal", "get out of")),
    ("request_type", ("kind of help", "type of help", "feedback on a draft")),
    ("assignment", ("which assignment", "what assignment", "one of your assignments", "assignment is this")),
    ("stuck_on", ("stuck", "goes wrong", "hardest", "trouble", "confus", "difficult", "part of", "paste")),
    ("example", ("example", "paste", "share one", "short sentence")),
    ("anything_else", ("anything else",)),
    ("topic", ("closest to", "part of the course", "mostly about", "topic")),
    ("issue", ("what would you like", "what do you need", "help with", "work on", "main thing")),
]


def load_phrases(path: Path = PHRASES_PATH) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def slot_of_question(text: str, course: Course | None = None) -> Slot | None:
    """The fact a free-text question most likely asks for (used when the model, not the policy, asked)."""
    lowered = text.lower()
    if course is not None:
        asked = next((q for q in course.questions if q.ask.lower() in lowered), None)
        if asked:
            return f"q:{asked.id}"
    for slot, cues in _SLOT_CUES:
        if any(cue in lowered for cue in cues):
            return slot
    return None


def words(persona: Persona, course: Course) -> dict[str, str]:
    """Placeholder values for this persona: students use keywords, the interviewer uses titles."""
    assignment = course.assignment(persona.truth.assignment) if persona.truth.assignment else None
    topic = course.topic(persona.truth.topic)
    due = dt.date.fromisoformat(persona.truth.deadline) if persona.truth.deadline else None
    titles = [a.title for a in course.assignments[:3]]
    return {
        "assignment": persona.assignment_word or f"{persona.topic_word} stuff",
        "assignment_title": assignment.title
        if assignment
        else (topic.title if topic else persona.topic_word),
        "topic": persona.topic_word,
        "topic_title": short_title(topic.title) if topic else persona.topic_word,
        "course": course.code,
        "hint": persona.hint,
        "name": persona.name.split()[0],
        "instructor": course.instructor_name,
        "assignment_list": ", ".join(titles[:-1])
        + (f" or {titles[-1]}" if len(titles) > 1 else "".join(titles)),
        "deadline": f"on {due:%A, %B} {due.day}" if due else "",
        "days": str(persona.truth.days_to_deadline or 0),
        "fix": persona.say_stuck,
    }


def short_title(title: str) -> str:
    """'Word choice: prepositions, ...' -> 'word choice': what fits inside a short question."""
    head = title.split(":")[0].strip()
    return head[0].lower() + head[1:] if head[:2] != head[:2].upper() else head


class SimulatedStudent:
    """One persona answering questions in their style; special lines (injection, distress...) on set turns."""

    def __init__(self, persona: Persona, course: Course, phrases: dict[str, Any], rng: random.Random) -> None:
        self.persona = persona
        self.rng = rng
        self.bank = phrases["student"][persona.style]
        self.phrases = phrases
        self.words = words(persona, course)
        self.turn = 0
        self.special = self._schedule()
        self.told: set[Slot] = set()
        # Some students correct the recap instead of confirming it (the gateway then updates the facts).
        self.corrects_recap = persona.style not in {"terse", "distress"} and rng.random() < 0.2

    def _schedule(self) -> dict[int, Special]:
        """Which student turn carries the style's special line (turn 1 is the opener)."""
        style = self.persona.style
        if style == "distress":
            return {self.rng.choice([3, 4, 5]): "distress"}
        if style == "injection":
            return {self.rng.choice([2, 3, 4]): "injection"}
        if style == "homework":
            return {self.rng.choice([2, 3]): "homework"}
        if style == "off_topic":
            return {self.rng.choice([3, 4]): "off_topic"}
        return {}

    def special_at(self, turn: int) -> Special | None:
        return self.special.get(turn)

    def opening(self) -> str:
        """The first message, answering the greeting's open question."""
        self.turn = 1
        self.told.add("issue")
        return self._fill(self.rng.choice(self.bank["openers"]))

    def reply(self, slot: Slot | None) -> str:
        """The next message, answering ``slot`` (or the next untold fact when the question was unclear)."""
        self.turn += 1
        special = self.special.get(self.turn)
        if special:
            return self._fill(self.rng.choice(self.bank[f"{special}_turn"]))
        if slot == "recap":
            return self._recap()
        if slot and slot.startswith("q:"):
            return self._fill(self.rng.choice(self.phrases["course_question"]["answers"]))
        if slot == "which_assignment":
            slot = "assignment"
        slot = slot or next((s for s in SLOTS if s not in self.told), None)
        if slot is None:
            return self._fill(self.rng.choice(self.bank["unknown"]))
        self.told.add(slot)
        fact = self._fact(slot)
        if self.persona.style == "terse":
            fact = _terse(fact)
        return self._fill(self.rng.choice(self.bank["frames"]).replace("{fact}", fact))

    def _recap(self) -> str:
        """Confirm the recap, or (once) correct it with the stuck point in the student's words."""
        bank = self.phrases["recap"]
        if self.corrects_recap:
            self.corrects_recap = False
            return self._fill(self.rng.choice(bank["fix"]))
        return self.rng.choice(bank["terse_yes" if self.persona.style == "terse" else "yes"])

    def _fact(self, slot: Slot) -> str:
        p, t = self.persona, self.persona.truth
        if slot == "assignment":
            if not t.assignment:
                return "it's not for one assignment, more {topic} in general"
            return self.rng.choice(["it's the {assignment}", "{assignment}", "the {assignment} one"])
        if slot == "issue":
            return p.say_stuck
        if slot == "topic":
            return self.rng.choice(["it's about {topic}", "{topic_title}", "I think {topic}"])
        if slot == "example":
            return self.rng.choice(
                [
                    "I don't have it here, but it's the {topic} part",
                    "like in my {assignment}, the {topic} part is where it goes wrong",
                ]
            )
        if slot == "anything_else":
            rest: list[Slot] = [s for s in ("goal", "attempts", "deadline") if s not in self.told]
            if rest:
                self.told.add(rest[0])
                return self._fact(rest[0])
            return self.rng.choice(["no, that's all", "nothing else, thanks", "no I think that's it"])
        if slot == "request_type":
            return self.rng.choice(self.phrases["request_says"][t.request_type])
        if slot == "stuck_on":
            return f"{p.say_stuck}, {p.hint}"
        if slot == "attempts":
            return p.say_attempts
        if slot == "goal":
            return p.say_goal
        deadlines = self.phrases["deadlines"]
        if t.days_to_deadline is None:
            return self.rng.choice(deadlines["none"])
        if t.days_to_deadline in (0, 1):
            return "it's due {deadline}, " + ("today" if t.days_to_deadline == 0 else "tomorrow")
        return self.rng.choice(deadlines["past" if t.days_to_deadline < 0 else "say"])

    def _fill(self, text: str) -> str:
        extra = {
            "tangent": self.rng.choice(self.bank.get("tangents", [""])),
            "worry": self.rng.choice(self.bank.get("worries", [""])),
            "drift": self.rng.choice(self.bank.get("drifts", [""])),
        }
        for _ in range(2):  # facts may themselves contain placeholders
            text = re.sub(r"\{(\w+)\}", lambda m: {**self.words, **extra}.get(m.group(1), m.group(0)), text)
        return _tidy(text)


def ideal_question(
    slot: str, values: dict[str, str], style: str, phrases: dict[str, Any], rng: random.Random, template: str
) -> str:
    """One short question for ``slot`` with a style-aware acknowledgement.

    ``values`` holds only what the policy knows at this point (``assignment_title`` only once it has
    identified the assignment), so the question never names something the student has not said;
    ``template`` is the policy's own question for the slot, always one of the candidates.
    """
    bank = phrases["assistant"]
    usable = [q for q in bank["questions"].get(slot, []) if _placeholders(q) <= values.keys()]
    candidates = [q for q in (_fill(q, values) for q in [*usable, template]) if not _ABBREVIATION.search(q)]
    named = [q for q in candidates if _names_own_work(q, values)]
    if named and rng.random() < NAMED_SHARE:
        candidates = named  # a good interviewer grounds the question in the student's own assignment/topic
    question = rng.choice(candidates or [_fill(template, values)])
    acks = bank.get(f"acks_{style}", bank["acks"])
    ack = rng.choice(acks) if rng.random() < 0.6 and slot != "issue" else ""
    return _tidy(f"{ack} {question}")


# How often an ideal question names the student's assignment or topic once the policy knows it.
NAMED_SHARE = 0.85


def _names_own_work(question: str, values: dict[str, str]) -> bool:
    return any(
        values.get(k) and values[k] in question for k in ("assignment_title", "topic_title", "section_title")
    )


# "Dr. Ana Rivera?" - the gateway releases text sentence by sentence and reads "Dr." as a sentence end,
# which garbles such a reply; ideal questions avoid titles before the question mark.
_ABBREVIATION = re.compile(r"\b(?:Dr|Prof|Mr|Mrs|Ms|St|vs|e\.g|i\.e)\.\s")


def _placeholders(text: str) -> set[str]:
    return set(re.findall(r"\{(\w+)\}", text))


def _fill(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), text)


def _terse(fact: str) -> str:
    """Few words, lower case, no pronoun lead-in: how a terse student types."""
    text = re.sub(
        r"^(i want to|i want|i need to|i need|i think|it's|it is|i)\s+", "", fact.strip(), flags=re.I
    )
    text = re.split(r",| because | but | and then ", text.lower())[0]
    cut = text.rstrip(".").split()[:8]
    while len(cut) > 2 and cut[-1] in {"the", "a", "an", "to", "of", "for", "with", "in", "is", "my", "and"}:
        cut.pop()
    return " ".join(cut)


def _tidy(text: str) -> str:
    return re.sub(r"\s+([,.?!])", r"\1", re.sub(r"\s{2,}", " ", text)).strip()
