"""Reading one student message, once: the pipeline's "understand" step.

The interviewer does the I/O first (the message classifier, chunk-level retrieval, the course map's
similarities) and hands the results in as ``Heard``; ``read`` turns message + ``Heard`` into one typed
``Observation`` that the policy, the wording and the summary use. Nothing after this looks at the raw
student text again, so junk, injected sentences and booking boilerplate stop here.

Where something was said decides how much it counts. Evidence for an assignment from the booking notes,
the opening answer, a direct answer to "which assignment" or a correction of the recap counts most;
a sentence about what the student already did ("I practised on lab 2") counts least; a negated
mention ("not lab 3") counts against.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from services.coursepack import Course
from services.gateway.intake import guardrails, matching
from services.gateway.intake.models import Section
from services.gateway.intake.text import (
    ALREADY_SAID,
    FEELING_WORDS,
    GENERIC_WORDS,
    STUCK_CUE,
    clip,
    content_words,
    is_confused,
    is_non_answer,
    sentences,
)
from services.gateway.ports import CourseSimilarity, Passage

if TYPE_CHECKING:
    from services.understanding.classifier import MessageUnderstanding
    from services.understanding.classifier import SentenceSlot as SentenceVerdict

SentenceSlot = str  # stuck_on | attempts | goal | deadline | assignment | context | feelings | junk
_CLASSIFIER_TRUST = 0.55  # below this the pending question decides what a sentence answers
_ROLE_WEIGHT = {"notes": 3.0, "issue": 3.0, "assignment": 4.0, "which_assignment": 6.0, "recap": 6.0}
_PAST = re.compile(
    r"\b(?:already|last (?:week|time|month|semester)|earlier|before|previous(?:ly)?|practi[cs]ed|for practice|"
    r"back (?:in|on|when)|like (?:in|on|with)|similar to|same as|(?:i|we) (?:did|finished|submitted|got back))\b",
    re.I,
)
_NEGATION = re.compile(r"\b(?:not|isn'?t|wasn'?t|instead of|rather than|never)\b", re.I)
_KINDS = (
    r"(?:assignments?|homework|problem sets?|psets?|labs?|lab reports?|reports?|essays?|papers?|projects?|"
    r"responses?|exercises?|quiz(?:zes)?|exams?|graded|specific)"
)
_NO_ASSIGNMENT = re.compile(
    r"\b(?:not|isn'?t|wasn'?t|no|nothing)\s+(?:really\s+|actually\s+)?(?:for|about|on|part of|related to|to do with)\s+"
    r"(?:an?\s+|any\s+|the\s+|one\s+|my\s+)?(?:(?:of\s+)?(?:the|my|our)\s+)?" + _KINDS + r"|"
    r"\bno (?:assignment|homework)\b|\bnot graded\b|\bjust (?:the )?(?:lecture|reading|concept|in general)\b",
    re.I,
)
# The rule layer beside the classifier: cue sentences a rambling student volunteers.
_ATTEMPT_CUE = re.compile(
    r"\b(?:i|we)\s*(?:'ve|have|had)?\s*(?:already |also |even )?(?:tried|read|re-?read|looked|watched|asked|"
    r"went|checked|used|searched|googled|rewrote|wrote|started|attempted|practi[cs]ed|reviewed|studied|"
    r"made|did|worked|followed|talked|visited|outlined|redid|re-?did|printed|tested|ran)\b|\b(?:tried|trying) to\b",
    re.I,
)
# an answer to "what have you tried?" that leaves out the "I": "wrote position vectors for both cables"
_ATTEMPT_START = re.compile(
    r"^\W*(?:(?:also|already|then|first)\s+)?(?:tried|read|re-?read|looked|watched|asked|went|checked|used|"
    r"searched|googled|rewrote|wrote|attempted|practi[cs]ed|reviewed|studied|made|did|followed|talked|"
    r"outlined|redid|re-?did|printed|tested|ran|drew|calculated|computed|plugged|compared)\b",
    re.I,
)
# an answer to "what would you like to get out of the meeting?" that leaves out "I want to"
_GOAL_START = re.compile(
    r"^\W*(?:(?:to|just|mainly|mostly|really|finally|hopefully)\s+)*(?:understand|learn|know|figure out|"
    r"be able|get (?:a|an|the|to|better|clear|comfortable|confident)|feel|leave|walk away|make sure|"
    r"see (?:how|why|what|where|whether|if)|fix|finish|solve|work out|clarify|check|confirm)\b",
    re.I,
)
# what the student (or their group) did: an attempt has them as its agent
_BY_THEM = re.compile(r"\b(?:i|i'?ve|i'?d|i'?m|we|we'?ve|we'?d)\b", re.I)
_GOAL_CUE = re.compile(
    r"\b(?:i (?:want|would like|'d like|hope|wanna|need) to|i'?m hoping to|hoping to|my goal|by the end of the meeting|"
    r"from (?:the|this) meeting)\b[^.?!]*\b(?:understand|learn|leave|walk away|know|figure|fix|improve|make sure|"
    r"check|clarif\w*|go over|review|talk|discuss|plan|feel|be able|see|get)\b",
    re.I,
)
_YES = r"yes|yep|yeah|yup|ya|ok(?:ay)?|sure|right|correct|exactly|that'?s (?:right|it|correct)|sounds (?:good|right)"
_CONFIRM = re.compile(
    rf"^\W*(?:{_YES}|perfect|all good|looks (?:good|right)|si|sí|oui|good|great|thanks?|thank you|👍)\b", re.I
)
# "yes that's right", "ok sure" said to a question no yes answers ("What have you tried?"): the slot stays
# open (a student who answered the question before it, or tapped a stock reply, is asked again)
_ASSENT_ONLY = re.compile(rf"^\W*(?:(?:{_YES})[\s.,!]*)+$", re.I)
_OPEN_QUESTIONS = frozenset({"issue", "stuck_on", "attempts", "goal", "example", "topic"})
_CORRECTION = re.compile(r"\b(?:not quite|no[,.!]|actually|wrong|correction|instead|not\b)", re.I)


class Heard(msgspec.Struct, frozen=True, kw_only=True):
    """What the I/O step found out about a message before it is read."""

    understanding: Any = None  # a ``MessageUnderstanding`` from the classifier, or None without one
    passages: list[Passage] = []
    similarity: CourseSimilarity | None = None


class Observation(msgspec.Struct, frozen=True, kw_only=True):
    """One student message, understood: everything the policy needs, nothing it should not believe."""

    answering: str | None  # the slot the last question asked
    guard: guardrails.Kind
    rule: str = ""
    junk: bool = False  # a non-answer: the slot stays open
    confused: bool = False  # did not understand the question
    confirms: bool = False  # agreed with the recap
    sentences: tuple[tuple[SentenceSlot, str], ...] = ()  # clean sentences with the slot each fills
    assignment_evidence: dict[str, float] = {}
    topic_evidence: dict[str, float] = {}
    no_assignment: bool = False
    section: Section | None = None
    dropped: int = 0  # sentences withheld (injection, answer requests)

    def said(self, slot: SentenceSlot) -> str:
        return " ".join(s for k, s in self.sentences if k == slot)

    @property
    def clean_text(self) -> str:
        return " ".join(s for _, s in self.sentences)


def read(
    text: str,
    course: Course,
    *,
    answering: str | None,
    heard: Heard,
    from_notes: bool = False,
) -> Observation:
    """Understand one message; ``from_notes`` marks the booking's own notes (read before the chat)."""
    text = text.strip()
    guard = _guard(text, course, heard.understanding, answering)
    if guard.kind == "distress":
        return Observation(answering=answering, guard="distress", rule=guard.rule)
    confirms = answering == "recap" and bool(_CONFIRM.match(text)) and not _CORRECTION.search(text[3:])
    if confirms:
        return Observation(answering=answering, guard=guard.kind, rule=guard.rule, confirms=True)
    if not text or is_non_answer(text) or (answering in _OPEN_QUESTIONS and _ASSENT_ONLY.match(text)):
        return Observation(answering=answering, guard=guard.kind, rule=guard.rule, junk=True)
    labelled, dropped = _sentences(
        text, course, answering, heard.understanding, from_notes, asks_answer=guard.kind == "homework"
    )
    role = "notes" if from_notes else (answering or "")
    return Observation(
        answering=answering,
        guard=guard.kind,
        rule=guard.rule,
        confused=is_confused(text),
        sentences=tuple(labelled),
        assignment_evidence=_assignment_evidence(course, labelled, role, heard),
        topic_evidence=_topic_evidence(course, labelled, heard, answering),
        no_assignment=any(_NO_ASSIGNMENT.search(s) for _, s in labelled),
        section=_section(course, heard.passages, labelled) if _about_problem(labelled) else None,
        dropped=dropped,
    )


_NOT_OK = re.compile(
    r"^\W*(?:no|nope|nah|not really|not (?:okay|ok|great|good|safe|sure)|i'?m not|idk|i don'?t know|"
    r"kind of|kinda|sort of|maybe|honestly,? no|not at all)\b",
    re.I,
)


_OK = re.compile(
    r"^\W*(?:yes|yeah|yep|ya|yup|sí|si|i'?m (?:ok(?:ay)?|fine|good|alright|all right|safe)|i am (?:ok(?:ay)?|fine|good|safe)|"
    r"ok(?:ay)?|fine|all good|i'?ll be (?:ok(?:ay)?|fine)|no worries)\b",
    re.I,
)
# An answer to "are you okay and safe?" that neither says yes nor no: "meh", "does it matter", "I'd rather
# not say", "I mean I'm alive lol", "i guess so". Asked directly, after a sign of distress, a shrug is not
# a yes: it escalates (a person follows up; a student who is fine loses nothing but a closed chat).
_EVASIVE = re.compile(
    r"^\W*(?:meh|eh|hmm+|ugh|whatever|i guess|i suppose|i mean|does it matter|"
    r"(?:i'?d )?rather not(?: say| talk)?|i don'?t want to talk|can we (?:just )?(?:skip|move on)|"
    r"define (?:okay|ok|safe)|not great|could be better|been better|surviving|i'?m alive|still here|"
    r"so so|so-so|same as always)\b",
    re.I,
)
# Said anywhere in the answer, hopelessness, not a shrug about the course: "it's fine, nothing matters"
_NOTHING_MATTERS = re.compile(
    r"\b(?:(?:doesn'?t|does not) (?:really )?matter|nothing (?:does|matters)|who cares|what'?s the point)\b",
    re.I,
)
# A no said after something else: "yeah no, not really", "honestly I'm not okay", "yes and no"
_NO_INSIDE = re.compile(
    r"\bnot really\b|\byeah,? no\b|\byes and no\b|\b(?:i'?m|i am|im) not (?:ok(?:ay)?|fine|safe|good|alright)\b|"
    r"\bnot (?:ok(?:ay)?|safe)\b",
    re.I,
)
# A yes said after a lead-in: "I mean yeah I'm fine, just stressed", "honestly I'm okay"
_OK_INSIDE = re.compile(
    r"\b(?:i'?m|i am|im) (?:totally |really |doing )?(?:ok(?:ay)?|fine|good|alright|all right|safe)\b", re.I
)
# "I'm okay I guess", "fine, kind of", "I'm safe, but ...": an okay that takes itself back
_HEDGED = re.compile(
    r"\b(?:i guess|i think|i suppose|kind of|kinda|sort of|mostly|but|though|except)\b", re.I
)


def _guard(
    text: str, course: Course, understanding: MessageUnderstanding | None, answering: str | None
) -> guardrails.Verdict:
    """Rules and the classifier side by side (distress wins everything).

    The rules and the classifier's "sure" level act at once. A distress signal the classifier only
    flags at its recall-first threshold gets a gentle check-in question instead of ending the chat;
    the answer to that question escalates on any distress signal, on "not really", or on no answer.
    """
    related = matching.mentions_course(course, text)
    ruled = _as_goal(guardrails.screen(text, course_related=related), answering)
    if ruled.kind == "distress":
        return ruled
    flagged = understanding.flagged if understanding else frozenset()
    sure = understanding.sure if understanding else frozenset()
    if (
        answering == "wellbeing"
    ):  # the student was asked directly: their answer decides, the rules still apply
        return _check_in_answer(text, understanding)
    if "distress" in flagged and _only_mentioned(understanding):
        # "does 'no quise' mean I didn't want to or I refused?": words quoted to ask what they mean
        # are not the student's own; one check-in at most (the rules above still read every word)
        return guardrails.Verdict("check_in" if "distress" in sure else "ok", "classifier_mention")
    if "distress" in sure:
        if _learning_goal(understanding):  # "I want to leave knowing how to do it myself": ask, don't end
            return guardrails.Verdict("check_in", "classifier_goal")
        return guardrails.Verdict("distress", "classifier")
    if "distress" in flagged and not ALREADY_SAID.match(text):
        return guardrails.Verdict("check_in", "classifier")
    if ruled.kind != "ok":
        return ruled
    if "injection" in sure:
        return guardrails.Verdict("injection", "classifier")
    if "answer_request" in sure:
        return guardrails.Verdict("homework", "classifier")
    if "reschedule" in sure:
        return guardrails.Verdict("reschedule", "classifier")
    if "off_topic" in sure and not related:
        return guardrails.Verdict("off_topic", "classifier")
    return ruled


# A sentence that quotes words to ask about them: what they mean, how they translate, which form is right.
_QUOTED = r"(?<!\w)['‘\"“«][^'’\"”»\n]{1,60}['’\"”»](?!\w)"
_MENTION = re.compile(
    rf"{_QUOTED},?\s+(?:means?|meant|in (?:english|spanish|french|german|italian|portuguese|latin|the (?:text|poem|"
    rf"passage|sentence|story)))\b|\b(?:what do(?:es)?|how do you say|translat\w*|the (?:meaning|word|verb|phrase|"
    rf"form|line)s?(?: of)?)\s+{_QUOTED}",
    re.I,
)


# What the student wants to learn or be able to do ("I want to leave knowing how to do it myself", "by the
# end I want to do it without help"): the classifier reads "leave", "do it", "myself" near each other as a
# sign (0.95 for that goal, past the sure level), so such a sentence gets a check-in, never the end of the
# chat. A sentence that also speaks of lasting or of everything is not a learning goal.
_LEARNING_GOAL = re.compile(
    r"\b(?:want|wanna|would like|'d like|hope|goal|by the end)\b.*\b(?:how to|understand\w*|learn\w*|"
    r"able to|on my own|by myself|myself|without (?:any )?help|(?:a|my) (?:clear )?plan|knowing (?:that )?i can)\b",
    re.I,
)
_NOT_LEARNING = re.compile(
    r"\b(?:any ?more|everything|everyone|forever|never|again|world|life|alive|exist\w*|gone|disappear\w*|"
    r"sleep|wake|rest|peace|pain|hurt\w*|burden|feel(?:ing)? (?:like this|this way|nothing)|go on|keep going|"
    r"point|tired of)\b",
    re.I,
)


def _every_sign(understanding: MessageUnderstanding | None, is_so: Callable[[str], bool]) -> bool:
    """Whether there are sentences the classifier flags for distress and ``is_so`` holds for each."""
    if understanding is None:
        return False
    signs = [s.text for s in understanding.sentences if "distress" in s.flagged]
    return bool(signs) and all(is_so(sign) for sign in signs)


def _learning_goal(understanding: MessageUnderstanding | None) -> bool:
    """Every sentence the classifier flags for distress says what the student wants to learn or be able to
    do, and nothing of lasting, of everything or of how they feel."""
    return _every_sign(
        understanding, lambda s: bool(_LEARNING_GOAL.search(s)) and not _NOT_LEARNING.search(s)
    )


def _only_mentioned(understanding: MessageUnderstanding | None) -> bool:
    """Every sentence the classifier flags for distress quotes words to ask what they mean."""
    return _every_sign(understanding, lambda s: bool(_MENTION.search(s)))


def _check_in_answer(text: str, understanding: MessageUnderstanding | None) -> guardrails.Verdict:
    """The answer to "are you feeling okay and safe right now?" (the rules have already had their say).

    A plain yes carries on: "yes, I'm okay, just stressed about this" (stress is what they came for), even
    when the classifier scores the stress in it high (seen: 0.95), unless a later sentence of the answer is
    itself a sign ("I'm fine. I just don't see the point of anything anymore"). "Not really", no answer,
    hopelessness ("it's fine, nothing matters"), a shrug ("meh", "i guess so", "I'd rather not say") or a
    yes that takes itself back while the answer carries a sign ("I'm okay I guess. just tired of
    everything"; "I'm safe, but I've been feeling really low for weeks") escalates."""
    flagged = understanding is not None and "distress" in understanding.flagged
    if not text.strip() or _NOT_OK.match(text) or _NO_INSIDE.search(text) or _NOTHING_MATTERS.search(text):
        return guardrails.Verdict("distress", "check_in_answer")
    if (_OK.match(text) or _OK_INSIDE.search(text)) and not _HEDGED.search(text):
        later = understanding.sentences[1:] if understanding is not None else ()
        if any("distress" in sentence.flagged for sentence in later):
            return guardrails.Verdict("distress", "check_in_answer")
        return guardrails.Verdict("ok")
    if flagged or _EVASIVE.match(text) or is_non_answer(text, numbers=False):
        return guardrails.Verdict("distress", "check_in_answer")
    return guardrails.Verdict("ok")  # "just stressed about the lab, that's all"


def _as_goal(verdict: guardrails.Verdict, answering: str | None) -> guardrails.Verdict:
    """Asked what they want from the meeting, "Write the argument properly" or "Solve these on my own" is
    the student's goal in the imperative, not an order to the bot ("write it for me" still is one)."""
    if answering == "goal" and verdict.kind == "homework" and verdict.rule == "imperative":
        return guardrails.Verdict("ok")
    return verdict


_PENDING_DEFAULT = {
    "issue": "stuck_on",
    "stuck_on": "stuck_on",
    "example": "stuck_on",
    "topic": "stuck_on",
    "anything_else": "context",
    "attempts": "attempts",
    "goal": "goal",
    "deadline": "deadline",
    "assignment": "assignment",
    "recap": "stuck_on",
    "wellbeing": "context",
}


def _sentences(
    text: str,
    course: Course,
    answering: str | None,
    understanding: MessageUnderstanding | None,
    from_notes: bool,
    asks_answer: bool = False,
) -> tuple[list[tuple[str, str]], int]:
    """Each clean sentence with the slot it fills; injected and answer-seeking sentences are withheld.
    ``asks_answer``: the message asks for the answer (rules or the classifier's sure level), so a sentence
    the classifier flags for it is that request, never an answer to the question asked."""
    by_text = {s.text: s for s in understanding.sentences} if understanding else {}
    default = "stuck_on" if from_notes else _PENDING_DEFAULT.get(answering or "", "stuck_on")
    if answering and answering.startswith("q:"):
        default = answering
    out: list[tuple[str, str]] = []
    dropped = 0
    whole = [s for s in sentences(text) if guardrails.screen(s).kind != "injection"]
    dropped += len(sentences(text)) - len(whole)  # an injected sentence goes whole, not clause by clause
    for raw in [c for s in whole for c in _clauses(s)]:
        sentence = _without_boilerplate(raw)
        kind = _as_goal(guardrails.screen(sentence), answering).kind
        if kind == "injection":
            dropped += 1
            continue
        if kind in ("person", "reschedule"):  # about the meeting itself, not an answer to anything
            continue
        verdict = by_text.get(sentence) or by_text.get(raw)
        if kind == "homework" or (asks_answer and verdict and "answer_request" in verdict.flagged):
            out.append(("asked_answer", clip(sentence, 400)))  # no description of the problem
            continue
        if not sentence or is_non_answer(sentence):
            continue
        if verdict and "injection" in verdict.flagged:
            dropped += 1  # the classifier alone: withheld from the facts, the chat goes on
            continue
        slot = _cued(sentence, default)
        if default.startswith("q:") and slot == default:
            pass  # the answer to the course's own question ("Trial 1 16.55 mL, ..."), unless a cue says otherwise
        elif default == "attempts" and _ATTEMPT_START.match(sentence):
            pass  # asked what they tried, "wrote position vectors for both cables, got the unit vectors" is that
        elif default == "goal" and _GOAL_START.match(sentence):
            pass  # asked what they want from the meeting, "Understand why (a) and (b) differ" is that
        elif (
            verdict
            and verdict.confidence >= _CLASSIFIER_TRUST
            and verdict.slot != "junk"
            and not (
                default != "stuck_on" and guardrails.mostly_foreign(sentence, matching.course_words(course))
            )
        ):  # the encoder reads English: in another language the question asked says more than its guess
            slot = verdict.slot if not default.startswith("q:") or verdict.slot != "stuck_on" else default
        elif verdict and verdict.slot == "junk" and verdict.confidence >= 0.8 and not content_words(sentence):
            continue
        if slot == "attempts" and default != "attempts" and not _BY_THEM.search(sentence):
            slot = default  # "The bookstore raised the price and made less money" is the problem, not a try
        if answering == "recap" and slot == "stuck_on" and not _CORRECTION.search(sentence):
            slot = "context"  # more detail after the recap, not a correction of the stuck point
        if slot == "stuck_on" and _feelings_only(sentence, course, verdict):
            slot = "feelings"  # the check-in hears it; not the stuck point, nor the context of the problem
        out.append((slot, clip(sentence, 400)))
    if dropped:
        # a message that carried an injection keeps only what is plainly about the course: the sentences
        # around an instruction ("Let's play a game.", "I'm curious how you work.") are part of it
        kept = [(k, s) for k, s in out if _on_course(course, s)]
        dropped += len(out) - len(kept)
        out = kept
    return out, dropped


def _feelings_only(sentence: str, course: Course, verdict: SentenceVerdict | None) -> bool:
    """A sentence about how the student feels, with (almost) nothing about the problem: "I'm kind of
    panicking about lab 6", "I'm dying here, this report is going to destroy my grade". It names a
    feeling, holds nothing concrete (a number, code), and what is left once feelings, generic words and
    the course's assignment names and what is at stake (a grade, failing) are taken out is at most one word, or three when the distress
    classifier flags the sentence too ("I'm freaking out that it looks like I faked something")."""
    said = content_words(sentence)
    if not said & _EMOTIONS or _CONCRETE.search(sentence):
        return False
    rest = said - FEELING_WORDS - GENERIC_WORDS - _STAKES - matching.assignment_words(course)
    return len(rest) <= (3 if verdict and "distress" in verdict.flagged else 1)


_EMOTIONS = content_words(
    "stressed stressing stress freaking panicking panic worried worry nervous anxious scared afraid terrified "
    "overwhelmed frustrated frustrating upset dying killing dumb stupid"
)


# What a worried student fears for ("this report is going to destroy my grade"): the stakes, not the problem
_STAKES = content_words(
    "going grade grades gpa destroy ruin ruined fail failing flunk tank semester scholarship"
)


def _on_course(course: Course, sentence: str) -> bool:
    """Names an assignment, says a whole course keyword (one word of a keyword phrase, at half weight, is
    not enough), or holds something concrete: a number, code, an error name."""
    if matching.match_assignment(course, sentence) or _CONCRETE.search(sentence):
        return True
    return max(matching.topic_scores(course, [sentence]).values(), default=0.0) >= 2.0


_CONCRETE = re.compile(r"\d|[_=()\[\]{}<>]|\b[A-Z]\w*(?:Error|Exception)\b")


_CLAUSE_BREAK = re.compile(r",\s+(?:and\s+|but\s+|so\s+)?(?=(?:i|i'm|i've|my)\b)|\s+and\s+(?=i\b)", re.I)
LONG_SENTENCE_WORDS = 25


def _clauses(sentence: str) -> list[str]:
    """A run-on sentence ("..., I re-read the notes, and I want to ...") in the clauses a student meant."""
    if len(sentence.split()) <= LONG_SENTENCE_WORDS:
        return [sentence]
    return [c.strip() for c in _CLAUSE_BREAK.split(sentence) if c and c.strip()]


def _cued(sentence: str, default: str) -> str:
    """The slot a cue phrase gives a sentence volunteered while answering something else."""
    if default not in {"attempts"} and _ATTEMPT_CUE.search(sentence) and not _GOAL_CUE.search(sentence):
        return "attempts"
    if default not in {"goal"} and _GOAL_CUE.search(sentence):
        return "goal"
    if default in {"deadline", "context", "assignment", "goal"} and (
        STUCK_CUE.search(sentence) or (sentence.endswith("?") and len(sentence.split()) >= 6)
    ):
        return "stuck_on"  # the real question, said while answering something else
    return default


_FORM_LABEL = re.compile(
    r"^\W*(?:additional (?:notes?|information|info)|notes?|comments?|description|"
    r"(?:please )?(?:share|describe|tell us) (?:anything|what)[^:?]*[:?]|what would you like to discuss\??|"
    r"reason for (?:the )?(?:meeting|booking|visit)|topic)\s*[:\-–]\s*",
    re.I,
)
_BOILERPLATE = re.compile(
    r"^\W*(?:n/?a|none|-+|\(?optional\)?|what would you like to discuss\??|please share anything (?:that|to) (?:will )?help(?:s)? (?:us )?prepare\b.*|booked (?:via|through|with|from|on|using)\b.*|sent from my \w+.*|"
    r"this (?:meeting|event) (?:was|is) (?:scheduled|booked)\b.*|powered by cal\.com.*)\W*$",
    re.I,
)


_GREETING = re.compile(
    r"^\W*(?:hi|hello|hey|dear|good (?:morning|afternoon|evening))\b[\s,]*"
    r"(?:(?:professor|prof\.?|dr\.?|mr\.?|ms\.?|mrs\.?|teacher|sir|ma'?am|there|all)\s*)?"
    r"(?:[A-Z][\w'-]+\s*)?[,!.:-]+\s*",
    re.I,
)


# apologies and hedges in front of the real sentence: "sorry, I know it's probably a silly question, but"
_HEDGE = re.compile(
    r"^\W*(?:(?:so\s+|um+\s+|ok(?:ay)?\s+)?(?:sorry|apologies)(?:\s+(?:to bother you|for bothering you|"
    r"for the (?:long|late) message|if this is (?:a )?(?:dumb|silly|stupid|basic) question))?[\s,.!-]+|"
    r"(?:i know |i'm sure )?(?:it'?s|this is|this might be|this may be)\s+(?:probably |maybe |kind of )?"
    r"(?:a |such a )?(?:dumb|silly|stupid|basic|weird) question[\s,.!-]*(?:but\s+)?|"
    r"(?:i know )?(?:i'?m|i am) (?:probably )?(?:asking|being) (?:something )?(?:dumb|silly|stupid)[\s,.!-]*(?:but\s+)?)+",
    re.I,
)


def _without_boilerplate(sentence: str) -> str:
    """A sentence without booking-form labels ("Additional notes:"), greetings ("Hi Dr. Ruiz,"), leading
    apologies and hedges ("sorry, it's probably a silly question, but") and mail footers; "" if nothing
    is left."""
    sentence = _GREETING.sub("", _FORM_LABEL.sub("", sentence).strip()).strip()
    sentence = _HEDGE.sub("", sentence).strip()
    return "" if _BOILERPLATE.match(sentence) else sentence


def _assignment_evidence(
    course: Course, labelled: Sequence[tuple[str, str]], role: str, heard: Heard
) -> dict[str, float]:
    """Lexical mentions weighted by where they were said, plus semantic similarity of the stuck point."""
    evidence = dict.fromkeys((a.id for a in course.assignments), 0.0)
    if not evidence:
        return {}
    weight = _ROLE_WEIGHT.get(role, 1.0)
    for slot, sentence in labelled:
        scores = _clause_scores(course, sentence)
        factor = 0.15 if slot == "attempts" or _PAST.search(sentence) else 1.0
        for assignment_id, score in scores.items():
            evidence[assignment_id] += score * (weight if score > 0 else max(weight, 2.0)) * factor
    if heard.similarity and any(s in {"stuck_on", "assignment"} for s, _ in labelled):
        for assignment_id, cosine in heard.similarity.assignments.items():
            if assignment_id in evidence:
                evidence[assignment_id] += 3.0 * max(0.0, cosine - 0.35)
    return {k: round(v, 3) for k, v in evidence.items() if v}


def _clause_scores(course: Course, sentence: str) -> dict[str, float]:
    """Mentions in a sentence; the words right after a negation ("not lab 3", "instead of essay 1") count against."""
    out: dict[str, float] = {}
    for clause in re.split(r"(?<=[,;:])\s+|\s+(?=\bbut\b)|\s+-+\s+", sentence):
        parts = _NEGATION.split(clause, maxsplit=1)
        zones = [(parts[0], 1.0)]
        if len(parts) > 1:
            after = parts[1].split()
            end, i = 4, 0
            while i <= min(end, len(after) - 1):  # "not for a problem set or the lab report": neither one
                if after[i].lower() in {"or", "nor"}:
                    end = max(end, i + 5)
                i += 1
            zones += [(" ".join(after[:end]), -1.0), (" ".join(after[end:]), 1.0)]
        for zone, sign in zones:
            for assignment_id, score in matching.assignment_scores(course, zone).items():
                if score > 0:
                    out[assignment_id] = out.get(assignment_id, 0.0) + sign * score
    return out


# A code identifier names something; it says nothing about the topic (test_top_words_ties, drop_lowest,
# findMax, read()), and nor does the kind noun that goes with it ("my find_max function", "the function
# count_words", "the test_letter_boundaries test"): a student naming a function is not stuck on functions.
_NAME_KIND = r"(?i:functions?|methods?|class(?:es)?|tests?|variables?|modules?|procedures?|scripts?)"
_NAME = r"(?:\w+_\w+|[a-z]+[A-Z]\w*|\w+\(\))"
_IDENTIFIER = re.compile(rf"(?:\b{_NAME_KIND}\s+)?\b{_NAME}(?:\s+{_NAME_KIND}\b)?")


def _topic_evidence(
    course: Course, labelled: Sequence[tuple[str, str]], heard: Heard, answering: str | None
) -> dict[str, float]:
    """What the stuck point is about. The stuck point and a goal that says what they want to understand
    count fully (a correction of the recap twice); answers to a course question (an error message, a
    failing test), background and other goals count half: they name the tools more than the topic. Code identifiers and assignment
    titles are names, not topic words (a test called ``test_sort_ties`` is not about testing, and "the
    Singer response" is not about Singer's argument unless the student says so)."""
    scale = 2.0 if answering == "recap" else 1.0
    about = [_topic_words(course, s) for k, s in labelled if k in {"stuck_on", "assignment"} or _learns(k, s)]
    aside = [
        _topic_words(course, s)
        for k, s in labelled
        if (k in {"context", "goal"} or k.startswith("q:")) and not _learns(k, s)
    ]
    evidence = {t: scale * v for t, v in matching.topic_scores(course, about).items()} if about else {}
    for topic_id, score in (matching.topic_scores(course, aside) if aside else {}).items():
        evidence[topic_id] = evidence.get(topic_id, 0.0) + score / 2
    if heard.similarity and about:
        for topic_id, cosine in heard.similarity.topics.items():
            evidence[topic_id] = evidence.get(topic_id, 0.0) + scale * 4.0 * max(0.0, cosine - 0.3)
    return {k: round(v, 3) for k, v in evidence.items() if v}


def _learns(slot: str, sentence: str) -> bool:
    """A goal that says what they want to understand ("Know how to pick the expected ratio") names the
    stuck point's topic as much as the stuck point does; "One or two sentences for the discussion" does not."""
    return slot == "goal" and bool(_GOAL_START.match(sentence)) and bool(_LEARNING.search(sentence[:40]))


_LEARNING = re.compile(
    r"\b(?:understand|learn|know|figure out|see (?:how|why|what|where|whether|if)|work out)\b", re.I
)


def _topic_words(course: Course, sentence: str) -> str:
    return matching.without_titles(course, _IDENTIFIER.sub(" ", _without_denied(sentence)))


# "it's not about recursion, it's my loop", "rather than the t-test": what the question is not about
_DENIED = re.compile(
    r"\b(?:(?:not|isn'?t|wasn'?t|nothing)\s+(?:really\s+|actually\s+|even\s+)?"
    r"(?:about|on|for|related to|to do with|part of)|instead of|rather than)\s+",
    re.I,
)


def _without_denied(sentence: str) -> str:
    """The sentence without the few words a denial is about ("not about X or Y": neither counts)."""
    out, rest = [], sentence
    while match := _DENIED.search(rest):
        out.append(rest[: match.start()])
        after = rest[match.end() :].split(" ")
        end, i = 4, 0
        while i <= min(end, len(after) - 1):
            if after[i].lower() in {"but", "just", "only"}:  # "not about X but Y": Y is what it is about
                end = i
                break
            if after[i].lower() in {"or", "nor"}:
                end = max(end, i + 5)
            if re.search(r"[,;:.!?]$", after[i]):  # the denial ends with its clause
                end = min(end, i + 1)
                break
            i += 1
        rest = " ".join(after[end:])
    return " ".join([*out, rest])


def _about_problem(labelled: Sequence[tuple[str, str]]) -> bool:
    return any(k in {"stuck_on", "assignment"} for k, _ in labelled)


_ADMIN_HEADING = re.compile(
    r"^\W*(?:grading|grades?|rubric|marking|points|submission|submitting|how to submit|format(?:ting)?|length|"
    r"due dates?|deadlines?|late (?:work|policy|submissions?)|policies|policy|logistics|academic integrity|"
    r"collaboration|office hours|contact|schedule|materials)\b",
    re.I,
)
_SYLLABUS = re.compile(r"(?:^|/)(?:syllabus|course[-_ ]?info|schedule|policies)[^/]*$", re.I)
_ADMIN_WORDS = re.compile(
    r"\b(?:grad\w*|rubric|points?|marks?|submit\w*|format\w*|late|extension|due|deadline|word count|"
    r"pages?|policy|collaborat\w*|integrity)\b",
    re.I,
)


# one numbered problem of a sheet ("Problem 2 (8 points)", "Question 3", "Case 2: Digoxin ...", "Part B"),
# not a section about the whole assignment ("Autograder tests", "What the questions look like")
_PROBLEM_HEADING = re.compile(
    r"^\W*(?:problem|question|exercise|case|task|part)\s*(?:#\s*)?(?:\d+\b|(?<=\s)(?:[a-h]|[ivx]+)\b)", re.I
)


def _problem_topic(course: Course, passage: Passage) -> str | None:
    """The topic one numbered problem of an assignment sheet is about, when its own words name one
    clearly (the sheet's title, which names every topic of the set, left out). It depends on the course
    and the chunk alone, so it is worked out once per chunk (7 ms each time, on a chat turn) and kept
    while the course is the same object (a reloaded pack is a new one)."""
    if not passage.section or not _PROBLEM_HEADING.match(passage.section):
        return None
    key = (course.slug, passage.source, passage.section, passage.text)
    known = _PROBLEM_TOPICS.get(key)
    if known is not None and known[0] is course:
        return known[1]
    said = matching.without_titles(course, passage.text)
    topic = matching.best_of(matching.topic_scores(course, [said]))
    if len(_PROBLEM_TOPICS) >= _PROBLEM_TOPICS_KEPT:
        _PROBLEM_TOPICS.clear()
    _PROBLEM_TOPICS[key] = (course, topic)
    return topic


_PROBLEM_TOPICS: dict[tuple[str, str, str, str], tuple[Course, str | None]] = {}
_PROBLEM_TOPICS_KEPT = 1024


def _section(
    course: Course, passages: Sequence[Passage], labelled: Sequence[tuple[str, str]]
) -> Section | None:
    """The best chunk's section that shares words with the stuck point, notes before assignment sheets."""
    sheets = {a.file for a in course.assignments if a.file}
    about = " ".join(s for k, s in labelled if k in {"stuck_on", "assignment"})
    said = content_words(about)
    ranked = sorted(passages, key=lambda p: (p.source in sheets, -p.score))
    for passage in ranked:
        admin = _SYLLABUS.search(passage.source) or (
            passage.section and _ADMIN_HEADING.search(passage.section)
        )
        if admin and not _ADMIN_WORDS.search(about):
            continue  # "Grading", "Format" or the syllabus is not where a student stuck on the graph is stuck
        shared = said & content_words(f"{passage.title} {passage.section or ''} {passage.text}")
        if passage.source and len(shared) >= 2:
            return Section(
                source=passage.source,
                title=passage.title or passage.source,
                heading=passage.section,
                score=passage.score,
                topic=_problem_topic(course, passage) if passage.source in sheets else None,
            )
    return None
