"""The dialogue policy: what is known, what to ask next, when to stop. Plain Python, no I/O.

The model is small, so this module carries the interview: it extracts facts from what the student
writes (keyword and pattern matching against the course pack, never against one sample course),
picks the next slot to ask about, and owns a template question for every slot so the interview
works even when the model says nothing useful. The model only rephrases these questions.

Slots, in the order they are usually asked::

    issue -> assignment -> stuck_on -> topic -> attempts -> goal -> deadline -> example -> anything_else

A slot is asked at most twice; the interview stops after ``min_turns`` student turns once the
essentials are known, and always at ``max_turns``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from typing import Literal, cast

import msgspec

from services.coursepack import Assignment, Course
from services.gateway.intake.models import Booking, Facts, InterviewState, RequestType, Urgency
from services.settings import Settings

Slot = Literal[
    "issue", "assignment", "stuck_on", "topic", "attempts", "goal", "deadline", "example", "anything_else"
]
SLOT_ORDER: tuple[Slot, ...] = (
    "issue",
    "assignment",
    "stuck_on",
    "topic",
    "attempts",
    "goal",
    "deadline",
    "example",
    "anything_else",
)
MAX_ASKS_PER_SLOT = 2
ANSWER_CHARS = 300  # what we keep of one answer in the facts (the full text stays in the transcript)

_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "with",
        "by",
        "from",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "i",
        "me",
        "my",
        "we",
        "our",
        "you",
        "your",
        "he",
        "she",
        "they",
        "them",
        "their",
        "his",
        "her",
        "do",
        "does",
        "did",
        "done",
        "have",
        "has",
        "had",
        "not",
        "no",
        "yes",
        "so",
        "very",
        "just",
        "really",
        "also",
        "about",
        "into",
        "out",
        "up",
        "down",
        "over",
        "under",
        "again",
        "more",
        "most",
        "some",
        "any",
        "all",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "what",
        "which",
        "who",
        "whom",
        "when",
        "where",
        "why",
        "how",
        "than",
        "then",
        "there",
        "here",
        "get",
        "got",
        "make",
        "made",
        "like",
        "one",
        "two",
        "use",
        "used",
        "using",
        "way",
        "thing",
        "things",
        "stuff",
        "help",
        "need",
        "want",
        "know",
        "think",
        "feel",
        "much",
        "many",
        "well",
        "good",
        "bad",
        "too",
        "only",
        "still",
        "even",
        "ok",
        "okay",
        "im",
        "dont",
        "cant",
        "ive",
    ]
)
_GENERIC_WORDS = frozenset(
    [
        "essay",
        "paper",
        "assignment",
        "homework",
        "project",
        "problem",
        "set",
        "lab",
        "quiz",
        "exam",
        "draft",
        "course",
        "class",
        "unit",
        "week",
    ]
)


class Decision(msgspec.Struct, frozen=True):
    """What the interviewer does next: ask ``slot`` (``variant`` > 0 means a re-ask), or finish."""

    action: Literal["ask", "finish"]
    slot: Slot | None = None
    variant: int = 0


# ---------------------------------------------------------------- text helpers


def _stem(word: str) -> str:
    """A deliberately light stemmer: enough to match "paraphrasing" with "paraphrase"."""
    w = word.lower().strip("'")
    if w.endswith("'s"):
        w = w[:-2]
    for suffix, repl in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""), ("e", "")):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: len(w) - len(suffix)] + repl
    return w


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9]+(?:'[a-z]+)?", text)


def _stems(text: str) -> list[str]:
    return [_stem(w) for w in _words(text)]


def content_words(text: str) -> set[str]:
    """Stems of the words that carry meaning (used for matching and for grounding checks)."""
    return {_stem(w) for w in _words(text) if len(w) >= 3 and w.lower() not in _STOPWORDS}


def _has_phrase(stems: Sequence[str], phrase: Sequence[str]) -> bool:
    n = len(phrase)
    return n > 0 and any(list(stems[i : i + n]) == list(phrase) for i in range(len(stems) - n + 1))


def sentences(text: str) -> list[str]:
    """Split on sentence ends and line breaks; students rarely punctuate chat messages."""
    parts = re.split(r"(?<=[.!?])\s+|\n+", text.strip())
    return [p.strip() for p in parts if p and p.strip()]


def clip(text: str, limit: int = ANSWER_CHARS) -> str:
    """Shorten on a word boundary, marking the cut, so facts stay readable."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"


# ---------------------------------------------------------------- answers

_NON_ANSWER = re.compile(
    r"^(?:i\s*(?:do\s*n['o]?t|dont|don't)\s*know|idk|dunno|not sure|no idea|i'?m not sure|unsure|"
    r"\?+|hmm+|um+|uh+|eh|n/?a|pass|skip|whatever|ok(?:ay)?|k|sure|yes|yeah|yep|no|nope|maybe)[.!?\s]*$",
    re.I,
)
_NOTHING = re.compile(
    r"^(?:nothing(?: yet)?|none|not yet|no(?:thing)?,? not yet|nah|no|nope|haven'?t)\b", re.I
)
_CONFUSED = re.compile(
    r"\b(?:what do you mean|what does that mean|i don'?t understand (?:the|your) question|"
    r"what are you asking|can you (?:explain|rephrase)|huh\??$|meaning\?$)",
    re.I,
)


def is_non_answer(text: str) -> bool:
    """ "idk", "not sure", "?" — the slot stays open (it may be asked once more)."""
    return bool(_NON_ANSWER.match(text.strip())) or (not content_words(text) and len(text.strip()) < 12)


def is_confused(text: str) -> bool:
    """The student did not understand the question: ask the same slot again, more simply."""
    return bool(_CONFUSED.search(text.strip()))


# ---------------------------------------------------------------- course matching

_NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
    "1st": 1,
    "2nd": 2,
    "3rd": 3,
    "4th": 4,
    "5th": 5,
    "6th": 6,
}
_KIND_GROUPS = {
    "set": [
        "problem set",
        "problem-set",
        "pset",
        "p-set",
        "ps",
        "homework",
        "hw",
        "assignment",
        "exercise",
        "exercises",
        "worksheet",
        "set",
    ],
    "essay": ["essay", "paper"],
    "lab": ["lab", "laboratory", "practical"],
    "project": ["project", "proj", "milestone"],
    "quiz": ["quiz"],
    "exam": ["midterm", "exam", "test"],
    "chapter": ["chapter", "unit", "module", "lecture", "week", "reading"],
}
_KIND_OF = {alias: group for group, aliases in _KIND_GROUPS.items() for alias in aliases}
_KIND_RE = "|".join(sorted((re.escape(a) for a in _KIND_OF), key=len, reverse=True))
_NUM_RE = r"\d{1,2}|" + "|".join(_NUMBER_WORDS)
_LABEL_AFTER = re.compile(rf"\b({_KIND_RE})\s*(?:#|no\.?|number)?\s*[-_ ]?\s*({_NUM_RE})\b", re.I)
_LABEL_BEFORE = re.compile(rf"\b({_NUM_RE})\s+({_KIND_RE})\b", re.I)


def _number(token: str) -> int | None:
    token = token.lower()
    return int(token) if token.isdigit() else _NUMBER_WORDS.get(token)


def labels(text: str) -> set[tuple[str, int]]:
    """``(kind group, number)`` pairs named in a text: "ps3", "problem set 3", "the second essay"."""
    found: set[tuple[str, int]] = set()
    for kind, num in _LABEL_AFTER.findall(text):
        if (n := _number(num)) is not None:
            found.add((_KIND_OF[kind.lower()], n))
    for num, kind in _LABEL_BEFORE.findall(text):
        if (n := _number(num)) is not None and not num.isdigit():  # "second essay", not "3 essays"
            found.add((_KIND_OF[kind.lower()], n))
    return found


def _keyword_weights(
    items: Sequence[tuple[str, list[str]]],
) -> dict[str, list[tuple[tuple[str, ...], float]]]:
    """Per item: (phrase stems, weight). Multi-word phrases weigh more; words shared by items weigh less."""
    phrases: dict[str, list[tuple[str, ...]]] = {}
    for key, texts in items:
        seen: list[tuple[str, ...]] = []
        for text in texts:
            stems = tuple(_stem(w) for w in _words(text))
            if not stems or stems in seen:
                continue
            if len(stems) == 1 and (len(text.strip()) < 3 or text.lower().strip() in _STOPWORDS):
                continue  # "a", "an", "the", "may": useless for matching
            seen.append(stems)
        phrases[key] = seen
    counts: dict[tuple[str, ...], int] = {}
    for seen in phrases.values():
        for p in seen:
            counts[p] = counts.get(p, 0) + 1
    weights: dict[str, list[tuple[tuple[str, ...], float]]] = {}
    for key, seen in phrases.items():
        out = []
        for p in seen:
            if len(p) > 1:
                weight = 1.0 + len(p)
            elif p[0] in _GENERIC_WORDS or counts[p] > 1:
                weight = 0.5
            else:
                weight = 2.0
            out.append((p, weight / counts[p] if counts[p] > 1 else weight))
        weights[key] = out
    return weights


def _abbreviations(keywords: Iterable[str]) -> list[str]:
    """Short upper-case keywords ("CS", "SV", "APA") match case-sensitively as whole words."""
    return [k for k in keywords if 2 <= len(k) <= 4 and k.isupper()]


def topic_scores(course: Course, texts: Iterable[str]) -> dict[str, float]:
    """How strongly each course topic is evidenced by the texts."""
    items = [
        (t.id, [t.title, t.id.replace("-", " "), *[k for k in t.keywords if not k.isupper()]])
        for t in course.topics
    ]
    weights = _keyword_weights(items)
    scores = dict.fromkeys(weights, 0.0)
    for text in texts:
        stems = _stems(text)
        for topic in course.topics:
            for phrase, weight in weights[topic.id]:
                if _has_phrase(stems, phrase):
                    scores[topic.id] += weight
            for abbr in _abbreviations(topic.keywords):
                if re.search(rf"(?<![A-Za-z]){re.escape(abbr)}(?![A-Za-z])", text):
                    scores[topic.id] += 1.0
    return scores


def match_topic(course: Course, texts: Iterable[str], assignment_id: str | None = None) -> str | None:
    """The best-evidenced topic id, or None when nothing points clearly at one."""
    scores = topic_scores(course, texts)
    assignment = course.assignment(assignment_id) if assignment_id else None
    if assignment:
        for topic_id in assignment.topics:
            if scores.get(topic_id, 0.0) > 0:
                scores[topic_id] += 0.75  # tie-breaker toward the assignment's own topics
    if not scores:
        return None
    best = max(scores, key=lambda k: scores[k])
    ranked = sorted(scores.values(), reverse=True)
    if scores[best] < 1.5 or (len(ranked) > 1 and ranked[0] == ranked[1]):
        if assignment and len(assignment.topics) == 1 and not any(scores.values()):
            return assignment.topics[0]
        return None
    return best


def _assignment_label(assignment: Assignment) -> set[tuple[str, int]]:
    return labels(assignment.id.replace("-", " ").replace("_", " ")) | labels(assignment.title)


def match_assignment(course: Course, text: str) -> str | None:
    """The assignment a text names ("essay 2", "ps3", "problem set 3", its title or keywords), if clear."""
    if not course.assignments:
        return None
    said = labels(text)
    items = [
        (a.id, [a.title, a.title.split(":")[0], a.id.replace("-", " "), *a.keywords])
        for a in course.assignments
    ]
    weights = _keyword_weights(items)
    stems = _stems(text)
    scores: dict[str, float] = {}
    for a in course.assignments:
        score = 10.0 if said & _assignment_label(a) else 0.0
        if (
            said
            and not score
            and _assignment_label(a)
            and any(k for k, _ in said if k in {x for x, _ in _assignment_label(a)})
        ):
            score -= 5.0  # "essay 3" said: essay 2 is not meant even if its keywords match
        score += sum(w for phrase, w in weights[a.id] if _has_phrase(stems, phrase))
        scores[a.id] = score
    best = max(scores, key=lambda k: scores[k])
    ranked = sorted(scores.values(), reverse=True)
    if scores[best] < 2.0 or (len(ranked) > 1 and ranked[0] - ranked[1] < 1.0):
        return None
    return best


def mentions_course(course: Course, text: str) -> bool:
    """Whether a message touches the course at all (used to avoid calling course talk "off-topic")."""
    if match_assignment(course, text) or any(v >= 1.0 for v in topic_scores(course, [text]).values()):
        return True
    return bool(content_words(text) & content_words(course.title))


# ---------------------------------------------------------------- request type

_REQUEST_RULES: tuple[tuple[RequestType, re.Pattern[str]], ...] = (
    (
        "grade",
        re.compile(
            r"\b(?:grade[ds]?|grading|regrade|points? (?:off|deducted|taken)|los[et] (?:\w+ )?points|losing points|"
            r"my (?:score|mark)|marked (?:me )?down|why did i get)\b",
            re.I,
        ),
    ),
    (
        "logistics",
        re.compile(
            r"\b(?:extension|extend the (?:deadline|due date)|late (?:submission|penalty|work)|"
            r"miss(?:ed)? (?:class|the (?:exam|quiz|lecture|deadline))|absen(?:t|ce)|"
            r"reschedul\w*|drop (?:the|this) (?:class|course)|enrol\w*|waitlist|accommodation\w*)\b",
            re.I,
        ),
    ),
    (
        "exam_prep",
        re.compile(
            r"\b(?:exams?|midterms?|final exam|quiz(?:zes)?|study(?:ing)? for|"
            r"(?:for|before|on) the test|practice test)\b",
            re.I,
        ),
    ),
    (
        "draft_feedback",
        re.compile(
            r"\b(?:feedback|look (?:at|over)|read(?:ing)? over|review|check|comments? on)\b"
            r"[^.?!]{0,40}\b(?:draft|essay|paper|writing|paragraph|intro\w*|thesis|report)\b|"
            r"\bmy (?:rough )?draft\b",
            re.I,
        ),
    ),
)
_CONCEPT = re.compile(
    r"\b(?:understand|concept|confus\w*|explain|what (?:is|are|does) (?:a |an |the )?\w+|"
    r"how (?:does|do) \w+ work|difference between|meaning of|idea of|when to use)\b",
    re.I,
)
_ASSIGNMENT_WORDS = re.compile(
    r"\b(?:homework|assignment|problem set|pset|essay|lab|project|worksheet)\b", re.I
)


def classify_request(texts: Sequence[str], assignment_known: bool) -> RequestType | None:
    """The kind of help asked for; rules in priority order, None while nothing points anywhere."""
    joined = "\n".join(texts)
    for kind, pattern in _REQUEST_RULES:
        if pattern.search(joined):
            return kind
    if assignment_known:
        return "assignment"
    if _CONCEPT.search(joined):
        return "concept"
    if _ASSIGNMENT_WORDS.search(joined):
        return "assignment"
    return None


# ---------------------------------------------------------------- deadlines

_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1
    )
}
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_DEADLINE_CONTEXT = re.compile(
    r"\b(?:due|deadline|submit\w*|turn(?:ed)? (?:it )?in|hand(?:ed)? (?:it )?in|"
    r"is on|exam is|test is|quiz is|by)\b",
    re.I,
)


def parse_date(text: str, today: dt.date) -> dt.date | None:
    """The first date a student names, absolute or relative to ``today``."""
    low = text.lower()
    if m := re.search(r"\b(\d{4})-(\d{2})-(\d{2})\b", low):
        return _safe_date(int(m[1]), int(m[2]), int(m[3]))
    if m := re.search(r"\b(\d{1,2})/(\d{1,2})(?:/(\d{2,4}))?\b", low):
        year = int(m[3]) + (2000 if m[3] and len(m[3]) == 2 else 0) if m[3] else today.year
        return _roll(_safe_date(year, int(m[1]), int(m[2])), today, bool(m[3]))
    month_re = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
    if m := re.search(rf"\b{month_re}\s+(\d{{1,2}})(?:st|nd|rd|th)?\b", low):
        return _roll(_safe_date(today.year, _MONTHS[m[1]], int(m[2])), today, False)
    if m := re.search(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{month_re}", low):
        return _roll(_safe_date(today.year, _MONTHS[m[2]], int(m[1])), today, False)
    if re.search(r"\b(?:today|tonight|this evening)\b", low):
        return today
    if re.search(r"\btomorrow\b", low):
        return today + dt.timedelta(days=1)
    if m := re.search(r"\bin (\d+|" + "|".join(_NUMBER_WORDS) + r") days?\b", low):
        return today + dt.timedelta(days=_number(m[1]) or 0)
    if re.search(r"\bnext week\b", low):
        return today + dt.timedelta(days=7)
    if re.search(r"\b(?:end of (?:the|this) week|this weekend)\b", low):
        return today + dt.timedelta(days=(4 - today.weekday()) % 7)
    for index, name in enumerate(_WEEKDAYS):
        if re.search(rf"\b{name[:3]}(?:{name[3:]})?\b", low):
            ahead = (index - today.weekday()) % 7
            extra = 7 if re.search(rf"\bnext {name}", low) and ahead < 7 else 0
            return today + dt.timedelta(days=ahead + extra)
    return None


def _safe_date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def _roll(date: dt.date | None, today: dt.date, explicit_year: bool) -> dt.date | None:
    """A date without a year that already passed months ago most likely means next year."""
    if date and not explicit_year and (today - date).days > 60:
        return _safe_date(date.year + 1, date.month, date.day)
    return date


def extract_deadline(text: str, today: dt.date, answering: bool) -> str | None:
    """An ISO date from a sentence that talks about a deadline (or any answer to the deadline question)."""
    for sentence in sentences(text):
        if (answering or _DEADLINE_CONTEXT.search(sentence)) and (date := parse_date(sentence, today)):
            return date.isoformat()
    return None


def due_date(facts: Facts, course: Course) -> dt.date | None:
    """The student's own deadline if they gave one, else the assignment's due date from course.toml."""
    if facts.deadline:
        try:
            return dt.date.fromisoformat(facts.deadline[:10])
        except ValueError:
            pass
    assignment = course.assignment(facts.assignment) if facts.assignment else None
    return assignment.due_date if assignment else None


def urgency(facts: Facts, course: Course, booking: Booking) -> Urgency:
    """Deadline proximity to the appointment: within 2 days high, within a week medium, else low."""
    due = due_date(facts, course)
    meeting = _date_of(booking.start_time)
    if due is None or meeting is None:
        return "low"
    days = (due - meeting).days
    if -3 <= days <= 2:
        return "high"
    if 2 < days <= 7:
        return "medium"
    return "low"


def _date_of(stamp: str) -> dt.date | None:
    try:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).date()
    except ValueError:
        return None


# ---------------------------------------------------------------- cue sentences

_ATTEMPT_CUE = re.compile(
    r"\b(?:i|we)\s*(?:'ve|have|had)?\s*(?:already |also |even )?(?:tried|read|re-?read|looked|watched|asked|"
    r"went|checked|used|searched|googled|rewrote|wrote|started|attempted|practi[cs]ed|reviewed|studied|"
    r"made|did|worked|followed|talked|visited|outlined)\b|\b(?:tried|trying) to\b",
    re.I,
)
_GOAL_CUE = re.compile(
    r"\b(?:i (?:want|would like|'d like|hope|wanna) to|i'?m hoping to|hoping to|my goal|by the end of the meeting|"
    r"from (?:the|this) meeting)\b[^.?!]*\b(?:understand|learn|leave|walk away|know|figure|fix|improve|make sure|"
    r"check|clarif\w*|go over|review|talk|discuss|plan|feel|be able)\b",
    re.I,
)
_STUCK_CUE = re.compile(
    r"\b(?:stuck|confus\w*|don'?t (?:understand|get|know how)|do not (?:understand|get|know how)|"
    r"struggl\w*|can'?t figure|cannot figure|problem with|trouble|hard|difficult|not sure (?:how|what|why|if|whether)|"
    r"lost|unclear|doesn'?t make sense|wrong|mistake|error)\b",
    re.I,
)


def _cue_sentences(text: str, cue: re.Pattern[str]) -> str | None:
    found = [s for s in sentences(text) if cue.search(s)]
    return clip(" ".join(found)) if found else None


# ---------------------------------------------------------------- updating facts


def observe(
    state: InterviewState,
    course: Course,
    text: str,
    today: dt.date,
    *,
    slot: str | None,
    from_notes: bool = False,
) -> None:
    """Update ``state.facts`` from one student text answering ``slot`` (None: no question was pending).

    The direct answer fills the slot asked; cue sentences ("I tried ...", "due Friday") fill other
    slots opportunistically, so rambling students are not asked what they already said.
    """
    facts = state.facts
    text = text.strip()
    answered = bool(text) and not is_non_answer(text) and not is_confused(text)
    if slot == "attempts" and _NOTHING.match(text):
        facts.attempts = facts.attempts or "Nothing yet."
    if (answered and slot in {"issue", "stuck_on", "example"}) or (
        answered and slot == "anything_else" and not _NOTHING.match(text)
    ):
        facts.stuck_on = _join(facts.stuck_on, clip(text))
    elif answered and slot == "attempts" and not facts.attempts:
        facts.attempts = clip(text)
    elif answered and slot == "goal" and not facts.goal:
        facts.goal = clip(text)
    if assignment_id := match_assignment(course, text):
        facts.assignment = assignment_id
    deadline = extract_deadline(text, today, answering=slot == "deadline")
    if deadline:
        facts.deadline = deadline
    elif answered and slot == "deadline" and not facts.deadline:
        facts.deadline = clip(text, 80)
    if answered and slot not in {"attempts"} and not facts.attempts:
        facts.attempts = _cue_sentences(text, _ATTEMPT_CUE)
    if answered and slot not in {"goal"} and not facts.goal:
        facts.goal = _cue_sentences(text, _GOAL_CUE)
    if answered and not facts.stuck_on and (from_notes or slot not in {"attempts", "goal", "deadline"}):
        facts.stuck_on = _cue_sentences(text, _STUCK_CUE) or (
            clip(text) if from_notes and content_words(text) else None
        )
    _refresh_derived(state, course, extra=[text] if from_notes else [])


def _join(old: str | None, new: str) -> str:
    """Answers accumulate as sentences (students often skip the full stop)."""
    new = new if re.search(r"[.!?…]$", new) else new + "."
    if not old:
        return new
    if new in old:
        return old
    return clip(f"{old} {new}", 2 * ANSWER_CHARS)


_ABOUT_SLOTS = frozenset({"issue", "stuck_on", "assignment", "topic", "example", "anything_else"})


def _refresh_derived(state: InterviewState, course: Course, extra: list[str]) -> None:
    """Topic and request type are judged on everything the student said, not on one message."""
    said = [m.text for m in state.messages if m.role == "student"]
    texts = [*extra, *said]
    facts = state.facts
    topic = match_topic(course, texts, facts.assignment)
    if topic:
        facts.topic = topic
    # the request is what they came for, not what they tried ("I did the practice quiz" is no exam prep):
    # the k-th answer replies to asked[k]
    about = [t for k, t in enumerate(said) if k >= len(state.asked) or state.asked[k] in _ABOUT_SLOTS]
    kind = classify_request([*extra, *about], facts.assignment is not None)
    if kind:
        facts.request_type = kind


def essentials_known(facts: Facts) -> bool:
    """Enough for a useful summary: what it is about, where they are stuck, what they tried, their goal."""
    return bool((facts.topic or facts.assignment) and facts.stuck_on and facts.attempts and facts.goal)


# ---------------------------------------------------------------- deciding


def decide(state: InterviewState, course: Course, settings: Settings) -> Decision:
    """Next move after the student's latest message (already in ``state.messages``)."""
    turn = state.turn
    if turn >= settings.max_turns:
        return Decision("finish")
    if turn >= settings.min_turns and essentials_known(state.facts):
        return Decision("finish")
    last = state.asked[-1] if state.asked else None
    latest = next((m.text for m in reversed(state.messages) if m.role == "student"), "")
    if last and is_confused(latest) and state.asked.count(last) < MAX_ASKS_PER_SLOT:
        return Decision("ask", cast(Slot, last), variant=1)
    for slot in SLOT_ORDER:
        if _wanted(slot, state, course):
            return Decision("ask", slot, variant=state.asked.count(slot))
    if turn >= settings.min_turns:
        return Decision("finish")
    return Decision("ask", "anything_else", variant=min(state.asked.count("anything_else"), 2))


def _wanted(slot: Slot, state: InterviewState, course: Course) -> bool:
    facts, asked = state.facts, state.asked.count(slot)
    if asked >= MAX_ASKS_PER_SLOT or (asked and slot in {"issue", "example", "anything_else", "topic"}):
        return False
    if slot == "issue":
        return not facts.stuck_on
    if slot == "assignment":
        return (
            bool(course.assignments)
            and not facts.assignment
            and facts.request_type not in {"concept", "logistics"}
        )
    if slot == "stuck_on":
        specific = len(content_words(facts.stuck_on or ""))
        return specific < (6 if asked == 0 else 4)  # a vague "ps3" earns one more, simpler ask
    if slot == "topic":
        return bool(course.topics) and not facts.topic and "stuck_on" in state.asked
    if slot == "attempts":
        return not facts.attempts
    if slot == "goal":
        return not facts.goal
    if slot == "deadline":
        return (
            not facts.deadline and due_date(facts, course) is None and facts.request_type not in {"concept"}
        )
    return True  # example, anything_else: once each, as filler until min_turns


# ---------------------------------------------------------------- wording (templates)


def subject(facts: Facts, course: Course) -> str:
    """How to name what the student is working on: the assignment's title, else the topic's, else generic."""
    if facts.assignment and (a := course.assignment(facts.assignment)):
        return a.title
    if facts.topic and (t := course.topic(facts.topic)):
        return t.title.lower() if not t.title.isupper() else t.title
    return "this"


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


def _or_list(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]


def question(
    slot: Slot, course: Course, booking: Booking, facts: Facts, today: dt.date, variant: int = 0
) -> str:
    """The policy's own question for a slot: used when the model's phrasing fails validation."""
    what = subject(facts, course)
    instructor = course.instructor_name
    choices = [a.title for a in upcoming_assignments(course, today)]
    templates: dict[str, tuple[str, str]] = {
        "issue": (
            "What would you like help with?",
            "In a few words, what do you want to work on in the meeting?",
        ),
        "assignment": (
            f"Is this for one of the assignments, like {_or_list(choices)}?"
            if choices
            else "Is this for a specific assignment?",
            "Which assignment or part of the course is this about?",
        ),
        "stuck_on": (
            f"Which part of {what} is giving you the most trouble?"
            if what != "this"
            else "Which part exactly is giving you the most trouble?",
            "Can you describe the exact spot where you get stuck?",
        ),
        "topic": (
            f"Which of these is it closest to: {_or_list(_topic_choices(course, facts))}?"
            if _topic_choices(course, facts)
            else "Which part of the course does this relate to?",
            "Which part of the course does this relate to?",
        ),
        "attempts": (
            "What have you tried so far?",
            "What have you already done to work on it, even if it did not help?",
        ),
        "goal": (
            f"What would you like to get out of your meeting with {instructor}?",
            "What would make the meeting a success for you?",
        ),
        "deadline": ("When is it due?", "Is there a deadline coming up for this?"),
        "example": (
            "Could you share a short example of where you get stuck, like a sentence or a step?",
            "Can you paste one short piece that shows the problem?",
        ),
        "anything_else": (
            f"Is there anything else {instructor} should know before the meeting?",
            "Anything else you want to add before I pass this on?",
        ),
    }
    first, second = templates[slot]
    return first if variant == 0 else second


def instruction(
    slot: Slot, course: Course, booking: Booking, facts: Facts, today: dt.date, variant: int = 0
) -> str:
    """The short bracketed steer appended to the student's message; it stays in the stored prompt."""
    what = subject(facts, course)
    aims = {
        "issue": "Ask what they want help with.",
        "assignment": "Ask which assignment this is for.",
        "stuck_on": f"Ask which part of {what} is hardest for them."
        if what != "this"
        else "Ask where exactly they get stuck.",
        "topic": "Ask which part of the course this relates to.",
        "attempts": "Ask what they have already tried.",
        "goal": "Ask what they want to get from the meeting.",
        "deadline": "Ask when it is due.",
        "example": "Ask for a short example of where they get stuck.",
        "anything_else": f"Ask if {course.instructor_name} should know anything else.",
    }
    again = "They did not understand: ask again, more simply. " if variant else ""
    example = question(slot, course, booking, facts, today, variant)
    return f'[{again}{aims[slot]} One short question, e.g. "{example}" Do not solve anything.]'


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


def closing(course: Course, booking: Booking) -> str:
    """The last message: no question, tells the student what happens next."""
    name = first_name(booking.student.name)
    thanks = f"Thank you, {name}!" if name else "Thank you!"
    return (
        f"{thanks} That gives {course.instructor_name} a clear picture. I'll send a short summary "
        "before your meeting, so you can start right away. See you there!"
    )


def first_name(full: str) -> str:
    parts = full.strip().split()
    return parts[0] if parts else ""


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
    if urgency(facts, course, booking) == "high":
        score += 1
    if facts.request_type in {"logistics", "grade"}:
        score -= 1
    return max(1, min(5, score))
