"""Summary v1, composed for the professor from the policy's facts; the model may only polish the wording.

Structured fields (topic, assignment, request_type, urgency, difficulty) always come from the policy: a
135M model cannot be trusted with ids. The free text is composed here from the facts, which hold only
the student's clean sentences (junk, injected text and booking boilerplate never reach them), turned
into the third person and never cut mid-sentence. A model draft may replace a field only sentence by
sentence: each sentence is checked against the intake's evidence (``evidence.check_sentence``), and a
field left with too few usable sentences keeps the composed text. No function here raises on bad
model output.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from typing import Literal

import msgspec

from services.coursepack import Course
from services.gateway.intake import dates, guardrails, matching, policy
from services.gateway.intake.evidence import NUMBER, Evidence, usable_sentences
from services.gateway.intake.models import (
    Booking,
    Facts,
    Flags,
    InterviewState,
    Person,
    RequestType,
    Section,
    SuggestedMaterial,
    Summary,
    SummaryStatus,
)
from services.gateway.intake.text import (
    FEELING_WORDS,
    GENERIC_WORDS,
    LEADING_FILLER,
    NOTHING,
    clause_prefix,
    content_words,
    first_name,
    is_confused,
    is_non_answer,
    phrase_starts,
    sentences,
    stem,
    without_disclaimer,
    words,
)

FREE_FIELDS = ("issue_description", "student_attempts", "student_goal", "professor_prep_note")
_LIMITS = {
    "issue_description": 1200,
    "student_attempts": 800,
    "student_goal": 600,
    "professor_prep_note": 800,
}
_MIN_CHARS = {"issue_description": 40, "student_attempts": 8, "student_goal": 8, "professor_prep_note": 30}
_MIN_SENTENCES = {"issue_description": 2, "student_attempts": 1, "student_goal": 1, "professor_prep_note": 1}
_MIN_GROUNDED = {"professor_prep_note": 0.34}
NOT_STATED = "Not stated in the intake."
Mode = Literal["stuck", "attempts", "goal"]  # which fact a student sentence is rephrased for
QUOTE_WORDS = 15  # the one quotation an issue description may carry
_SENTENCE_CHARS = 260  # a longer student sentence is cut back to a whole clause
# What the student wants, as it follows "<name> wants ..." / "... and wants ...".
_WANTS: dict[RequestType, str] = {
    "concept": "help understanding a concept",
    "assignment": "help with an assignment",
    "exam_prep": "help preparing for an exam",
    "grade": "to talk about a grade",
    "draft_feedback": "feedback on a draft",
    "logistics": "help with course logistics",
    "other": "help",
}


class DraftText(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """The only part of the summary the model writes: plain-text fields, all optional."""

    issue_description: str = ""
    student_attempts: str = ""
    student_goal: str = ""
    professor_prep_note: str = ""


# ---------------------------------------------------------------- the composed summary


def build_summary(
    state: InterviewState,
    course: Course,
    booking: Booking,
    status: SummaryStatus,
    transcript_url: str,
) -> Summary:
    """The summary from facts alone: instant, never wrong about ids, always schema-valid."""
    facts = state.facts
    topic = facts.topic if facts.topic and course.topic(facts.topic) else "other"
    assignment = facts.assignment if facts.assignment and course.assignment(facts.assignment) else None
    request: RequestType = facts.request_type or ("assignment" if assignment else "other")
    flags = Flags(
        distress=state.flags.distress,
        off_topic=state.flags.off_topic,
        escalated_to_human=state.flags.escalated_to_human or status == "escalated",
    )
    issue = issue_text(state, course, booking, status)
    return Summary(
        booking_uid=booking.uid,
        course=course.code,
        student=Person(booking.student.name, booking.student.email),
        appointment_start=booking.start_time,
        status=status,
        topic=topic,
        assignment=assignment,
        request_type=request,
        issue_description=_fit(issue, "issue_description"),
        student_attempts=_fit(attempts_text(facts, course), "student_attempts"),
        student_goal=_fit(goal_text(facts, course), "student_goal"),
        difficulty=policy.difficulty(facts, state, course, booking),
        urgency=dates.urgency(facts, course, booking),
        professor_prep_note=_fit(prep_note(state, course, booking, status, issue), "professor_prep_note"),
        suggested_materials=materials(state, course),
        flags=flags,
        turns=state.turn,
        transcript_url=transcript_url,
    )


def issue_text(state: InterviewState, course: Course, booking: Booking, status: SummaryStatus) -> str:
    """2–4 sentences for the professor: who and what, where exactly they are stuck, what they tried."""
    facts = state.facts
    name = first_name(booking.student.name) or "The student"
    stuck = stuck_sentences(facts, course, limit=3)
    if status == "no_intake" or (not state.turn and not facts.stuck_on):
        first = f"{name} did not complete the intake chat before the meeting."
        known = (
            [_about(name, facts, course, lead="Their booking is about")] if _has_focus(facts, course) else []
        )
        rest = [*known, *stuck[:1]] or ["Nothing is known yet about what they need."]
        return " ".join([first, *rest[:2]])
    chosen: dict[str, str] = {"about": _about(name, facts, course)}
    chosen["stuck"] = stuck[0] if stuck else "They did not say exactly where they are stuck."
    if status == "escalated":
        chosen["note"] = "The chat was stopped early because the student seemed to be in distress."
    elif status == "partial":
        answers = f"{state.turn} answer" + ("" if state.turn == 1 else "s")
        chosen["note"] = f"The intake chat was not finished ({answers})."
    # the student's own details carry their key terms; what they tried has its own field
    for key, sentence in zip(("stuck2", "stuck3"), stuck[1:], strict=False):
        if len(chosen) < 4:
            chosen[key] = sentence
    tried = _tried_sentence(facts, course)
    if tried and len(chosen) < 4:
        chosen["tried"] = tried
    order = ("about", "stuck", "stuck2", "stuck3", "tried", "note")
    return " ".join(dict.fromkeys(chosen[k] for k in order if k in chosen))  # a sentence said once


def _has_focus(facts: Facts, course: Course) -> bool:
    return bool(
        (facts.assignment and course.assignment(facts.assignment))
        or (facts.topic and course.topic(facts.topic))
    )


def _about(name: str, facts: Facts, course: Course, *, lead: str = "") -> str:
    """Who, which assignment and its due date (or the topic, or "not tied to an assignment"), what help."""
    assignment = course.assignment(facts.assignment) if facts.assignment else None
    topic = course.topic(facts.topic) if facts.topic else None
    due = dates.due_date(facts, course)
    when = f" (due {_day(due)})" if due else ""
    if lead:
        what = assignment.title if assignment else _lower_first(topic.title) if topic else "this course"
        return f"{lead} {what}{when if assignment else ''}."
    kind = facts.request_type or ("assignment" if assignment else "other")
    wants = "help working through it" if kind == "assignment" and assignment else _WANTS[kind]
    if kind == "assignment" and not assignment and facts.no_assignment:
        wants = _WANTS["other"]  # never "help with an assignment (not tied to an assignment)"
    if assignment:
        return f"{name} is working on {assignment.title}{when} and wants {wants}."
    free = " (not tied to an assignment)" if facts.no_assignment else ""
    if topic:
        return f"{name} wants {wants} in {_lower_first(topic.title)}{free}."
    return f"{name} wants {wants}{free}{when if facts.deadline else ''}."


def _day(day: dt.date) -> str:
    return f"{day:%A}, {day:%B} {day.day}"


def stuck_sentences(facts: Facts, course: Course, limit: int = 2) -> list[str]:
    """The most telling sentences of the stuck point, in the third person, in the order they were said.

    At most one of them is a short quotation, and only of an error message or code, where the
    exact words matter to the professor.
    """
    # the first sentence says the assignment's words; feelings aren't the problem
    named = _assignment_words(facts, course) | FEELING_WORDS | _addressing(course)
    said = " ".join(x for x in (facts.stuck_on, facts.example) if x)
    said_sentences = clean_sentences(said)
    if facts.no_assignment:
        said_sentences = [without_disclaimer(s) for s in said_sentences]
    # a sentence that only says where the question comes from ("I need help with PA 4, the one due this
    # Tuesday") is no stuck sentence: the first sentence names the assignment, and after a correction at
    # the recap the one it named was the wrong one
    pool = [
        s
        for s in dict.fromkeys(said_sentences)
        if informative(s) - named and policy.substance(s, course) - named
    ]
    if not pool:
        return []
    focus = _course_terms(course)
    keep = proper_nouns(facts, course)
    ranked = sorted(range(len(pool)), key=lambda i: -_weight(pool[i], named, focus))
    out: list[str] = []
    quoted = False
    for i in sorted(ranked[:limit]):
        sentence = pool[i]
        if not quoted and _quotable(sentence):
            out.append(f"In their words: “{_plain(sentence)}”.")
            quoted = True
        elif composed := third_person_sentence(sentence, mode="stuck", keep=keep):
            out.append(composed)
    if not out:
        terms = key_terms(facts.stuck_on or "", course)
        out = [f"They describe a problem involving {_and_list(terms)}."] if terms else []
    return out


# "This isn't for the care plan or the final, it's from Tuesday's lecture": the summary's first sentence
# already says the meeting is not tied to an assignment; what follows the clause is kept


# how students address the staff ("Hi po Dr. Okonjo-Marsh!", "Buenos días profe"): a greeting, no problem
_HONORIFICS = content_words(
    "dr doctor prof professor profe profesor profesora sir maam madam miss mr mrs ms po"
)


def _addressing(course: Course) -> set[str]:
    """Words that only address someone: honorifics and the names of the course's staff."""
    names = " ".join([course.instructor_name, *(m.name for m in course.staff)]).replace("-", " ")
    return set(_HONORIFICS) | content_words(names)


def _assignment_words(facts: Facts, course: Course) -> set[str] | frozenset[str]:
    """Words that only name the assignment ("ps3", "problem set 3"): the first sentence already says them."""
    if not facts.assignment:
        return GENERIC_WORDS | _VAGUE
    return matching.assignment_words(course, facts.assignment) | GENERIC_WORDS | _VAGUE


def _weight(sentence: str, named: set[str] | frozenset[str], focus: set[str]) -> float:
    """Specific sentences first: content words that are not ``named`` (the assignment's, generic, feelings),
    course vocabulary, an error message."""
    own = informative(sentence) - named
    score = len(own) + 1.5 * len(own & focus) + (2.0 if _CODE.search(sentence) else 0.0)
    if len(sentence.split()) > 45 or _TO_THE_BOT.search(sentence):
        score -= 3.0
    return score


# a sentence asking the bot for something ("can you tell me", "you should") says little about the problem;
# "in the lecture you showed that b = a" (the professor) does
_TO_THE_BOT = re.compile(
    r"\b(?:can|could|would|will|won't|do|did) you\b|\byou (?:should|must|need to|have to)\b|"
    r"\bthank(?:s| you)\b",
    re.I,
)
_VAGUE = content_words(
    "stuck confused lost struggling understand trouble hard difficult part problem question"
)
_CODE = re.compile(r"\b[A-Z]\w*(?:Error|Exception)\b|\bTraceback\b|[`{}\[\]=<>]|\w\(")


def _quotable(sentence: str) -> bool:
    """An error message or a line of code, short and whole: the exact words matter to the professor."""
    return (
        bool(_CODE.search(sentence))
        and len(sentence.split()) <= QUOTE_WORDS
        and not _cut(sentence)
        and len(sentences(_plain(sentence))) == 1
    )


def _plain(sentence: str) -> str:
    return " ".join(sentence.split()).rstrip(" .!;:,")


def key_terms(text: str, course: Course, n: int = 4) -> list[str]:
    """The student's own words that carry the problem, course vocabulary first, in the order said."""
    focus = _course_terms(course)
    seen: dict[str, str] = {}
    for word in words(text):
        stemmed = next(iter(content_words(word)), "")
        if stemmed and stemmed not in seen and stemmed not in GENERIC_WORDS | _VAGUE:
            seen[stemmed] = word
    ranked = sorted(seen, key=lambda s: (s not in focus, list(seen).index(s)))[:n]
    return [seen[s] for s in sorted(ranked, key=list(seen).index)]


def _course_terms(course: Course) -> set[str]:
    parts = [t.title + " " + " ".join(t.keywords) for t in course.topics]
    parts += [a.title + " " + " ".join(a.keywords) for a in course.assignments]
    return content_words(" ".join(parts)) - GENERIC_WORDS


def _tried_sentence(facts: Facts, course: Course) -> str | None:
    text = attempts_text(facts, course)
    if text == NOT_STATED:
        return None
    first = sentences(text)[0]
    past = _PAST.match(first.removeprefix("They ")) and "tried:" not in first
    return "So far " + _lower_first(first) if past else first


def attempts_text(facts: Facts, course: Course) -> str:
    """What they tried, as tidy third-person sentences."""
    if not facts.attempts:
        return NOT_STATED
    if NOTHING.match(facts.attempts.strip()):
        return "They have not tried anything yet."
    return _rephrased(facts.attempts, "attempts", proper_nouns(facts, course))


def goal_text(facts: Facts, course: Course) -> str:
    """What they want from the meeting, as tidy third-person sentences."""
    return _rephrased(facts.goal, "goal", proper_nouns(facts, course)) if facts.goal else NOT_STATED


def _rephrased(text: str, mode: Mode, keep: frozenset[str]) -> str:
    out = [s for s in (third_person_sentence(x, mode=mode, keep=keep) for x in clean_sentences(text)) if s]
    return " ".join(out) or NOT_STATED


def clean_sentences(text: str | None) -> list[str]:
    """The sentences of a fact worth repeating to the professor. Reading already keeps junk and injected
    text out of the facts; this second look means a slip there still never reaches the summary."""
    return [
        s
        for s in sentences(text or "")
        if informative(s)
        and not is_non_answer(s)
        and not _NOTHING_TO_SHOW.search(s)
        and not is_confused(s)
        and guardrails.screen(s).kind not in {"injection", "homework"}
    ]


def informative(sentence: str) -> set[str]:
    """The content words of a sentence that say something ("No, that's it, thanks!" says nothing)."""
    return content_words(sentence) - _SAYS_NOTHING


_SAYS_NOTHING = content_words(  # courtesy, and words that name no problem
    "thanks thank that's that everything nothing else okay please sorry hello bye great cool fine sure "
    "anyway hola bonjour salut ciao hallo namaste oi gracias merci danke "
    # and words that name no problem ("just lecture stuff", "quick q about the material")
    "stuff things thing lecture lectures material materials content question questions quick"
)
# "I don't have it with me right now": an answer to "could you paste ...", not something to tell the professor
_NOTHING_TO_SHOW = re.compile(
    r"\b(?:don'?t|do not|didn'?t) (?:have|bring) (?:it|them|that|the \w+|my \w+) "
    r"(?:with me|on me|here|right now|at the moment)\b",
    re.I,
)


# ---------------------------------------------------------------- first person -> third person

_THIRD = (
    (r"\bI'm\b|\bIm\b|\bI am\b", "they're"),
    (r"\bI was\b", "they were"),
    (r"\bI wasn'?t\b", "they weren't"),
    (r"\bI've\b|\bIve\b", "they've"),
    (r"\bI'd\b", "they'd"),
    (r"\bI'll\b", "they'll"),
    (r"\bI\b", "they"),
    (r"\bmyself\b", "themselves"),
    (r"\bmy\b", "their"),
    (r"\bme\b", "them"),
    (r"\bmine\b", "theirs"),
    (r"\bwe're\b", "they're"),
    (r"\bwe\b", "they"),
    (r"\bour\b", "their"),
    (r"\bam\b", "are"),
)
_SUBJECTS = {"they", "they're", "they've", "they'd", "they'll", "their", "them", "themselves"}
_ABOUT = re.compile(
    r"^(?:how|why|what|when|where|which|whether|who|the|a|an|this|that|these|those|some|any|all|"
    r"understanding|getting|figuring|knowing|choosing|using|writing|reading|finding|making|doing)\b",
    re.I,
)
_STATE = re.compile(  # "still unsure about page numbers" -> "They are still unsure about page numbers."
    r"^(?:(?:still|really|very|so|quite|totally|completely|just|a bit|kind of|a little)\s+)*"
    r"(?:stuck|confused|lost|struggling|unsure|not sure|having trouble)\b",
    re.I,
)
_FINITE = re.compile(
    r"\b(?:(?:it|that|there|this|what|he|she)'s|is|are|was|were|do|does|did|don't|doesn't|didn't|can|can't|cannot|won't|will|would|keeps?|fails?|"
    r"gives?|says?|returns?|prints?|shows?|runs?|works?|crash(?:es)?|has|have|gets?|goes|stops?|ends?|"
    r"breaks?|happens?|seems?|makes?|needs?|comes?|counts?|skips?|loops?)\b",
    re.I,
)
_PAST = re.compile(
    r"^(?:\w+ed|read|re-read|reread|went|tried|watched|asked|did|wrote|made|ran|got|spent|saw|talked|"
    r"googled|checked|looked|followed|used|searched|found|rewrote|redid|started|practiced|practised)\b",
    re.I,
)
_GOAL_VERB = re.compile(
    r"^(?:understand|know|learn|get|finish|fix|figure|see|check|go|talk|review|make|improve|pass|be|have|"
    r"find|write|do|practice|practise|start|work|feel|walk|confirm|clarify|catch|debug|submit|prepare)\b",
    re.I,
)


_LEARNING = re.compile(r"^(?:understand|know|learn|see|figure|get)\b", re.I)
_ADVERB = re.compile(r"^(?:(?:actually|really|just|finally|also|still|mostly|mainly|basically)\s+)+", re.I)
# a task verb with its object ("read it right", "explain the graph"), not a noun ("test cases", "use case")
_TASK_OBJECT = re.compile(
    r"^\w+(?: up| out)? (?:it|them|this|that|these|those|the|a|an|my|our|each|every|how|why|what|which|when|"
    r"where|whether)\b",
    re.I,
)
_TASK_VERB = re.compile(
    r"^(?:draw|explain|solve|calculate|compute|derive|prove|graph|plot|balance|interpret|convert|set up|"
    r"build|choose|decide|apply|use|structure|organi[sz]e|cite|compare|identify|label|estimate|tell|"
    r"connect|link|justify|argue|reconstruct|read|trace|test|turn)\b",
    re.I,
)
_DROPPED_I = re.compile(
    r"^(?:(?:get|got) (?:an? |-?\d|none\b|nan\b|\w*error)|(?:keep|kept|have|had|can't|cannot|don't|didn't|"
    r"still)\b)",
    re.I,
)
_NOUN_PHRASE = re.compile(
    r"^(?:the|a|an|this|that|these|those|some|any|all|both|one|two|three|four|five|\d+)\b", re.I
)
_WH = re.compile(r"\b(?:which|what|how|why|when|where|whether|who)\b", re.I)


# function words of the languages students code-switch into most (Spanish, French, Portuguese, Italian,
# German): in a sentence that has several, "me" and "mi" are not English ("me salieron" stays as it is)
_OTHER_LANGUAGE = re.compile(
    r"\b(?:que|los|las|el|la|del|para|pero|por|con|una|sé|está|es|mi|mis|les|des|une|est|pas|avec|"
    r"pour|não|com|uma|você|und|das|ist|nicht|ich|mit|che|non|il|sono)\b",
    re.I,
)


def third_person(text: str) -> str:
    """The student's words about themselves, said of them: "I can't get my loop to stop" -> "they can't
    get their loop to stop" ("they" takes the same verb forms as "I", apart from am/was). A sentence in
    (or switching into) another language keeps its "me"."""
    out = text.replace("’", "'")
    other = len(_OTHER_LANGUAGE.findall(out)) >= 2
    for pattern, repl in _THIRD:
        if other and repl == "them":
            continue
        out = re.sub(pattern, repl, out, flags=re.I)
    return out


def third_person_sentence(sentence: str, *, mode: Mode, keep: frozenset[str] = frozenset()) -> str | None:
    """One of the student's sentences as a whole third-person sentence, or None when nothing usable is left.

    ``mode`` is the slot it fills: a bare fragment becomes "They are stuck on …", "They tried …" or "They
    want …". ``keep``: words that stay capitalised (see ``proper_nouns``).
    """
    text = _clause(sentence)
    if not text:
        return None
    question = text.endswith("?")
    body = third_person(LEADING_FILLER.sub("", text).rstrip(" ?.!;:,-"))
    if len(content_words(body)) == 0:
        return None
    lead = body.split()[0].lower().strip(",")
    end = "?" if question else "."
    if lead in _SUBJECTS:
        return _upper_first(body) + end
    if question:
        return f"They ask: {_lower_first(body, keep)}?"
    low = _lower_first(body, keep)
    if mode == "attempts":
        if _PAST.match(body):
            return f"They {low}."
        return f"They tried {low}." if re.match(r"^\w+ing\b", body) else f"They tried: {low}."
    if mode == "goal":
        if body.lower().startswith("to "):
            return f"They want {low}."
        verb = _ADVERB.sub("", body)  # "actually get the difference", "just read it right"
        if _GOAL_VERB.match(verb) or (_TASK_VERB.match(verb) and _TASK_OBJECT.match(verb)):
            return f"They want to {low}."
        if not _FINITE.search(body):
            return f"They want {low}."
        return f"They say {low}."
    if _STATE.match(body):
        return f"They are {low}."
    if re.match(r"^(?:how|why|what|when|where|which|whether|who)\b", body, re.I) or (
        _ABOUT.match(body) and not _FINITE.search(body)
    ):
        return f"They are stuck on {low}."
    if not _FINITE.search(body) and len(body.split()) <= 6:
        return f"They are stuck on {low}."
    if body.lower().startswith("to "):  # "to understand how to use the equation of the line"
        return f"They want {low}."
    if _DROPPED_I.match(body):  # "get a KeyError on line 5": the student left out "I"
        return f"They {low}."
    if (_GOAL_VERB.match(body) or _TASK_VERB.match(body)) and not re.match(r"^\w+s\b", body):
        # a bare verb: what they want to grasp ("understand when a higher price brings in less") or do
        # ("draw the graph and explain it")
        return f"They want to {low}." if _LEARNING.match(body) else f"They are stuck on how to {low}."
    finite = _FINITE.search(body)
    if _NOUN_PHRASE.match(body) and _WH.search(body[: finite.start()] if finite else body):
        # a noun phrase whose first verb is inside a wh-clause ("two sources of error and which way
        # each one moves the yield", "the part where the loop stops"): what they are stuck on
        return f"They are stuck on {low}."
    return f"They say {low}."


def _clause(sentence: str) -> str:
    """A whole sentence no longer than ``_SENTENCE_CHARS``: an over-long or clipped one is cut back to its
    last complete clause; nothing is left when there is none."""
    text = " ".join(sentence.split())
    clipped = _cut(text)
    text = text.rstrip("…").rstrip()
    if not clipped and len(text) <= _SENTENCE_CHARS:
        return text
    return clause_prefix(text, _SENTENCE_CHARS)


def _cut(text: str) -> bool:
    return text.rstrip().endswith("…")


def _lower_first(text: str, keep: frozenset[str] = frozenset()) -> str:
    """Lower-case the first letter unless the first word is a name or an acronym ("Python", "RStudio")."""
    first = text.split()[0].strip(",.:;") if text.split() else ""
    if len(first) > 1 and first[1:].islower() and first.lower() not in keep | _KEEP_CAPITAL:
        return text[0].lower() + text[1:]
    return text


_KEEP_CAPITAL = frozenset(
    ["python", "java", "javascript", "excel", "matlab", "english", "spanish", "french", "german", "latin"]
)


def proper_nouns(facts: Facts, course: Course) -> frozenset[str]:
    """Words written capitalised in the middle of a sentence (the student's or the course's keywords):
    names and products that keep their capital when a sentence is rephrased around them."""
    texts = [facts.stuck_on, facts.attempts, facts.goal, facts.context, facts.example]
    texts += [k for t in course.topics for k in t.keywords] + [
        k for a in course.assignments for k in a.keywords
    ]
    found = set()
    for text in texts:
        for sentence in sentences(text or ""):
            found |= {w.lower() for w in words(sentence)[1:] if w[:1].isupper() and w[1:].islower()}
        if text and " " not in text.strip() and text[:1].isupper():
            found.add(text.strip().lower())  # a one-word keyword such as "Gradescope"
    return frozenset(found)


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _and_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# ---------------------------------------------------------------- prep note and materials


def prep_note(
    state: InterviewState, course: Course, booking: Booking, status: SummaryStatus, issue: str | None = None
) -> str:
    """Actionable, most important first: distress, the matched section, the sheet and its due date, the
    answers to the course's own questions, the course terms the student used that neither this note nor
    the issue text says (``issue``: ``issue_text``'s, when the caller has it), what to ask them to bring."""
    facts = state.facts
    notes: list[str] = []
    if status == "escalated" or state.flags.distress:
        notes.append(
            "The student expressed distress and was shown the support resources; consider checking in "
            "with them before the meeting."
        )
    assignment = course.assignment(facts.assignment) if facts.assignment else None
    on_sheet = bool(facts.section and assignment and facts.section.source == assignment.file)
    if facts.section and not (on_sheet and not _heading(facts.section)):
        notes.append(_look_at(facts.section))  # the whole sheet is named in the next sentence
    due = dates.due_date(facts, course)
    urgency = dates.urgency(facts, course, booking)
    when = f", due {_day(due)} (urgency {urgency})" if due else ""
    if assignment:
        sheet = f" ({assignment.file})" if assignment.file else ""
        notes.append(f"Review the {assignment.title} sheet{sheet}{when}.")
    elif due:
        notes.append(f"Their deadline is {_day(due)} (urgency {urgency}).")
    if state.materials != "ok":
        notes.append(_MATERIALS_NOTE[state.materials])
    topic = course.topic(facts.topic) if facts.topic else None
    if topic and (not facts.section or on_sheet):
        notes.append(f"Have your notes on {_lower_first(topic.title)} ready.")
    notes += [_answer(q.ask, facts.custom[q.id]) for q in course.questions if facts.custom.get(q.id)]
    issue = issue_text(state, course, booking, status) if issue is None else issue
    written = " ".join([issue, *notes]).lower().replace("-", " ")
    if terms := [t for t in course_terms_said(facts, course) if t.lower() not in written]:
        notes.append(f"Course terms they used: {', '.join(terms)}.")
    if bring := _bring(facts, assignment is not None):
        notes.append(bring)
    if not notes:
        notes.append(
            "Little is known yet: start by asking what the student needs, and check their booking note."
        )
    return _whole(notes, _LIMITS["professor_prep_note"])


def course_terms_said(facts: Facts, course: Course, limit: int = 5) -> list[str]:
    """The course's topic vocabulary (titles and keywords; an assignment's keywords mostly name it) in the
    student's words, as they wrote it, the longest phrase where two overlap, in the order said: "read the
    meniscus", "standard form", "molar mass" tell the professor where the problem sits in the course.
    Words of the assignment's title (the summary's first sentence has them), anything with a number
    ("lab 6") and generic words ("report", "test") are left out."""
    fields = (
        facts.stuck_on,
        facts.example,
        facts.attempts,
        facts.goal,
        facts.context,
        *facts.custom.values(),
    )
    surface = _LETTER_WORDS.findall(" ".join(x for x in fields if x))
    said_stems = [stem(w) for w in surface]
    named = course.assignment(facts.assignment) if facts.assignment else None
    own = content_words(f"{named.title} {named.id.replace('-', ' ')}") if named else set()
    vocabulary = {t.title for t in course.topics} | {k for t in course.topics for k in t.keywords}
    found: list[tuple[int, int]] = []  # (start, length) in the student's words
    taken: set[int] = set()  # word positions a longer phrase already covers
    for phrase in sorted(vocabulary, key=lambda p: -len(_LETTER_WORDS.findall(p))):
        phrase_stems = [stem(w) for w in _LETTER_WORDS.findall(phrase)]
        if not phrase_stems or any(c.isdigit() for c in phrase) or set(phrase_stems) <= own | GENERIC_WORDS:
            continue
        if len(phrase_stems) == 1 and _common_word(phrase):
            continue
        for start in phrase_starts(said_stems, phrase_stems):
            span = set(range(start, start + len(phrase_stems)))
            if not span & taken:
                found.append((start, len(phrase_stems)))
                taken |= span
    # one per phrase, as first written: "codons" and "codon", "Chi square" and "chi square"
    terms: dict[tuple[str, ...], str] = {}
    for start, n in sorted(found):
        terms.setdefault(tuple(said_stems[start : start + n]), " ".join(surface[start : start + n]))
    return list(terms.values())[:limit]


_LETTER_WORDS = re.compile(r"[^\W_]+(?:'[^\W_]+)?")  # words in any alphabet: "Composición" stays whole


def _common_word(keyword: str) -> bool:
    """A single keyword that is an everyday English word ("test", "sound", "loops", "how") says little on
    its own; a technical one ("burette", "meniscus", "codon") or an acronym or identifier ("FBD",
    "KeyError") says where the problem sits. Everyday: a whole word of the encoder's vocabulary."""
    if not content_words(keyword) - GENERIC_WORDS:
        return True
    return sum(c.isupper() for c in keyword) < 2 and keyword.lower() in guardrails.english_words()


_MATERIALS_NOTE = {
    "keyword_only": "The course materials were searched by keyword only during this chat (the vector "
    "index was down), so the suggested sections may be less precise.",
    "unavailable": "The course materials could not be searched during this chat, so no sections are "
    "suggested from them.",
}


def _look_at(section: Section) -> str:
    heading = _heading(section)
    if heading and heading.lower() != section.title.lower():
        return f"Look at '{heading}' in {section.title} ({section.source})."
    return f"Look at {section.title} ({section.source})."


def _heading(section: Section) -> str | None:
    """The section heading as a person reads it (no Markdown marks)."""
    return " ".join(re.sub(r"[`*_#]+", "", section.heading or "").split()) or None


_LABEL = re.compile(
    r"^(?:what|which) (?:is|are|was|were) (?:the )?(.+?)(?:,? if (?:there is one|any))?\?$", re.I
)


def _answer(ask: str, answer: str) -> str:
    """The student's answer to one of the course's own questions, labelled so it reads on its own."""
    said = _clip_words(answer, 200).rstrip(" .")
    said = f"“{said}”" if _CODE.search(said) else said
    if m := _LABEL.match(ask.strip()):
        label = _upper_first(re.sub(r"\byour\b", "their", re.sub(r"\byou\b", "they", m[1], flags=re.I)))
        return f"{label}: {said}."
    return f"Asked “{ask.strip()}”, they answered: {said}."


def _clip_words(text: str, limit: int) -> str:
    """At most ``limit`` characters on a word boundary, without an ellipsis (it is shown in quotes)."""
    text = " ".join(text.split()).rstrip("…").rstrip()
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0].rstrip(",;:")


def _bring(facts: Facts, has_assignment: bool) -> str | None:
    kind = facts.request_type
    if kind == "draft_feedback":
        return "Ask them to bring their current draft."
    if kind == "grade":
        return "Have the graded work and the rubric at hand."
    if kind == "exam_prep":
        return "Ask them to bring the practice problems they found hardest."
    if kind == "logistics":
        return "Have the syllabus policy they ask about at hand."
    if kind == "assignment" or has_assignment:
        return "Ask them to bring their current work on it."
    if kind == "concept":
        return "Ask them to bring one example that confuses them."
    return None


def materials(state: InterviewState, course: Course) -> list[SuggestedMaterial]:
    """The matched section first, then the assignment sheet, then other retrieved sources: at most 3."""
    facts = state.facts
    assignment = course.assignment(facts.assignment) if facts.assignment else None
    sheet = assignment.file if assignment else None
    out: list[SuggestedMaterial] = []
    if facts.section:
        on_sheet = facts.section.source == sheet
        why = (
            "The part of the assignment sheet the student's stuck point matched."
            if on_sheet
            else "Where the course materials cover the student's stuck point."
        )
        out.append(SuggestedMaterial(facts.section.title, facts.section.source, why, _heading(facts.section)))
    if assignment and sheet and all(m.source != sheet for m in out):
        out.append(
            SuggestedMaterial(assignment.title, sheet, "The assignment sheet the student is working on.")
        )
    focus = content_words(
        " ".join(x for x in (assignment.title if assignment else "", _topic_words(course, facts)))
    )
    ranked = [
        (rank, SuggestedMaterial(title, source, why))
        for source in dict.fromkeys(state.context_sources)
        if all(m.source != source for m in out)
        for title, why, rank in [_describe(source, course, focus, assignment is not None)]
    ]
    ranked.sort(key=lambda r: r[0])
    if out or (ranked and ranked[0][0] < 3):
        ranked = [r for r in ranked if r[0] < 3]  # unrelated context is noise once something related exists
    return [*out, *(m for _, m in ranked)][:3]


def _topic_words(course: Course, facts: Facts) -> str:
    topic = course.topic(facts.topic) if facts.topic else None
    return f"{topic.title} {topic.id}" if topic else ""


def _describe(source: str, course: Course, focus: set[str], has_assignment: bool) -> tuple[str, str, int]:
    owner = next((a for a in course.assignments if a.file == source), None)
    if owner:  # another assignment's sheet is noise once the student's own is known
        return owner.title, "Related assignment sheet.", 3 if has_assignment else 2
    stem = source.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    title = re.sub(r"[-_]+", " ", stem).strip().capitalize() or source
    if content_words(stem.replace("-", " ")) & focus:
        return title, "Course notes on the topic the student raised.", 1
    return title, "Retrieved as context for the interview.", 3


def _fit(text: str, field: str) -> str:
    """Respect the Summary's max_length (a hard schema limit) by dropping whole sentences, never cutting."""
    return _whole(sentences(" ".join(text.split())), _LIMITS[field]) or NOT_STATED


def _whole(parts: list[str], limit: int) -> str:
    """As many whole sentences as fit in ``limit`` characters, in order (the first one always, shortened
    to its words if it alone is too long)."""
    out = ""
    for part in parts:
        joined = f"{out} {part}".strip()
        if len(joined) > limit:
            break
        out = joined
    if not out and parts:
        out = _clip_words(parts[0], limit - 1).rstrip(".") + "."
    return out


# ---------------------------------------------------------------- model drafts


def extract_json(text: str) -> dict[str, object] | None:
    """The first balanced JSON object in ``text`` (small models wrap JSON in prose or code fences)."""
    start = text.find("{")
    while start != -1:
        depth, in_string, escape = 0, False, False
        for i in range(start, len(text)):
            ch = text[i]
            if in_string:
                escape = ch == "\\" and not escape
                if ch == '"' and not escape:
                    in_string = False
                continue
            if ch == '"':
                in_string = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    try:
                        value = json.loads(text[start : i + 1])
                    except ValueError:
                        break
                    return value if isinstance(value, dict) else None
        start = text.find("{", start + 1)
    return None


def parse_draft(text: str) -> DraftText:
    """Model output -> ``DraftText`` (empty fields when unusable); never raises."""
    raw = extract_json(text) or {}
    clean = {
        k: " ".join(str(v).split())
        for k, v in raw.items()
        if k in FREE_FIELDS and isinstance(v, (str, int, float))
    }
    try:
        return msgspec.convert(clean, DraftText)
    except msgspec.ValidationError:
        return DraftText()


def evidence_for(
    state: InterviewState, course: Course, booking: Booking, composed: Summary, others: Iterable[Course] = ()
) -> Evidence:
    """What a draft may state: the intake's evidence plus the composed summary's own words."""
    texts = [getattr(composed, f) for f in FREE_FIELDS]
    texts += [f"{m.title} {m.source} {m.section or ''}" for m in composed.suggested_materials]
    return Evidence.from_intake(state, course, booking, extra=texts, others=others)


def draftable(state: InterviewState) -> list[str]:
    """The fields a draft can improve: attempts and goal only when the student stated them."""
    facts = state.facts
    skip = {"student_attempts": not facts.attempts, "student_goal": not facts.goal}
    return [f for f in FREE_FIELDS if not skip.get(f, False)]


def usable_fields(
    draft: DraftText,
    evidence: Evidence,
    state: InterviewState,
    course: Course,
    composed: Summary | None = None,
) -> dict[str, str]:
    """The drafted fields that may replace the composed ones, each reduced to its sentences that pass
    the evidence check. A field is left out when too few sentences survive, when it talks about
    something the student never said (attempts or goal unknown), or when it drops what the professor
    needs from it (the issue's assignment and key terms, the prep note's section), or, given the
    ``composed`` summary, a specific of the composed field (see ``keeps_specifics``)."""
    out: dict[str, str] = {}
    for field in FREE_FIELDS:
        value: str = getattr(draft, field)
        kept = usable_sentences(value, evidence, min_grounded=_MIN_GROUNDED.get(field, 0.5))
        text = _whole(kept[:4] if field == "issue_description" else kept, _LIMITS[field])
        if (
            len(sentences(text)) >= _MIN_SENTENCES[field]
            and len(text) >= _MIN_CHARS[field]
            and _keeps_essentials(field, text, state, course)
            and (
                composed is None
                or field not in _SAID_FOR
                or keeps_specifics(text, getattr(composed, field), _SAID_FOR[field](state.facts), course)
            )
        ):
            out[field] = text
    return out


def keeps_specifics(polished: str, composed: str, said: str, course: Course) -> bool:
    """Polish changes the wording, never the content. Of what the student ``said`` for this field, every
    number the ``composed`` text carries, every quoted span of it, and most of its key terms (assignment
    titles aside) are still in the ``polished`` text. Seen with
    the fine-tuned model on a held-out student: "They say abstract is 260 words, limit 150. They tried:
    cut the intro sentences." polished into "They are stuck on Abstract. They say they are kind of
    stuck." and "They tried the exact same notes"."""
    numbers = set(NUMBER.findall(said)) & set(NUMBER.findall(composed))
    if not numbers <= set(NUMBER.findall(polished)):
        return False
    low = polished.lower()
    if any(quote.lower() not in low for quote in _QUOTE.findall(composed)):
        return False
    terms = _term_stems(matching.without_titles(course, said), course) & content_words(composed)
    return _keeps_most(terms, polished)


def _term_stems(said: str, course: Course) -> set[str]:
    """The stems of the student's ``key_terms`` (a number stays as written)."""
    return {next(iter(content_words(t)), t.lower()) for t in key_terms(said, course)}


def _keeps_most(terms: set[str], text: str) -> bool:
    """At least half the terms (rounded up) are in the text."""
    return len(terms & content_words(text)) >= (len(terms) + 1) // 2


# what the student said that each field is written from (the prep note has its own essentials)
_SAID_FOR = {
    "issue_description": lambda f: " ".join(x for x in (f.stuck_on, f.example) if x),
    "student_attempts": lambda f: f.attempts or "",
    "student_goal": lambda f: f.goal or "",
}
_QUOTE = re.compile(r"“([^”]{1,300})”")


def _keeps_essentials(field: str, text: str, state: InterviewState, course: Course) -> bool:
    facts = state.facts
    low = text.lower()
    if field in {"student_attempts", "student_goal"}:
        return field in draftable(state)
    assignment = course.assignment(facts.assignment) if facts.assignment else None
    names_assignment = not assignment or any(
        n.lower() in low for n in {assignment.title, assignment.title.split(":")[0], assignment.file or "\0"}
    )
    if field == "professor_prep_note":
        # a polished note still sends the professor to the section and the sheet, says when it is due
        # and carries the answers to the course's own questions
        section = facts.section
        names = [section.source, section.title, _heading(section) or section.title] if section else []
        due = dates.due_date(facts, course)
        said = content_words(text)
        return (
            (not names or any(n.lower() in low for n in names))
            and names_assignment
            and (due is None or re.search(rf"\b{due.day}\b", text) is not None)
            and all(
                content_words(answer) & said or not content_words(answer)
                for q_id, answer in facts.custom.items()
                if any(q.id == q_id for q in course.questions)
            )
        )
    if not names_assignment:
        return False
    # the issue keeps most of the student's key terms, not just one of them
    return _keeps_most(_term_stems(facts.stuck_on or "", course), text)


def merge(summary: Summary, usable: Mapping[str, str]) -> Summary:
    """The composed summary with the usable drafted fields swapped in."""
    return msgspec.structs.replace(summary, **{f: _fit(v, f) for f, v in usable.items() if f in FREE_FIELDS})


def today_for(course: Course) -> dt.date:
    """Today in the course's timezone (relative deadlines like "Friday" are the student's Friday)."""
    try:
        from zoneinfo import ZoneInfo

        return dt.datetime.now(ZoneInfo(course.timezone)).date()
    except Exception:
        return dt.date.today()
