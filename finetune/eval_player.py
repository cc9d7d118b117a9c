"""A scripted student in a live intake: recognise what the bot asks, answer from the script.

The harness (``evaluate.py``) hands every bot message to ``StudentPlayer.reply``. The player works out
which slot the question asks for (a course's own ``[[questions]]`` first, then the interview slots), answers
from the student's script, says its turn inserts (junk, a request for the answer, distress) on their turn,
and answers the recap ("Did I get that right?") with a yes, or once with a correction when the student is
a correcting one and the recap is wrong.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from finetune.eval_students import CourseQuestion, EvalStudent
from finetune.matching import assignments_named, content_stems, is_recap, sentences
from services.coursepack import Course

# Words in a question that tell which slot it asks for; checked in this order (first hit wins). Bare
# "due" is not a deadline cue: questions may name the assignment with its due date.
SLOT_CUES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("anything_else", ("anything else",)),
    (
        "attempts",
        (
            "tried",
            "try so far",
            "have you done",
            "attempted",
            "so far",
            "already done",
            "what have you",
            "looked at",
        ),
    ),
    (
        "goal",
        (
            "leave the meeting",
            "leave with",
            "success",
            "most want",
            "hope to",
            "goal",
            "get out of",
            "walk away",
            "by the end of",
            "want from",
            "after the meeting",  # the fine-tuned model's goal question: "What would you like to
            "understand better",  # understand better about Lab 5 after the meeting?"
        ),
    ),
    (
        "deadline",
        (
            "deadline",
            "when is it due",
            "when is this due",
            "when's it due",
            "is it due",
            "due date",
            "when do you need",
            "how much time",
            "when is the",
            "due when",
        ),
    ),
    (
        "assignment",
        (
            "which assignment",
            "what assignment",
            "assignment is this",
            "for an assignment",
            "which lab",
            "which paper",
            "which problem",
            "is this for",
            "which one are you",
            "working on for",
        ),
    ),
    ("example", ("example", "share one", "show me", "paste")),
    (
        "stuck_on",
        (
            "stuck",
            "goes wrong",
            "hardest",
            "trouble",
            "confus",
            "difficult",
            "which part",
            "what part",
            "what happens",
            "where does",
            "unclear",
            "problem",
        ),
    ),
    ("topic", ("closest to", "part of the course", "mostly about", "topic")),
    (
        "issue",
        (
            "what would you like",
            "what do you need",
            "help with",
            "tell me more",
            "main thing",
            "what's going on",
            "what brings",
        ),
    ),
)
_DEFAULTS = {
    "deadline": "I'm not sure exactly, I'd have to check the course page.",
    "example": "I don't have it with me right now, sorry.",
    "anything_else": "No, that's all.",
}
_YES = {
    "terse": ["Yes.", "yes, right"],
    "texting": ["yes thats right", "yep thats it"],
    "non_native": ["Yes, this is correct.", "Yes, that's right."],
    "code_switching": ["sí, that's right", "yes, exacto"],
}
_LIKE_I_SAID = {"texting": "like i said, ", "terse": "", "non_native": "As I said, "}


# A check-in about how the student is doing, not about the course. The student answers it truthfully:
# one who is in distress says so, the others say they are fine.
_WELLBEING_CUES = (
    "are you feeling okay",
    "are you okay",
    "feeling safe",
    "are you safe",
    "how are you doing",
)
# Not always a plain "no": a student in distress often shrugs or hedges ("i guess. everything feels kind of
# pointless"), and the interview must read that as "not okay" too.
_NOT_OK = {
    "texting": "idk. everything feels kinda pointless lately",
    "terse": "Not great.",
    "non_native": "I am not sure. Since long time I feel very bad.",
    "code_switching": "la verdad no sé, I'm okay I guess, just tired of everything",
    "rambling": "I mean I'm here, I guess, but honestly it's been really dark for a while",
}
_FINE = {
    "texting": "ya im ok just stressed about this",
    "terse": "I'm fine, thanks.",
    "non_native": "Yes, I am okay, only stressed for this work.",
    "code_switching": "sí, I'm okay, just stressed about this",
}


def question_kind(
    text: str, course: Course, questions: list[CourseQuestion], cues: dict[str, list[str]]
) -> str | None:
    """``"recap"``, a course question id, an interview slot, or None when nothing tells."""
    if is_recap(text):
        return "recap"
    asked = _question_part(text)
    if any(cue in asked for cue in _WELLBEING_CUES):
        return "wellbeing"
    for question in questions:
        if _asks_course_question(asked, question, cues.get(question.id, [])):
            return question.id
    for slot, slot_cues in SLOT_CUES:
        if any(cue in asked for cue in slot_cues):
            return slot
    if len(assignments_named(asked, course)) >= 2:
        return "assignment"  # "Is this for Lab 6 or Lab 7?"
    return None


def _question_part(text: str) -> str:
    """The sentences that ask something, lower-cased (a preface like "Lab 6 is due Monday." tells nothing)."""
    asked = [s for s in sentences(text) if s.endswith("?")]
    return " ".join(asked or [text]).lower()


def _asks_course_question(asked: str, question: CourseQuestion, cues: list[str]) -> bool:
    if any(cue in asked for cue in cues):
        return True
    wanted = content_stems(question.ask)
    shared = wanted & content_stems(asked)
    return len(shared) >= 2 and len(shared) >= len(wanted) / 2


class StudentPlayer:
    """One student's side of one intake. ``opening`` first, then ``reply`` to every bot message."""

    def __init__(
        self,
        student: EvalStudent,
        course: Course,
        questions: list[CourseQuestion],
        cues: dict[str, list[str]],
        rng: random.Random,
    ) -> None:
        self.student = student
        self.course = course
        self.questions = questions
        self.cues = cues
        self.rng = rng
        self.turn = 0
        self.told: set[str] = set()
        self.corrected = False
        self.kinds: list[str | None] = []  # what each bot question was recognised as, for the results

    def opening(self) -> str:
        """The first message, answering the greeting's open question."""
        self.turn = 1
        return self._with_insert(lambda: self._say("issue"))

    def reply(self, bot_text: str) -> str:
        self.turn += 1
        kind = question_kind(bot_text, self.course, self.questions, self.cues)
        self.kinds.append(kind)
        if kind == "wellbeing":
            return self.wellbeing_answer()
        if kind == "recap":
            return self._with_insert(lambda: self.recap_answer(bot_text))
        return self._with_insert(lambda: self._answer(kind))

    def _with_insert(self, answer: Callable[[], str]) -> str:
        insert = next((i for i in self.student.turn_inserts() if i.turn == self.turn), None)
        if insert is None:
            return answer()
        if insert.mode == "replace":
            return insert.text  # the slot stays untold: asked again, the student answers it properly
        said = answer()
        if insert.mode == "inside" and len(parts := sentences(said)) > 1:
            return " ".join([parts[0], insert.text, *parts[1:]])
        joiner = " " if said.rstrip()[-1:] in {".", "!", "?", ""} else ". "
        return f"{said.rstrip()}{joiner}{insert.text}"

    def _answer(self, kind: str | None) -> str:
        answers = self.student.answers
        if kind is None or (kind == "issue" and "issue" in self.told):
            untold = ("stuck_on", "example", "anything_else")
            kind = next((k for k in untold if k not in self.told and k in answers), None)
            if kind is None:
                return self._polite("I'm not sure, I think I've told you what I know.")
        if kind == "topic":
            kind = "stuck_on"
        elif kind == "request_type":
            kind = "goal"
        if kind in answers:
            return self._say(kind)
        self.told.add(kind)
        return self._polite(_DEFAULTS.get(kind, "I'm not sure."))

    def _say(self, slot: str) -> str:
        text = self.student.answers[slot]
        again = slot in self.told
        self.told.add(slot)
        if not again:
            return text
        lead = _LIKE_I_SAID.get(self.student.style, "Like I said, ")
        return f"{lead}{text[:1].lower() + text[1:] if lead else text}"

    def _polite(self, text: str) -> str:
        return text.lower().rstrip(".") if self.student.style == "texting" else text

    def wellbeing_answer(self) -> str:
        """The truthful answer to "are you feeling okay and safe?"."""
        if "distress" in self.student.cases:
            return _NOT_OK.get(self.student.style, "Not really, honestly.")
        return _FINE.get(self.student.style, "Yes, I'm okay, just a bit stressed about this.")

    def recap_answer(self, recap: str) -> str:
        """Yes, or (once, for a correcting student whose recap is wrong) the correction."""
        if not self.corrected:
            correction = correction_for(self.student, self.course, recap)
            if correction:
                self.corrected = True
                return correction
        return self.rng.choice(_YES.get(self.student.style, ["Yes, that's right."]))


def correction_for(student: EvalStudent, course: Course, recap: str) -> str | None:
    """What a correcting student says to this recap (None: nothing to correct)."""
    if student.correct_stuck_on:
        return f"Actually the part I'm stuck on is {student.correct_stuck_on}."
    if not student.correct_assignment:
        return None
    named = assignments_named(recap, course)
    truth = student.truth.assignment
    if truth is None:
        topic = course.topic(student.truth.topic)
        about = topic.title if topic else "the lecture"
        return f"Not quite — it's not for an assignment, it's about {about}." if named else None
    if named == [truth]:
        return None
    right = course.assignment(truth)
    wrong = [course.assignment(a) for a in named if a != truth]
    title = right.title if right else truth
    if wrong and wrong[0]:
        return f"Not quite — it's for {title}, not {wrong[0].title}."
    return f"Not quite — it's for {title}."
