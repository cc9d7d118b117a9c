"""Course matching: which of the course's assignments and topics a student's words point at.

Lexical evidence only (labels such as "ps3" or "lab 2", titles, keywords from ``course.toml``); the policy
weighs this evidence by where it was said and adds semantic similarity from the course map. No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

from services.coursepack import Assignment, Course
from services.gateway.intake.text import (
    GENERIC_WORDS,
    NUMBER_WORDS,
    STOPWORDS,
    content_words,
    has_phrase,
    number,
    phrase_starts,
    stem,
    stems,
    words,
)

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
# What a student hands in or sits ("my lab report", "the test fails", "the reading"): a topic keyword that
# is one of these words names the student's deliverable far more often than what they are stuck on
_DELIVERABLES = frozenset(stem(w) for w in [*_KIND_OF, "report", "reports", "tests", "essays", "papers"])
_KIND_RE = "|".join(sorted((re.escape(a) for a in _KIND_OF), key=len, reverse=True))
_NUM_RE = r"\d{1,2}|" + "|".join(NUMBER_WORDS)
_LABEL_AFTER = re.compile(rf"\b({_KIND_RE})\s*(?:#|no\.?|number)?\s*[-_ ]?\s*({_NUM_RE})\b", re.I)
_LABEL_BEFORE = re.compile(rf"\b({_NUM_RE})\s+({_KIND_RE})\b", re.I)


def labels(text: str) -> set[tuple[str, int]]:
    """``(kind group, number)`` pairs named in a text: "ps3", "problem set 3", "the second essay"."""
    found: set[tuple[str, int]] = set()
    for kind, num in _LABEL_AFTER.findall(text):
        if (n := number(num)) is not None:
            found.add((_KIND_OF[kind.lower()], n))
    for num, kind in _LABEL_BEFORE.findall(text):
        if (n := number(num)) is not None and not num.isdigit():  # "second essay", not "3 essays"
            found.add((_KIND_OF[kind.lower()], n))
    return found


def _keyword_weights(
    items: Sequence[tuple[str, list[str]]], *, topics: bool = False
) -> dict[str, list[tuple[tuple[str, ...], float]]]:
    """Per item: (phrase stems, weight), computed once per course (every sentence of every turn asks)."""
    return _weights_of(tuple((key, tuple(texts)) for key, texts in items), topics)


@lru_cache(maxsize=64)
def _weights_of(
    items: tuple[tuple[str, tuple[str, ...]], ...], topics: bool = False
) -> dict[str, list[tuple[tuple[str, ...], float]]]:
    """Multi-word phrases weigh more; words shared by items weigh less. For topics, a keyword made only of
    deliverable words ("report", "lab report") weighs like a generic word: it names what the student hands
    in, not what they are stuck on (for assignments, the same words are their names). A topic's texts are
    its title, its id, then its keywords (``topic_scores``). Callers must not mutate the result."""
    phrases: dict[str, list[tuple[str, ...]]] = {}
    keywords: dict[str, set[tuple[str, ...]]] = {}  # topics: the phrases after the title and the id
    for key, texts in items:
        seen: list[tuple[str, ...]] = []
        keywords[key] = set()
        for i, name in enumerate(texts):
            phrase = tuple(stem(w) for w in words(name))
            if topics and i >= 2:
                keywords[key].add(phrase)
            if not phrase or phrase in seen:
                continue
            if len(phrase) == 1 and (len(name.strip()) < 3 or name.lower().strip() in STOPWORDS):
                continue  # "a", "an", "the", "may": useless for matching
            seen.append(phrase)
        phrases[key] = seen
    distinctive = _add_distinctive_words(phrases, keywords) if topics else {}
    counts: dict[tuple[str, ...], int] = {}
    for seen in phrases.values():
        for p in seen:
            counts[p] = counts.get(p, 0) + 1
    weights: dict[str, list[tuple[tuple[str, ...], float]]] = {}
    for key, seen in phrases.items():
        out = []
        for p in seen:
            if topics and all(w in _DELIVERABLES or w in GENERIC_WORDS for w in p):
                weight = 0.5
            elif p in distinctive.get(key, ()):
                weight = 1.0
            elif len(p) > 1:
                weight = 1.0 + len(p)
            elif p[0] in GENERIC_WORDS or counts[p] > 1:
                weight = 0.5
            else:
                weight = 2.0
            out.append((p, weight / counts[p] if counts[p] > 1 else weight))
        weights[key] = out
    return weights


def _add_distinctive_words(
    phrases: dict[str, list[tuple[str, ...]]], keywords: dict[str, set[tuple[str, ...]]]
) -> dict[str, set[tuple[str, ...]]]:
    """A word of one topic's multi-word keyword that no other topic uses ("ceiling" of "price ceiling",
    "incidence" of "tax incidence") is a single-word keyword of that topic too, at half weight: students
    say "the ceiling" once the phrase is established. Only keywords give words: a title's ("work" of
    "Working in R") names the topic, it is not something a student says about it. Returns the words added,
    per topic."""
    added: dict[str, set[tuple[str, ...]]] = {}
    owners: dict[str, set[str]] = {}
    for key, seen in phrases.items():
        for p in seen:
            for w in p:
                owners.setdefault(w, set()).add(key)
    for key, seen in phrases.items():
        extra: set[tuple[str, ...]] = {
            (w,)
            for p in seen
            if len(p) > 1 and p in keywords[key]
            for w in p
            if len(w) >= 4
            and owners[w] == {key}
            and w not in STOPWORDS
            and w not in GENERIC_WORDS
            and w not in _DELIVERABLES
            and (w,) not in seen
        }
        added[key] = extra
        seen.extend(sorted(extra))
    return added


def _abbreviations(keywords: Iterable[str]) -> list[str]:
    """Short upper-case keywords ("CS", "SV", "APA") match case-sensitively as whole words."""
    return [k for k in keywords if 2 <= len(k) <= 4 and k.isupper()]


def _typed_in_lower_case(abbreviation: str) -> bool:
    """Students type "maoi", "ssri", "dna" or "pcr" as often as the capitals; an abbreviation of three or
    four letters that is not also an ordinary word ("AND", "USE", "MAP", "CARE") matches in any case."""
    low = abbreviation.lower()
    return len(low) >= 3 and low.isalpha() and low not in STOPWORDS and low not in _ORDINARY_SHORT


_ORDINARY_SHORT = frozenset(
    re.findall(
        r"\w+",
        """act add age aid aim air all and any arm art ask bad bag bar bed big bit box boy bus but buy can car cat
    cut day die dog dry due ear eat egg end eye far fat few fit fix fly for fun gap gas get god gun guy hat
    hit hot how ice ill job key kid law lay leg let lie lot low mad man map may men mix new nor not now odd
    off oil old one our out own pay per pop pot put raw red rid row run sad say sea see set sex she sit six
    sky son sum sun tax tea ten the tie tip toe too top toy try two use via war way web wet who why win yes
    yet you zoo also area back base best body book call card care case cell code come cost data deal does
    done down draw each easy edge else even fact fall farm fast file fill find fine fire firm five flat flow
    food form four free full game gave give goal gold gone good half hand hard have head hear heat help here
    high hold home hope hour idea into item just keep kind knew know land last late lead left less life
    like line list live load long look loop lose loss love made main make many mark mass mean meet mind
    miss mode more most move much must name near need news next nice none note once only open over page
    pair part pass past path plan play plot poor post pull pure push rate read real rest rich ride ring
    rise risk road rock role rule safe said sale same save seem seen self sell send ship show side sign
    size slow soft sold some song soon sort step stop such sure take talk task team tell term test text
    than that them then they thin this time tone took tool true turn type unit upon used very view wait
    walk wall want ward warm wave week well went were what when wide wife will wind wish with word work
    year your zero""",
    )
)


_NEGATORS = frozenset({"no", "not", "never", "without", "nor"})


def _affirmed(said_stems: Sequence[str], phrase: Sequence[str]) -> bool:
    """The phrase is said, and not only as "no error" / "not an error" / "without a loop" (the student
    saying there is none is not evidence of the topic)."""
    return any(not _NEGATORS & set(said_stems[max(0, i - 2) : i]) for i in phrase_starts(said_stems, phrase))


def topic_scores(course: Course, texts: Iterable[str]) -> dict[str, float]:
    """How strongly each course topic is evidenced by the texts."""
    items = [
        (t.id, [t.title, t.id.replace("-", " "), *[k for k in t.keywords if k not in _abbreviations([k])]])
        for t in course.topics
    ]
    weights = _keyword_weights(items, topics=True)
    scores = dict.fromkeys(weights, 0.0)
    for said in texts:
        said_stems = stems(said)
        for topic in course.topics:
            for phrase, weight in weights[topic.id]:
                if _affirmed(said_stems, phrase):
                    scores[topic.id] += weight
            for abbr in _abbreviations(topic.keywords):
                flags = re.I if _typed_in_lower_case(abbr) else 0
                if re.search(rf"(?<![A-Za-z]){re.escape(abbr)}(?![A-Za-z])", said, flags):
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


def assignment_scores(course: Course, said_text: str) -> dict[str, float]:
    """Lexical evidence per assignment in one text: its label ("ps3", "lab 2"), title and keywords.

    Naming another assignment of the same kind ("essay 3") counts against the others of that kind.
    """
    said = labels(said_text)
    items = [
        (a.id, [a.title, a.title.split(":")[0], a.id.replace("-", " "), *a.keywords])
        for a in course.assignments
    ]
    weights = _keyword_weights(items)
    said_stems = stems(said_text)
    scores: dict[str, float] = {}
    for a in course.assignments:
        own = _assignment_label(a)
        score = 10.0 if said & own else 0.0
        if said and not score and own and any(k in {x for x, _ in own} for k, _ in said):
            score -= 5.0  # "essay 3" said: essay 2 is not meant even if its keywords match
        score += sum(w for phrase, w in weights[a.id] if has_phrase(said_stems, phrase))
        scores[a.id] = score
    return scores


def best_of(scores: dict[str, float], floor: float = 2.0, margin: float = 1.0) -> str | None:
    """The clear winner of a score table, or None when nothing reaches ``floor`` or two are close."""
    if not scores:
        return None
    best = max(scores, key=lambda k: scores[k])
    ranked = sorted(scores.values(), reverse=True)
    if scores[best] < floor or (len(ranked) > 1 and ranked[0] - ranked[1] < margin):
        return None
    return best


def match_assignment(course: Course, said_text: str) -> str | None:
    """The assignment a text names ("essay 2", "ps3", "problem set 3", its title or keywords), if clear."""
    if not course.assignments:
        return None
    return best_of(assignment_scores(course, said_text))


def assignment_words(course: Course, assignment_id: str | None = None) -> frozenset[str]:
    """The content words that name an assignment (its title, id and keywords), or every assignment's when
    ``assignment_id`` is None: saying them is naming the work, not describing the problem."""
    chosen = (a for a in course.assignments if assignment_id is None or a.id == assignment_id)
    return _words_of_names(
        tuple(f"{a.title} {a.id.replace('-', ' ')} {' '.join(a.keywords)}" for a in chosen)
    )


def course_words(course: Course) -> frozenset[str]:
    """The content words of the course's own names: its title, topics (with their keywords) and
    assignments. "Punnett", "cuvette" or "elif" are course words, not a foreign language."""
    names = [
        course.title,
        *(f"{t.title} {t.id.replace('-', ' ')} {' '.join(t.keywords)}" for t in course.topics),
    ]
    return _words_of_names(tuple(names)) | assignment_words(course)


@lru_cache(maxsize=256)
def _words_of_names(names: tuple[str, ...]) -> frozenset[str]:
    return frozenset(content_words(" ".join(names)))


def without_titles(course: Course, text: str) -> str:
    """The text with the course's assignment titles taken out: naming an assignment ("it's for Reading
    Response 9: Singer, Famine, Affluence, and Morality") is evidence of the assignment, not of a topic."""
    pattern = _titles_pattern(tuple(a.title for a in course.assignments))
    return pattern.sub(" ", text) if pattern else text


@lru_cache(maxsize=64)
def _titles_pattern(titles: tuple[str, ...]) -> re.Pattern[str] | None:
    """How a student names an assignment by its title, compiled once per course: the whole title and, for
    "Reading Response 9: Singer, Famine, Affluence, and Morality", each side of the colon (the side after
    it when two words or more), longest first, punctuation between the words free."""
    names: set[str] = set()
    for title in (t.lower().strip() for t in titles):
        before, _, after = title.partition(":")
        names |= {title, before}
        if len(after.split()) >= 2:
            names.add(after)
    words = [re.findall(r"[a-z0-9]+", n) for n in sorted(names, key=len, reverse=True)]
    alternatives = [r"\W+".join(map(re.escape, w)) for w in words if w]
    if not alternatives:
        return None
    return re.compile(rf"(?<![a-z0-9])(?:{'|'.join(alternatives)})(?![a-z0-9])", re.I)


def assignments_named(said_text: str, course: Course) -> set[str]:
    """Ids of the course's assignments a text names by full title or by the part before a colon."""
    lowered = said_text.lower()
    found = set()
    for a in course.assignments:
        names = {a.title.lower(), a.title.split(":")[0].strip().lower()}
        if any(re.search(rf"(?<![a-z0-9]){re.escape(n)}(?![a-z0-9])", lowered) for n in names if n):
            found.add(a.id)
    return found


def topic_of_source(course: Course, source: str, title: str = "") -> str | None:
    """The topic a course file is about, by its file name and title ("notes/lists-and-dictionaries.md" ->
    "lists-dicts"); None for files about no single topic (a syllabus, an assignment sheet)."""
    if any(a.file == source for a in course.assignments):
        return None
    stem = source.rsplit("/", 1)[-1].rsplit(".", 1)[0].replace("-", " ").replace("_", " ")
    said = content_words(f"{stem} {title}")
    overlap = {
        t.id: len(said & content_words(f"{t.id.replace('-', ' ')} {t.title} {' '.join(t.keywords[:6])}"))
        for t in course.topics
    }
    ranked = sorted(overlap.values(), reverse=True)
    best = max(overlap, key=lambda k: overlap[k]) if overlap else None
    if best is None or ranked[0] == 0 or (len(ranked) > 1 and ranked[0] == ranked[1]):
        return None
    return best


def mentions_course(course: Course, text: str) -> bool:
    """Whether a message touches the course at all (used to avoid calling course talk "off-topic")."""
    if match_assignment(course, text) or any(v >= 1.0 for v in topic_scores(course, [text]).values()):
        return True
    return bool(content_words(text) & content_words(course.title))
