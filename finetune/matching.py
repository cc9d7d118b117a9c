"""Word matching shared by the simulated students and the rubric: crude stems, phrases, assignment names.

Deliberately simple and visible (no model): a score or a recognised question can be explained by reading
the two texts. Stems only fold the endings that differ between a student's words and a professor's
summary of them ("boundaries"/"boundary", "tracing"/"trace", "utilitarian"/"utilitarianism").
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from services.coursepack import Course

_TOKEN = re.compile(r"[a-z0-9]+")
_ABBREVIATIONS = ("dr.", "prof.", "mr.", "mrs.", "ms.", "e.g.", "i.e.", "vs.", "etc.", "st.")
# How the interview's recap asks the student to confirm it (the gateway's contract for the last turn).
RECAP_CUES = (
    "did i get that right",
    "did i get this right",
    "did i get it right",
    "did i get everything right",
)
_SUFFIXES = (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""))
# Words too common to tell two texts apart (questions, summaries and injections all use them).
_STOP = """a an and are as at be been but by can could did do does for from had has have how i if in into is
it its me my no not of on one or our so than that the their them then there these they this those to too up us
was we were what when where which who why will with would you your yours also just about some any all other
another want like know see get got make made use used anyway before after still very student students
course professor class please thanks thank"""
STOPWORDS = frozenset(_STOP.split())


def sentences(text: str) -> list[str]:
    """Sentences of a message; a title abbreviation ("Dr. Marsh") does not end one, a line break does."""
    protected = text
    for abbreviation in _ABBREVIATIONS:
        protected = re.sub(
            rf"\b{re.escape(abbreviation)}", lambda m: m.group(0).replace(".", "\0"), protected, flags=re.I
        )
    parts = re.split(r"(?<=[.!?])\s+|\n+", protected)
    return [p.replace("\0", ".").strip() for p in parts if p.strip()]


def is_recap(text: str) -> bool:
    lowered = text.lower()
    return any(cue in lowered for cue in RECAP_CUES)


def tokens(text: str) -> list[str]:
    """Lower-case alphanumeric runs: ``count_words`` is two tokens, ``KeyError`` one, ``90.0`` two."""
    return _TOKEN.findall(text.lower())


def stem(word: str) -> str:
    """A rough stem: one plural or verb ending off, then a final ``e`` (trace, traced, tracing -> trac)."""
    word = word.lower()
    if len(word) > 4 and not word.endswith("ss"):
        for suffix, replacement in _SUFFIXES:
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                word = word[: -len(suffix)] + replacement
                break
    return word[:-1] if len(word) > 3 and word.endswith("e") else word


def stems(text: str) -> list[str]:
    return [stem(t) for t in tokens(text)]


def content_stems(text: str) -> set[str]:
    """Stems of the words that carry meaning (no stopwords, no one- or two-letter tokens)."""
    return {stem(t) for t in tokens(text) if t not in STOPWORDS and len(t) > 2}


def _same(term: str, word: str) -> bool:
    """A summary word matches a term word when the stems agree, or the summary word extends a long stem."""
    return word == term or (len(term) >= 5 and word.startswith(term))


def term_present(term: str, text: str) -> bool:
    """Whether ``term`` (a word or short phrase) occurs in ``text``, case-, plural- and spacing-tolerant.

    The term's stems must appear as consecutive words; a term typed as one word also matches the same
    letters split over two or three words and the other way round ("KeyError" / "key error").
    """
    wanted, words = stems(term), stems(text)
    if not wanted:
        return False
    n = len(wanted)
    for i in range(len(words) - n + 1):
        if all(_same(w, words[i + k]) for k, w in enumerate(wanted)):
            return True
    glued = "".join(tokens(term))
    raw = tokens(text)
    return any("".join(raw[i : i + k]) == glued for k in (1, 2, 3) for i in range(len(raw) - k + 1))


def _phrases(course: Course) -> list[tuple[str, str]]:
    """(phrase, assignment id): titles, title heads ("Lab 6 Report") and keywords of 3+ letters ("pa3")."""
    found: list[tuple[str, str]] = []
    for a in course.assignments:
        head = re.split(r"[:(]", a.title)[0].strip()
        found += [(a.title, a.id), (head, a.id)]
        found += [(k, a.id) for k in a.keywords if len(k) >= 3 and not k.isupper()]
    return found


def assignments_named(text: str, course: Course) -> list[str]:
    """The course assignments ``text`` names, in order of first mention.

    Longer phrases win over the shorter ones inside them, so "Final Paper Proposal" names the proposal
    and not also the final paper.
    """
    lowered = text.lower()
    spans: list[tuple[int, int, str]] = []
    for phrase, assignment_id in sorted(_phrases(course), key=lambda p: -len(p[0])):
        pattern = rf"(?<![a-z0-9]){re.escape(phrase.lower())}(?![a-z0-9])"
        for match in re.finditer(pattern, lowered):
            if not any(s < match.end() and match.start() < e for s, e, _ in spans):
                spans.append((match.start(), match.end(), assignment_id))
    ordered = [a for _, _, a in sorted(spans)]
    return list(dict.fromkeys(ordered))


def any_in(needles: Iterable[str], haystack: str) -> bool:
    lowered = haystack.lower()
    return any(n in lowered for n in needles)
