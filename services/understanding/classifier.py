"""Understand one student message: its intents and which interview slot each sentence fills.

Linear models over three views of each piece of text:

- the MiniLM sentence embedding the indexer already ships (one shared NumPy encoder,
  ``services.indexer.embedding.load_minilm``), which carries meaning: "everyone would be better off
  without me" lands near other ways of saying it;
- character n-grams (2 to 4 letters inside word boundaries, TF-IDF weighted), which carry the
  surface: a pasted error message, keyboard mash, a word the encoder splits into pieces;
- words and word pairs (TF-IDF weighted), which carry the short phrases a mean-pooled embedding blurs:
  "need the meeting anymore" is not "need to be here anymore". With this view the distress model's
  held-out false alarms at 100% recall fell from 0.097 to about 0.04 (see ``report.md``).

Before either view, a misspelt word is corrected against the encoder's own vocabulary (one swapped,
doubled or missing letter: "lviing" -> "living"); a single typo in the one word that matters must not
hide a message's meaning.

The weights are plain arrays in ``weights.npz``, written by ``python -m services.understanding.train``
(``make classifiers``), so the runtime needs only NumPy. Intents are judged on the whole message and on
each of its sentences and the highest probability wins: a distress or injection sentence hidden inside
an otherwise normal answer still counts. One ``embed`` call covers the message and its sentences.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import msgspec
import numpy as np

from services.gateway.intake.text import sentences

WEIGHTS = Path(__file__).parent / "weights.npz"
INTENTS = ("distress", "answer_request", "injection", "off_topic", "reschedule")
SLOTS = ("stuck_on", "attempts", "goal", "deadline", "assignment", "context", "junk")
SURE_FLOOR = 0.85  # the "sure" level of intents without a fitted one
MAX_SENTENCES = (
    12  # a pasted essay is judged on its opening; the encoder truncates each piece at 256 word pieces
)
NGRAMS = (2, 4)
WORD_NGRAMS = (1, 2)
_WORD_TOKEN = re.compile(r"(?u)\b\w+\b")  # scikit-learn's token pattern, one-letter words kept
_SPACES = re.compile(r"\s\s+")
# A greeting, "sorry to bother you", "thanks", nothing else. Learned as a sign of distress (the classifier
# scored "I'm sorry to bother you." 0.78: many distressed messages in the data open with it), it carries
# none; "I'm sorry." alone or "sorry for everything" are not courtesies and are still judged.
COURTESY = re.compile(
    r"^\W*(?:(?:hi|hello|hey|dear|good (?:morning|afternoon|evening))\b[^.!?]{0,40}?[.!?,]*\s*)?"
    r"(?:(?:i'?m |i am |so |really )*sorry (?:to (?:bother|disturb|trouble) you|"
    r"for (?:bothering|disturbing) you|for the (?:long|late) (?:message|email|note))"
    r"(?: again| like this| with this)?|"
    r"thanks?(?: you)?(?: so much| a lot| again)?|(?:i )?hope you(?:'re| are) (?:well|doing well))?"
    r"[\s.!?,]*$",
    re.I,
)
_WORD = re.compile(r"[A-Za-z]{5,}")
# Contractions typed without the apostrophe ("im", "cant", "dont"): the encoder reads "im" and "i'm" as
# different words, so texting style would move a message away from its meaning.
_CONTRACTIONS = {
    "im": "I'm",
    "ive": "I've",
    "dont": "don't",
    "cant": "can't",
    "wont": "won't",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "isnt": "isn't",
    "wasnt": "wasn't",
    "arent": "aren't",
    "havent": "haven't",
    "hasnt": "hasn't",
    "wouldnt": "wouldn't",
    "couldnt": "couldn't",
    "shouldnt": "shouldn't",
    "youre": "you're",
    "theyre": "they're",
    "thats": "that's",
    "whats": "what's",
    "theres": "there's",
    "wanna": "want to",
    "gonna": "going to",
    "idk": "I don't know",
}
_CONTRACTION = re.compile(r"\b(" + "|".join(_CONTRACTIONS) + r")\b", re.IGNORECASE)
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


class Intents(msgspec.Struct, frozen=True):
    """Probabilities (0..1), each the maximum over the message and its sentences."""

    distress: float
    answer_request: float
    injection: float
    off_topic: float
    reschedule: float


class SentenceSlot(msgspec.Struct, frozen=True):
    """Which interview slot one sentence fills (``slot`` is one of ``SLOTS``)."""

    text: str
    slot: str
    confidence: float
    flagged: frozenset[str] = frozenset()  # intents this sentence alone reaches (an injected sentence)


class MessageUnderstanding(msgspec.Struct, frozen=True):
    intents: Intents
    flagged: frozenset[str]  # intent names whose probability reached the threshold fitted for it
    sentences: tuple[SentenceSlot, ...]
    # intents past the stricter "sure" level: for distress the threshold that flags 1% of the validation
    # split's hard negatives; the policy acts on these alone and checks in on the rest
    sure: frozenset[str] = frozenset()


class Embedder(Protocol):
    def embed(self, texts: list[str]) -> np.ndarray: ...


def pieces(text: str) -> list[str]:
    """What gets judged for one message: the message, then its sentences (at most ``MAX_SENTENCES``).
    A one-sentence message is judged once and is its own sentence. Sentences that are only courtesies
    ("Hi, sorry to bother you.", see ``COURTESY``) are left out, of the message too: "Hi, sorry to bother
    you. I am stuck on the titration report ..." scored 0.235 for distress as a whole (over the
    recall-first threshold) and 0.10 without the greeting. A message of courtesies only has no pieces."""
    parts = [p for p in sentences(text.strip()) if not COURTESY.match(p)]  # a line break ends a sentence
    message = " ".join(" ".join(parts).split())
    if not message:
        return []
    parts = parts[:MAX_SENTENCES]
    return [message] if len(parts) <= 1 else [message, *parts]


def sentence_rows(count: int) -> slice:
    """Rows of a message's ``pieces`` that are sentences (the message itself when it is one sentence)."""
    return slice(0, 1) if count == 1 else slice(1, count)


def char_ngrams(text: str) -> list[str]:
    """scikit-learn's ``analyzer="char_wb"`` for lowercase text, so training and runtime agree:
    n-grams inside each space-padded word, a word shorter than n counted once."""
    out: list[str] = []
    for word in _SPACES.sub(" ", text.lower()).split():
        padded = f" {word} "
        for n in range(NGRAMS[0], NGRAMS[1] + 1):
            out.extend(padded[i : i + n] for i in range(max(len(padded) - n + 1, 1)))
            if len(padded) <= n:
                break
    return out


def word_ngrams(text: str) -> list[str]:
    """scikit-learn's ``analyzer="word"`` with ``WORD_NGRAMS`` and ``_WORD_TOKEN``: lowercase words, then
    each pair of neighbours joined by a space."""
    words = _WORD_TOKEN.findall(text.lower())
    out: list[str] = []
    for n in range(WORD_NGRAMS[0], WORD_NGRAMS[1] + 1):
        out.extend(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
    return out


def pack_words(vocabulary: Sequence[str]) -> np.ndarray:
    """A word vocabulary as one UTF-8 byte array (a string array would pad every entry to the longest)."""
    return np.frombuffer("\n".join(vocabulary).encode(), dtype=np.uint8)


def unpack_words(packed: np.ndarray) -> list[str]:
    return packed.tobytes().decode().split("\n") if packed.size else []


def tfidf(grams: Sequence[list[str]], vocabulary: dict[str, int], idf: np.ndarray) -> np.ndarray:
    """TF-IDF rows (sublinear term frequency, unit length), as ``TfidfVectorizer`` computes them."""
    rows = np.zeros((len(grams), len(idf)), np.float32)
    for row, found in enumerate(grams):
        counts = Counter(vocabulary[g] for g in found if g in vocabulary)
        for column, count in counts.items():
            rows[row, column] = (1.0 + math.log(count)) * idf[column]
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


class Spelling:
    """Corrects a word the encoder does not know to a known word one swap, one extra letter or one
    missing inner letter away, preferring swaps and then the most frequent word (the lowest id in a
    BERT vocabulary). Unknown words with no such neighbour (names, course terms) stay as they are."""

    def __init__(self, vocabulary: dict[str, int]) -> None:
        self.rank = {w: i for w, i in vocabulary.items() if w.isascii() and w.isalpha()}

    def correct(self, text: str) -> str:
        text = _CONTRACTION.sub(lambda m: _CONTRACTIONS[m.group(0).lower()], text)
        return _WORD.sub(lambda m: self._word(m.group(0)), text)

    @lru_cache(maxsize=65536)  # noqa: B019 - one instance per process
    def _word(self, word: str) -> str:
        low = word.lower()
        if low in self.rank or (low.endswith("s") and low[:-1] in self.rank):
            return word
        cuts = [(low[:i], low[i:]) for i in range(len(low) + 1)]
        swaps = {a + b[1] + b[0] + b[2:] for a, b in cuts if len(b) > 1}
        edits = {a + b[1:] for a, b in cuts if b} | {a + c + b for a, b in cuts[1:-1] for c in _LETTERS}
        for candidates in (swaps, edits):
            known = [c for c in candidates if c in self.rank]
            if known:
                return min(known, key=self.rank.__getitem__)
        return word


@lru_cache(maxsize=1)
def load_spelling() -> Spelling:
    from services.indexer.embedding import load_minilm

    return Spelling(load_minilm().tokenizer.get_vocab())


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class Linear(msgspec.Struct, frozen=True):
    """``embedding @ on_embedding.T + ngrams @ on_ngrams.T + words @ on_words.T + intercept``: one row
    per label."""

    on_embedding: np.ndarray
    on_ngrams: np.ndarray
    on_words: np.ndarray
    intercept: np.ndarray

    @classmethod
    def read(cls, arrays: dict[str, np.ndarray], prefix: str) -> Linear:
        return cls(
            *(
                arrays[f"{prefix}_{k}"].astype(np.float32)
                for k in ("embedding", "ngrams", "words", "intercept")
            )
        )

    def logits(self, embeddings: np.ndarray, ngrams: np.ndarray, words: np.ndarray | None) -> np.ndarray:
        out = embeddings @ self.on_embedding.T + ngrams @ self.on_ngrams.T + self.intercept
        return out + words @ self.on_words.T if words is not None else out

    @property
    def reads_words(self) -> bool:
        return self.on_words.shape[1] > 0


class MessageClassifier:
    """Intent and slot models over one embedder; thread-safe (it only reads its arrays)."""

    def __init__(self, arrays: dict[str, np.ndarray], embedder: Embedder | None = None) -> None:
        if tuple(arrays["intent_labels"]) != INTENTS or tuple(arrays["slot_labels"]) != SLOTS:
            raise ValueError("weights were fitted for other labels: retrain with `make classifiers`")
        self.vocabulary = {str(g): i for i, g in enumerate(arrays["ngram_vocabulary"])}
        self.idf = arrays["ngram_idf"].astype(np.float32)
        self.words = {w: i for i, w in enumerate(unpack_words(arrays["word_vocabulary"]))}
        self.word_idf = arrays["word_idf"].astype(np.float32)
        self.intents = Linear.read(arrays, "intent")
        self.slots = Linear.read(arrays, "slot")
        self.thresholds = arrays["intent_thresholds"].astype(np.float64)
        self.sure_thresholds = np.maximum(self.thresholds, SURE_FLOOR)
        if "distress_sure_threshold" in arrays:
            index = INTENTS.index("distress")
            self.sure_thresholds[index] = max(
                self.thresholds[index], float(arrays["distress_sure_threshold"])
            )
        self.data_hash = str(arrays["data_hash"])
        self._embedder = embedder

    @classmethod
    def load(cls, path: Path | None = None, embedder: Embedder | None = None) -> MessageClassifier:
        """The committed ``weights.npz`` unless ``path`` says otherwise; no pickle is ever loaded."""
        with np.load(path or WEIGHTS, allow_pickle=False) as data:
            return cls({name: data[name] for name in data.files}, embedder)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from services.indexer.embedding import load_minilm

            self._embedder = load_minilm()
        return self._embedder

    def understand(self, text: str) -> MessageUnderstanding:
        return self.understand_many([text])[0]

    def understand_many(self, texts: Sequence[str]) -> list[MessageUnderstanding]:
        """One embed call for every piece of every message."""
        per_message = [pieces(t) for t in texts]
        spelling = load_spelling()
        corrected = [[spelling.correct(p) for p in ps] for ps in per_message]
        flat = [p for ps in corrected for p in ps]
        vectors = self.embedder.embed(flat) if flat else np.zeros((0, self.intents.on_embedding.shape[1]))
        out: list[MessageUnderstanding] = []
        start = 0
        for ps, fixed in zip(per_message, corrected, strict=True):
            out.append(self.decide(ps, fixed, vectors[start : start + len(ps)]))
            start += len(ps)
        return out

    def ngram_features(self, texts: Sequence[str]) -> np.ndarray:
        return tfidf([char_ngrams(t) for t in texts], self.vocabulary, self.idf)

    def word_features(self, texts: Sequence[str]) -> np.ndarray:
        return tfidf([word_ngrams(t) for t in texts], self.words, self.word_idf)

    def _logits(self, model: Linear, texts: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        words = self.word_features(texts) if model.reads_words else None
        return model.logits(vectors, self.ngram_features(texts), words)

    def intent_scores(self, texts: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        """Per-intent probabilities for one message from its pieces (the maximum over pieces)."""
        if not len(texts):
            return np.zeros(len(INTENTS))
        return self.piece_scores(texts, vectors).max(axis=0)

    def piece_scores(self, texts: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        """Per-piece, per-intent probabilities (rows: pieces)."""
        return sigmoid(self._logits(self.intents, texts, vectors)).astype(np.float64)

    def slot_probabilities(self, texts: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        return softmax(self._logits(self.slots, texts, vectors))

    def decide(self, texts: list[str], corrected: list[str], vectors: np.ndarray) -> MessageUnderstanding:
        """The verdict for one message given its ``pieces``, their spelling-corrected forms and the
        vectors of those."""
        per_piece = self.piece_scores(corrected, vectors) if len(texts) else np.zeros((0, len(INTENTS)))
        scores = per_piece.max(axis=0) if len(texts) else np.zeros(len(INTENTS))
        rows = sentence_rows(len(texts))
        probs = (
            self.slot_probabilities(corrected[rows], vectors[rows]) if texts else np.zeros((0, len(SLOTS)))
        )
        return MessageUnderstanding(
            intents=Intents(*(float(s) for s in scores)),
            flagged=frozenset(
                name for name, s, t in zip(INTENTS, scores, self.thresholds, strict=True) if s >= t
            ),
            sentences=tuple(
                SentenceSlot(text, SLOTS[int(p.argmax())], float(p.max()), self._over(piece, self.thresholds))
                for text, p, piece in zip(texts[rows], probs, per_piece[rows], strict=True)
            ),
            sure=self._over(scores, self.sure_thresholds),
        )

    @staticmethod
    def _over(scores: np.ndarray, thresholds: np.ndarray) -> frozenset[str]:
        return frozenset(name for name, s, t in zip(INTENTS, scores, thresholds, strict=True) if s >= t)


@lru_cache(maxsize=1)
def load_classifier() -> MessageClassifier:
    """One classifier (and one copy of the encoder) per process."""
    return MessageClassifier.load()
