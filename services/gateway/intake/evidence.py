"""Evidence: what a model-written summary sentence is allowed to state.

A small model polishing the professor's summary invents things: a student's name, a due date, a topic
from a course it was trained on. Every sentence it writes is checked against what this intake actually
holds: the student's clean words, the booking, this course pack's names, and the facts the summary was
composed from. A sentence naming a person, date, number or course term that is not there is dropped,
and so is one that solves, leaks, talks about JSON or is mostly about things nobody said. No I/O.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterable, Sequence

import msgspec

from services.coursepack import Course
from services.gateway.intake import guardrails
from services.gateway.intake.models import Booking, InterviewState
from services.gateway.intake.text import (
    GENERIC_WORDS,
    STOPWORDS,
    content_words,
    sentences,
    stem,
    stems,
    words,
)

MIN_GROUNDED = 0.5  # share of a sentence's content words that must come from the evidence

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_MONTH_RE = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)(?:[a-z]*)\.?"
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_DATE_PATTERNS = (
    re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b"),
    re.compile(r"\b(\d{1,2})/(\d{1,2})(?:/(\d{2,4}))?\b"),
    re.compile(rf"\b{_MONTH_RE}\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(\d{{4}}))?", re.I),
    re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH_RE}(?:,?\s+(\d{{4}}))?", re.I),
)
_RELATIVE_DAYS = frozenset(["today", "tonight", "tomorrow", "yesterday", "weekend"])
NUMBER = re.compile(r"\d+(?:[.,]\d+)?")  # a number as written ("3", "0.25", "16,55")
_CAPITALISED = re.compile(r"(?<![\w-])([A-Z][\w'’-]*|[a-z]+[A-Z][\w'’-]*)")
_QUOTED = re.compile(r"[\"“”]([^\"“”]{1,300})[\"“”]")
_FIRST_PERSON = re.compile(r"\bI\b|\b(?:I'm|I've|I'd|I'll|me|my|mine|myself|we|our|us)\b")
_META = re.compile(
    r"\b(?:json|schema|fields?|keys?|issue_description|student_attempts|student_goal|professor_prep_note|"
    r"prep note|placeholder|n/a|unknown)\b|\bhere (?:is|are) (?:the|a|my)\b|\bas requested\b",
    re.I,
)


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


_TITLES = frozenset(["dr", "prof", "professor", "mr", "mrs", "ms", "mx", "ta"])
_CALENDAR = _wordset(
    "jan feb mar apr may jun jul aug sep sept oct nov dec january february march april june july august "
    "september october november december monday tuesday wednesday thursday friday saturday sunday"
)
# Sentence openers that are ordinary English, not names: pronouns, determiners, a prep note's imperatives.
_OPENERS = _wordset(
    """she he they their her his its this that these those there here ask review look have bring check start
    consider prepare open go walk focus be make help note please since because after before while although
    though both each every first then next finally overall so currently right now student students nothing
    none not no yes once someone everything something one plan expect suggest point show explain encourage
    let keep remind read see confirm find talk discuss spend use give set try work meet follow clarify
    revisit instead also again still even only just maybe perhaps likely probably especially in on at for
    with by from about during until when where what which who how why if as to and but or the a an"""
)
# A capitalised subject followed by one of these is a person ("Maria says", "Tom can't", "Ana and ...").
_PERSON_VERBS = _wordset(
    """is was has had wants needs said says tried tries can can't cannot could does doesn't did didn't feels
    felt seems would will asked asks gets got keeps struggles understands knows thinks hopes mentioned
    explained isn't wasn't hasn't mixes worked works wrote plans expects likes prefers reports noted notes
    and"""
)
# Words any note about a meeting uses; they never make a sentence ungrounded.
_MEETING_WORDS = frozenset(
    stem(w)
    for w in _wordset(
        """student professor instructor meeting office hours review bring draft notes note sheet ready look
    check ask prepare example work understand understanding explain question questions confused confusing
    stuck struggle struggling tried try trying want wants goal help plan walk through show focus section
    material materials course assignment due deadline urgent urgency before time week day start clear
    clearer specific step steps part concept idea approach practice problem exercise session discuss talk
    spend minutes feedback current progress point points learn learning sure unsure unclear difficulty
    difficult hard trouble mistake mistakes issue issues independently own better next together quick
    quickly first going able"""
    )
)
_COMMON = _MEETING_WORDS | GENERIC_WORDS | STOPWORDS | _OPENERS


class Evidence(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one intake's summary may mention, normalised for fast lookups."""

    words: frozenset[str]  # every word, lower case
    stems: frozenset[str]  # content-word stems
    student_stems: frozenset[str]  # what the student (or the booking) said: quotes come from here
    numbers: frozenset[str]  # every number, including those inside "ps3" or a date
    dates: frozenset[tuple[int, int]]  # (month, day) of every date the student, booking or facts name
    weekdays: frozenset[int]  # weekdays of those dates, plus weekdays the student named
    foreign: tuple[tuple[str, ...], ...] = ()  # stem phrases of other courses, absent from this one
    system_prompt: str = ""

    @classmethod
    def from_intake(
        cls,
        state: InterviewState,
        course: Course,
        booking: Booking,
        *,
        extra: Iterable[str] = (),
        others: Iterable[Course] = (),
    ) -> Evidence:
        """The evidence of one intake. ``extra``: composed facts (the summary built without the model);
        ``others``: the catalog's other courses, whose vocabulary is refused unless this one shares it."""
        said = student_said(state, booking)
        composed = list(extra)
        known_dates = _fact_dates(state, course, booking)
        system = state.prompt[0]["content"] if state.prompt and state.prompt[0]["role"] == "system" else ""
        section = state.facts.section
        pack = [
            *course_vocabulary(course),
            *state.context_sources,
            *((section.source, section.title, section.heading or "") if section else ()),
            *(m for p in state.prompt[1:] for m in re.findall(r"\[Material: ([^\]]*)\]", p["content"])),
            system,
        ]
        texts = [*said, *composed, *pack, booking.student.name, booking.organizer.name, booking.title]
        everything = " ".join(texts)
        student_text = " ".join(said)
        named_days = {i for i, day in enumerate(_WEEKDAYS) if re.search(rf"\b{day}\b", student_text, re.I)}
        return cls(
            words=frozenset(w.lower() for w in words(everything)),
            stems=frozenset(content_words(everything)) | _MEETING_WORDS,
            student_stems=frozenset(content_words(student_text)),
            numbers=frozenset(_numbers(everything)),
            dates=frozenset(
                {(d.month, d.day) for d in known_dates}
                | {d for t in [*said, *composed] for d in find_dates(t)}
            ),
            weekdays=frozenset({d.weekday() for d in known_dates} | named_days),
            foreign=_foreign(others, course, [stems(t) for t in texts]),
            system_prompt=system,
        )


def student_said(state: InterviewState, booking: Booking) -> list[str]:
    """The student's clean words: the facts, plus their sentences that are not injection or answer-seeking."""
    facts = state.facts
    out = [
        x
        for x in (facts.stuck_on, facts.attempts, facts.goal, facts.context, facts.example, facts.deadline)
        if x
    ]
    out += list(facts.custom.values())
    for text in [booking.notes, *(m.text for m in state.messages if m.role == "student")]:
        out += [s for s in sentences(text) if guardrails.screen(s).kind not in {"injection", "homework"}]
    return out


def course_vocabulary(course: Course) -> list[str]:
    """This course pack's names: code, title, instructor, topics, assignments, its own questions."""
    out = [course.code, course.title, course.instructor_name]
    for topic in course.topics:
        out += [topic.title, topic.id.replace("-", " "), *topic.keywords]
    for assignment in course.assignments:
        out += [
            assignment.title,
            assignment.id.replace("-", " "),
            *assignment.keywords,
            assignment.file or "",
        ]
    out += [q.ask for q in course.questions]
    return [x for x in out if x]


def _fact_dates(state: InterviewState, course: Course, booking: Booking) -> set[dt.date]:
    """The dates the facts vouch for: the meeting, the student's deadline, their assignment's due date."""
    out: set[dt.date] = set()
    with contextlib.suppress(ValueError):
        out.add(dt.datetime.fromisoformat(booking.start_time.replace("Z", "+00:00")).date())
    with contextlib.suppress(ValueError):
        out.add(dt.date.fromisoformat((state.facts.deadline or "")[:10]))
    assignment = course.assignment(state.facts.assignment) if state.facts.assignment else None
    if assignment and assignment.due_date:
        out.add(assignment.due_date)
    return out


def _numbers(text: str) -> set[str]:
    """Numbers written outside dates: a date vouches for itself, not for "5 times"."""
    spans = _date_spans(text)
    return {
        _norm_number(m.group(0))
        for m in NUMBER.finditer(text)
        if not any(a <= m.start() < b for a, b in spans)
    }


def _norm_number(n: str) -> str:
    n = n.replace(",", ".")
    return n.lstrip("0") or "0" if "." not in n else n


def find_dates(text: str) -> list[tuple[int, int]]:
    """(month, day) of every absolute date written in ``text``: 2026-03-06, 3/6, March 6, 6 March."""
    out = []
    for i, pattern in enumerate(_DATE_PATTERNS):
        for m in pattern.finditer(text):
            if i == 0:
                month, day = int(m[2]), int(m[3])
            elif i == 1:
                month, day = int(m[1]), int(m[2])
            elif i == 2:
                month, day = _MONTHS.index(m[1][:3].lower()) + 1, int(m[2])
            else:
                month, day = _MONTHS.index(m[2][:3].lower()) + 1, int(m[1])
            if 1 <= month <= 12 and 1 <= day <= 31:
                out.append((month, day))
    return out


def _date_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for pattern in _DATE_PATTERNS for m in pattern.finditer(text)]


def _foreign(
    others: Iterable[Course], course: Course, own: Sequence[list[str]]
) -> tuple[tuple[str, ...], ...]:
    """Topic and assignment names of other courses that nothing in this intake uses."""
    own_stems = {s for text in own for s in text}
    out: set[tuple[str, ...]] = set()
    for other in others:
        if other.slug == course.slug:
            continue
        names = [t.title for t in other.topics] + [k for t in other.topics for k in t.keywords]
        names += [a.title.split(":")[-1] for a in other.assignments] + [
            k for a in other.assignments for k in a.keywords
        ]
        for name in names:
            phrase = _trim_stopwords([stem(w) for w in words(name)])
            if not phrase or _contains(own, phrase):
                continue
            if len(phrase) == 1 and (len(phrase[0]) < 4 or phrase[0] in _COMMON or phrase[0] in own_stems):
                continue
            out.add(phrase)
    return tuple(sorted(out))


def _trim_stopwords(phrase: list[str]) -> tuple[str, ...]:
    while phrase and phrase[0] in STOPWORDS:
        phrase = phrase[1:]
    while phrase and phrase[-1] in STOPWORDS:
        phrase = phrase[:-1]
    return tuple(phrase)


def _contains(texts: Sequence[Sequence[str]], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return any(tuple(t[i : i + n]) == phrase for t in texts for i in range(len(t) - n + 1))


# ---------------------------------------------------------------- checking one sentence


def check_sentence(sentence: str, evidence: Evidence, *, min_grounded: float = MIN_GROUNDED) -> list[str]:
    """Why a model-written summary sentence must not be used (empty: it may be used)."""
    problems = [
        p
        for p in guardrails.check_partial(sentence, system_prompt=evidence.system_prompt)
        if p != "too_long" or len(sentence) > 2 * guardrails.MAX_REPLY_CHARS
    ]
    if guardrails.screen(sentence).kind == "injection":
        problems.append("injection")
    problems += _meta(sentence, evidence)
    unquoted = _QUOTED.sub(" ", sentence)
    if _FIRST_PERSON.search(unquoted):
        problems.append("first_person")
    problems += _quotes(sentence, evidence)
    problems += _dates(sentence, evidence)
    problems += _numbers_unknown(sentence, evidence)
    problems += _terms(unquoted, evidence)
    problems += _foreign_terms(sentence, evidence)
    if _grounded(sentence, evidence) < min_grounded:
        problems.append("ungrounded")
    return problems


def _meta(sentence: str, evidence: Evidence) -> list[str]:
    """Talk about the output format, unless the word is course vocabulary ("a dictionary key")."""
    hits = [m.group(0) for m in _META.finditer(sentence)]
    return [f"meta:{h}" for h in hits if stem(h.split()[-1]) not in evidence.stems or "_" in h or " " in h]


def _quotes(sentence: str, evidence: Evidence) -> list[str]:
    """A quotation must be the student's words."""
    out = []
    for quoted in _QUOTED.findall(sentence):
        said = content_words(quoted)
        if said and not said <= evidence.student_stems:
            out.append("invented_quote")
    return out


def _dates(sentence: str, evidence: Evidence) -> list[str]:
    out = [f"date:{m}/{d}" for m, d in find_dates(sentence) if (m, d) not in evidence.dates]
    for i, day in enumerate(_WEEKDAYS):
        if re.search(rf"\b{day}s?\b", sentence, re.I) and i not in evidence.weekdays:
            out.append(f"date:{day}")
    out += [
        f"date:{w}"
        for w in _RELATIVE_DAYS
        if re.search(rf"\b{w}\b", sentence, re.I) and w not in evidence.words
    ]
    return out


def _numbers_unknown(sentence: str, evidence: Evidence) -> list[str]:
    spans = _date_spans(sentence)
    out = []
    for m in NUMBER.finditer(sentence):
        if any(a <= m.start() < b for a, b in spans):
            continue  # a date is checked as a date
        if _norm_number(m.group(0)) not in evidence.numbers:
            out.append(f"number:{m.group(0)}")
    return out


def _terms(sentence: str, evidence: Evidence) -> list[str]:
    """Capitalised words (names, titles, course terms) the evidence does not contain."""
    out = []
    for m in _CAPITALISED.finditer(sentence):
        word = m.group(1).strip("'’-")
        low = word.lower()
        if word == "I" or low in _TITLES or low in _CALENDAR or _known(word, evidence):
            continue  # dates are checked as dates
        before = sentence[: m.start()]
        after_title = bool(re.search(r"\b(?:Dr|Prof|Professor|Mr|Mrs|Ms|Mx|TA)\.?\s*$", before))
        opening = not before.strip() or bool(re.search(r"[.!?:;(“\"]\s*$", before))
        if opening and not after_title and not re.search(r"['’]s$", word):
            following = sentence[m.end() :].split()[:1]
            if low in _OPENERS or low in STOPWORDS:
                continue
            if not following or following[0].lower().strip(",.;:") not in _PERSON_VERBS:
                continue  # an imperative or an ordinary word opening the sentence
        out.append(f"{'name' if after_title or opening else 'term'}:{word}")
    return out


def _known(word: str, evidence: Evidence) -> bool:
    parts = [p for p in re.split(r"[-'’]", word) if p]
    return word.lower() in evidence.words or all(
        p.lower() in evidence.words or stem(p) in evidence.stems for p in parts
    )


def _foreign_terms(sentence: str, evidence: Evidence) -> list[str]:
    said = [stems(sentence)]
    return ["foreign:" + " ".join(p) for p in evidence.foreign if _contains(said, p)]


def _grounded(sentence: str, evidence: Evidence) -> float:
    said = content_words(sentence)
    if not said:
        return 1.0
    return len(said & evidence.stems) / len(said)


def usable_sentences(text: str, evidence: Evidence, *, min_grounded: float = MIN_GROUNDED) -> list[str]:
    """The sentences of a drafted field that pass ``check_sentence``, in order."""
    return [s for s in sentences(text) if not check_sentence(s, evidence, min_grounded=min_grounded)]
