"""Text utilities shared by the interview: one sentence splitter, one abbreviation list, word stems.

Plain functions, no I/O. Everything that splits, clips or compares student text goes through here, so the
policy, the guardrails and the summary agree on what a sentence or a content word is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

ANSWER_CHARS = 300  # what the facts keep of one answer (the full text stays in the transcript)

STOPWORDS = frozenset(
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
GENERIC_WORDS = frozenset(
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

# The one abbreviation list: a full stop after these does not end a sentence ("with Dr. Okafor?").
ABBREVIATIONS = (
    "Dr",
    "Prof",
    "Mr",
    "Mrs",
    "Ms",
    "St",
    "e.g",
    "i.e",
    "vs",
    "etc",
    "No",
    "Fig",
    "Ch",
    "approx",
)
_ABBREV_END = re.compile(
    r"(?:^|[\s(])(?:" + "|".join(re.escape(a) for a in ABBREVIATIONS) + r")\.$|(?:^|\s)[A-Z]\.$"
)
_END = re.compile(r"[.!?…]+[\"')\]]*(?=\s)|\n+")
NUMBER_WORDS = {
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


def ends_with_abbreviation(text: str) -> bool:
    """Whether a full stop at the end of ``text`` belongs to an abbreviation or an initial."""
    return bool(_ABBREV_END.search(text.rstrip()))


def sentences(text: str) -> list[str]:
    """Split on sentence ends and line breaks (students rarely punctuate), never after an abbreviation."""
    out: list[str] = []
    current = ""
    pos = 0
    for match in _END.finditer(text):
        piece = text[pos : match.end()]
        pos = match.end()
        current += piece
        if "\n" not in match.group(0) and ends_with_abbreviation(current):
            continue
        if current.strip():
            out.append(" ".join(current.split()))
        current = ""
    current += text[pos:]
    if current.strip():
        out.append(" ".join(current.split()))
    return out


def question_text(reply: str) -> str:
    """The question sentence of a reply (its last sentence that ends with '?')."""
    questions = [s for s in sentences(reply) if s.endswith("?")]
    return questions[-1] if questions else ""


def clip(text: str, limit: int = ANSWER_CHARS) -> str:
    """Shorten on a word boundary, marking the cut, so facts stay readable."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"


# where a clause ends: after a comma, semicolon or colon, or before a word that starts the next one ("and"
# only before a new subject: "the strong and the moderate version" is one phrase)
_CLAUSE_END = re.compile(
    r"[,;:]\s|\s(?=(?:but|because|so|which|when|while|whereas|and (?:i|you|they|we|he|she|it|then))\s)", re.I
)


# a clause cut after one of these leaves it hanging ("decimal places and", "the strong", "you never know")
_OPEN_ENDS = frozenset(
    {
        "and",
        "or",
        "nor",
        "the",
        "a",
        "an",
        "of",
        "to",
        "by",
        "with",
        "for",
        "in",
        "on",
        "at",
        "from",
        "between",
        "than",
        "as",
        "if",
        "that",
        "this",
        "these",
        "those",
        "know",
        "understand",
        "see",
        "tell",
        "wonder",
        "sure",
        "decide",
        "remember",
        "explain",
    }
)


def clause_prefix(text: str, limit: int, min_words: int = 4) -> str:
    """The longest start of ``text`` that ends with a whole clause, has ``min_words`` words or more and
    fits in ``limit`` characters (the clause's trailing comma dropped); "" when no clause ending fits."""
    head = text[: limit + 1]
    cuts = [
        m.start()
        for m in _CLAUSE_END.finditer(head)
        if len(words := head[: m.start()].split()) >= min_words and words[-1].lower() not in _OPEN_ENDS
    ]
    return head[: cuts[-1]].rstrip(" ,;:") if cuts else ""


def stem(word: str) -> str:
    """A deliberately light stemmer: enough to match "paraphrasing" with "paraphrase"."""
    w = word.lower().strip("'")
    if w.endswith("'s"):
        w = w[:-2]
    for suffix, repl in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""), ("e", "")):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: len(w) - len(suffix)] + repl
    return w


def words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9]+(?:'[a-z]+)?", text)


def stems(text: str) -> list[str]:
    return [stem(w) for w in words(text)]


def content_words(text: str) -> set[str]:
    """Stems of the words that carry meaning (used for matching and for grounding checks)."""
    return {stem(w) for w in words(text) if len(w) >= 3 and w.lower() not in STOPWORDS}


def phrase_starts(text_stems: Sequence[str], phrase: Sequence[str]) -> list[int]:
    """Where ``phrase`` (stems) starts in ``text_stems``."""
    n = len(phrase)
    if not n:
        return []
    return [i for i in range(len(text_stems) - n + 1) if list(text_stems[i : i + n]) == list(phrase)]


def has_phrase(text_stems: Sequence[str], phrase: Sequence[str]) -> bool:
    return bool(phrase_starts(text_stems, phrase))


def similar(a: str, b: str, threshold: float = 0.7) -> bool:
    """Word-set overlap (Jaccard) at or above ``threshold``: the same sentence reworded a little."""
    wa, wb = set(re.findall(r"[a-z']+", a.lower())), set(re.findall(r"[a-z']+", b.lower()))
    if not wa or not wb:
        return False
    return len(wa & wb) / len(wa | wb) >= threshold


def first_name(full: str) -> str:
    parts = full.strip().split()
    return parts[0] if parts else ""


def number(token: str) -> int | None:
    """ "3", "three", "third" -> 3."""
    token = token.lower()
    return int(token) if token.isdigit() else NUMBER_WORDS.get(token)


_NON_ANSWER = re.compile(
    r"^(?:i\s*(?:do\s*n['o]?t|dont|don't)\s*know|idk|dunno|not sure|no idea|i'?m not sure|unsure|"
    r"\?+|hmm+|um+|uh+|eh|n/?a|pass|skip|whatever|ok(?:ay)?|k|sure|yes|yeah|yep|no|nope|maybe|lol|lmao|"
    r"asdf\w*|qwerty|\.+|-+)[.!?\s]*$",
    re.I,
)
NOTHING = re.compile(
    r"^(?:nothing(?: yet)?|none|not yet|no(?:thing)?,? not yet|nah|no|nope|haven'?t(?: tried)?(?: anything)?)\b",
    re.I,
)
_NOTHING_MORE = re.compile(
    r"^\W*(?:no|nope|nah|nothing(?: else)?|that'?s (?:it|all)|all good|i'?m good|thanks?|thank you|ty)\b"
    r"(?:[\s,.!]+(?:that'?s (?:it|all)|nothing(?: else)?|thanks?|thank you|i'?m good|all good|"
    r"(?:i )?think (?:that'?s|so)(?: it| all)?|for now|really|:\)|!+))*\W*$",
    re.I,
)
# Phrases that say where a student is stuck (used to file a sentence and to pick the telling one).
STUCK_CUE = re.compile(
    r"\b(?:stuck|confus\w*|don'?t (?:understand|get|know (?:how|why|when|which|what|whether))|"
    r"do not (?:understand|get)|never know|can'?t (?:figure|tell|see|get)|struggl\w*|lost on|"
    r"(?:keeps?|keep) (?:getting|failing|coming out)|doesn'?t (?:work|make sense)|which (?:rule|formula|one) do i)\b",
    re.I,
)
_CONFUSED = re.compile(
    r"\b(?:what do you mean|what does that mean|i don'?t understand (?:the|your) question|"
    r"what are you asking|can you (?:explain|rephrase)|huh\??$|meaning\?$)",
    re.I,
)


# "I'm not sure, I think I've told you what I know": a student with nothing to add to the question (not
# their goal, and no sign of distress either, though the classifier's recall-first threshold can flag it)
ALREADY_SAID = re.compile(
    r"^\W*(?:(?:i'?m not sure|not sure|i don'?t know|idk|no idea|hmm+|um+|sorry)\W+)*(?:i think |i guess )?"
    r"(?:i'?ve |i have |i )?(?:already )?(?:told|said|given|explained) (?:you )?(?:what i know|everything|"
    r"all (?:of )?it|it all|that|it)(?: already| before| above)?\W*$",
    re.I,
)


def is_non_answer(text: str, *, numbers: bool = True) -> bool:
    """ "idk", "not sure", "?", "I think I've told you what I know", keyboard mash: the slot stays open (it
    may be asked once more). A short answer with a number in it ("1b", "Q3", "2a and 2c", "4") answers a
    question about a problem or a part unless ``numbers`` is False (a question no number answers)."""
    stripped = text.strip()
    if _NON_ANSWER.match(stripped) or _NOTHING_MORE.match(stripped) or ALREADY_SAID.match(stripped):
        return True
    if not content_words(stripped) and len(stripped) < 12 and not (numbers and re.search(r"\d", stripped)):
        return True
    letters = re.sub(r"[^a-z]", "", stripped.lower())
    return len(letters) >= 4 and not re.search(r"[aeiouy]", letters)  # "sdfgh", "hjkl"


def is_confused(text: str) -> bool:
    """The student did not understand the question: ask the same slot again, more simply."""
    return bool(_CONFUSED.search(text.strip()))


# How the student feels and how long they have worked at it: real, and the chat's check-in hears it, but
# the professor's description of the problem says what is wrong ("I'm freaking out, I spent the whole
# weekend on it" describes no problem). A sentence made only of these (and courtesy) is left out.
FEELING_WORDS = content_words(
    "stressed stressing stress freaking panicking panic worried worry nervous anxious scared afraid "
    "overwhelmed frustrated frustrating annoyed annoying upset dying killing dumb stupid silly honestly "
    "really advance questions spent whole weekend hours days night nights forever ages sorry bit lot little "
    "kind kinda sort totally completely get getting working trying"
) | {"i'm", "i've", "i'd", "i'll", "im", "ive"}


# "this isn't for the lab report, ..." / "hey not about a report or anything, ...": what the question is
# not about, before what it is about
_DISCLAIMER = re.compile(
    r"^\W*(?:(?:hi|hey|hello|hola|so|ok(?:ay)?|quick q)\W+)*(?:(?:this|it|that|my question)(?:'s| is)? )?"
    r"(?:not|isn'?t|is not) (?:really |actually )?(?:for|about|part of|related to) "
    r"[^,;:.]{1,60}(?:[,;:.]\s*|$)",
    re.I,
)


def without_disclaimer(sentence: str) -> str:
    """The sentence without an opening "this isn't for ..." clause (empty when that was all of it)."""
    return _DISCLAIMER.sub("", sentence)


# What a student's sentence may open with that carries nothing ("so", "um", "hey", "I mean"), repeated
LEADING_FILLER = re.compile(
    r"^(?:(?:so|well|um+|uh+|ok(?:ay)?|yeah|yes|basically|honestly|like|hi|hello|hey|hola|bonjour|and|also|but|"
    r"mainly|mostly|anyway|i mean|i guess|i think that)\b[,.!]?\s*)+",
    re.I,
)
