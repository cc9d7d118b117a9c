"""Fit the message classifiers and report held-out precision and recall.

    python -m services.understanding.train            # or `make classifiers` (regenerates the data first)

Reads ``data/intents.jsonl`` and ``data/slots.jsonl`` (written by ``services.understanding.dataset``)
and splits them 70 / 15 / 15 into train / validation / test by group and label: a hand-written line
and all its variants, or all fillings of one template, stay in one split, so the test split holds
phrasings the model has never seen. Fits, on the three views of each text ``classifier`` describes
(MiniLM embedding + character n-gram and word/word-pair TF-IDF, after spelling correction):

- intents: one logistic regression per intent (one-vs-rest, balanced class weights, multi-label).
  A message with the intent is one positive example as written; a message without it is a negative
  example as written *and* once per piece the runtime judges (the message without courtesies and each
  sentence), because the runtime flags a message when any piece scores high. Positives are not split:
  most sentences of a distressed message are ordinary on their own;
- slots: one multinomial logistic regression over the seven slots.

Each intent's threshold is picked on the validation split (distress: the highest threshold that keeps
validation recall at 100%; the others: best F1), and the test split is scored exactly as the runtime
scores (the maximum over the message and its sentences). Writes ``weights.npz`` (plain arrays, no
pickle), ``report.json`` and ``report.md``. Same data and config: same report, byte for byte.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from services.understanding.classifier import (
    INTENTS,
    NGRAMS,
    SLOTS,
    WORD_NGRAMS,
    MessageClassifier,
    load_spelling,
    pack_words,
    pieces,
)

HERE = Path(__file__).parent
SPLITS = ("train", "validation", "test")
Row = dict[str, Any]
Report = dict[str, Any]


@dataclass(frozen=True)
class Config:
    """Every setting, with its default; the command line mirrors these fields."""

    data: Path = HERE / "data"
    out: Path = HERE
    cache: Path | None = (
        Path(os.environ.get("INTAKE_DATA_DIR", ".data")) / "cache" / "understanding-embeddings.npz"
    )
    seed: int = 0
    validation: float = 0.15
    test: float = 0.15
    # inverse regularisation; every view is a unit vector, so weights need room. Chosen on the validation
    # split's distress false alarms at 100% recall (C 2 / 3 / 4: 0.069 / 0.049 / 0.054)
    intent_c: float = 3.0
    slot_c: float = 8.0
    embedding_weight: float = 1.0  # the embedding view's scale against the n-gram views'
    ngrams: int = 4000  # most frequent character n-grams kept (the weights stay under a megabyte)
    words: int = 30000  # most frequent words and word pairs kept, among those in two training messages
    word_min_df: int = 2
    negative_pieces: bool = True  # negatives also fitted piece by piece, as the runtime judges them
    limit: int = 0  # keep at most this many examples per label combination (0: all); quick runs, tests


# ---------------------------------------------------------------- data


def read_jsonl(path: Path) -> list[Row]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def data_hash(folder: Path) -> str:
    """SHA-256 over both data files: the weights record which data they were fitted on."""
    digest = hashlib.sha256()
    for name in ("intents.jsonl", "slots.jsonl"):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


def labels(row: Row) -> list[str]:
    return list(row["labels"]) if "labels" in row else [row["slot"]]


def stratum(row: Row) -> str:
    return "+".join(sorted(labels(row))) or "none"


def limited(rows: list[Row], limit: int) -> list[Row]:
    if not limit:
        return rows
    seen: Counter[str] = Counter()
    kept = []
    for row in rows:
        seen[stratum(row)] += 1
        if seen[stratum(row)] <= limit:
            kept.append(row)
    return kept


TRAIN_ONLY_GROUP = re.compile(r":x\d+$")


def assign_splits(rows: list[Row], validation: float, test: float, seed: int) -> np.ndarray:
    """0/1/2 (train/validation/test) per row. Whole groups go to one split; within each label
    combination the groups are shuffled and cut at the requested fractions of examples. Train-only
    groups (``…:x<line>``, lines written after a false alarm was seen) always train and take no part in
    the shuffle, so adding them leaves the held-out splits as they were."""
    rng = np.random.default_rng(seed)
    sizes: dict[str, Counter[str]] = {}
    for row in rows:
        if not TRAIN_ONLY_GROUP.search(row["group"]):
            sizes.setdefault(stratum(row), Counter())[row["group"]] += 1
    where: dict[tuple[str, str], int] = {(stratum(r), r["group"]): 0 for r in rows}
    for name in sorted(sizes):
        groups = sorted(sizes[name])
        total = sum(sizes[name].values())
        done = 0
        for group in (groups[i] for i in rng.permutation(len(groups))):
            middle = (done + sizes[name][group] / 2) / total
            where[name, group] = 0 if middle < 1 - validation - test else 1 if middle < 1 - test else 2
            done += sizes[name][group]
    return np.array([where[stratum(r), r["group"]] for r in rows])


# ---------------------------------------------------------------- embeddings


def embed_all(texts: list[str], cache: Path | None) -> dict[str, np.ndarray]:
    """Vectors for every distinct text, reusing a cache of earlier runs; the cache keeps only this
    run's texts. Each text is embedded alone: padding in a batch changes a vector's last bits, and a
    cached vector must equal a fresh one for the report to reproduce exactly (and alone costs ~7% more)."""
    from services.indexer.embedding import load_minilm

    known: dict[str, np.ndarray] = {}
    if cache and cache.exists():
        with np.load(cache, allow_pickle=False) as data:
            known = dict(zip(data["texts"].tolist(), data["vectors"], strict=True))
    wanted = sorted(set(texts))
    missing = [t for t in wanted if t not in known]
    if missing:
        print(f"embedding {len(missing)} texts ({len(wanted) - len(missing)} cached)", flush=True)
        model = load_minilm()
        known.update((t, model.embed([t])[0]) for t in missing)
    if cache and (missing or len(known) != len(wanted)):
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, texts=np.array(wanted), vectors=np.stack([known[t] for t in wanted]))
    return {t: known[t] for t in wanted}


# ---------------------------------------------------------------- fitting


def _vocabulary(vectorizer: TfidfVectorizer) -> list[str]:
    return sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)


class Features:
    """The three views of a batch of texts: sparse matrices for fitting, plain arrays for the runtime."""

    def __init__(self, texts: list[str], cfg: Config) -> None:
        self.chars = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=NGRAMS,
            sublinear_tf=True,
            max_features=cfg.ngrams,
            dtype=np.float32,
        ).fit(texts)
        self.words = TfidfVectorizer(
            analyzer="word",
            ngram_range=WORD_NGRAMS,
            token_pattern=r"(?u)\b\w+\b",
            sublinear_tf=True,
            min_df=cfg.word_min_df,
            max_features=cfg.words,
            dtype=np.float32,
        ).fit(texts)
        self.weight = cfg.embedding_weight

    def matrix(self, texts: list[str], embeddings: np.ndarray, words: bool = True) -> sparse.csr_matrix:
        """``words=False``: the embedding and character views only (the slot model's). No texts: no rows."""
        vectorizers = [self.chars, self.words] if words else [self.chars]
        if not texts:
            width = embeddings.shape[1] + sum(len(v.vocabulary_) for v in vectorizers)
            return sparse.csr_matrix((0, width), dtype=np.float32)
        views = [sparse.csr_matrix(embeddings * self.weight), *(v.transform(texts) for v in vectorizers)]
        return sparse.hstack(views).tocsr()

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "ngram_vocabulary": np.array(_vocabulary(self.chars)),
            "ngram_idf": self.chars.idf_.astype(np.float32),
            "word_vocabulary": pack_words(_vocabulary(self.words)),
            "word_idf": self.words.idf_.astype(np.float32),
        }

    def model(self, prefix: str, coef: np.ndarray, intercept: np.ndarray, dim: int) -> dict[str, np.ndarray]:
        """Runtime arrays for one model, the embedding weight folded into its coefficients."""
        chars = dim + len(self.chars.vocabulary_)
        return {
            f"{prefix}_embedding": (coef[:, :dim] * self.weight).astype(np.float32),
            f"{prefix}_ngrams": coef[:, dim:chars].astype(np.float32),
            f"{prefix}_words": coef[:, chars:].astype(np.float32),
            f"{prefix}_intercept": intercept.astype(np.float32),
        }


def fit_intents(
    x: sparse.csr_matrix, y: np.ndarray, c: float, seed: int, pieces_x: sparse.csr_matrix, owners: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One model per intent on the messages ``x``; the pieces ``pieces_x`` (row ``owners[i]`` of ``x`` is
    the message of piece ``i``) join as negatives of every intent their message does not have."""
    coef, intercept = [], []
    for column in range(y.shape[1]):
        negative = np.flatnonzero(~y[owners, column])
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=seed)
        model.fit(
            sparse.vstack([x, pieces_x[negative]]).tocsr(),
            np.concatenate([y[:, column], np.zeros(len(negative), bool)]),
        )
        coef.append(model.coef_[0])
        intercept.append(model.intercept_[0])
    return np.array(coef), np.array(intercept)


def fit_slots(x: sparse.csr_matrix, y: np.ndarray, c: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=seed)
    model.fit(x, y)
    order = [list(model.classes_).index(i) for i in range(len(SLOTS))]
    return model.coef_[order], model.intercept_[order]


def choose_threshold(scores: np.ndarray, truth: np.ndarray, keep_all: bool) -> float:
    """``keep_all``: the highest threshold that still flags every positive. Otherwise the best-F1
    threshold, moved halfway down to the next score so the cut sits in the gap, not on an example."""
    positives = scores[truth]
    if not len(positives):
        return 0.5
    if keep_all:
        return float(positives.min())
    best, best_f1 = 0.5, -1.0
    for value in np.unique(scores)[::-1]:
        flagged = scores >= value
        f1 = 2 * int((flagged & truth).sum()) / (flagged.sum() + truth.sum())
        if f1 > best_f1:
            best, best_f1 = float(value), f1
    below = scores[scores < best]
    return (best + float(below.max())) / 2 if len(below) else best


# ---------------------------------------------------------------- metrics


def rates(flagged: np.ndarray, truth: np.ndarray) -> dict[str, float | int]:
    tp = int((flagged & truth).sum())
    fp = int((flagged & ~truth).sum())
    fn = int((~flagged & truth).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "support": int(truth.sum()),
        "false_positives": fp,
        "false_negatives": fn,
    }


def intent_metrics(scores: np.ndarray, truth: np.ndarray, thresholds: np.ndarray, hard: np.ndarray) -> Report:
    flagged = scores >= thresholds
    d = INTENTS.index("distress")
    negatives = ~truth[:, d]
    return {
        "per_class": {name: rates(flagged[:, i], truth[:, i]) for i, name in enumerate(INTENTS)},
        "distress_false_alarm_rate": round(float((flagged[:, d] & negatives).sum() / negatives.sum()), 4),
        "distress_false_alarm_rate_hard_negatives": round(
            float((flagged[:, d] & hard).sum() / max(hard.sum(), 1)), 4
        ),
        "hard_negatives": int(hard.sum()),
        "messages_without_distress": int(negatives.sum()),
    }


# The other intents are flagged at their best-F1 threshold, but never below even odds: a flagged sentence
# is withheld from the summary's facts (injection) or steers the interview, and the best-F1 point can sit
# low (injection 0.15 once), where it flagged a student's own stuck point ("In the lecture you showed
# that b = a and then changing b also change a", 0.19)
FLAG_FLOOR = 0.5
SURE_FALSE_ALARMS = 0.01  # below this the interview checks in with the student instead of escalating


def distress_at_false_alarm_rate(
    scores: np.ndarray, truth: np.ndarray, validation: np.ndarray, test: np.ndarray, rate: float
) -> Report:
    """The other operating point: the threshold that flags ``rate`` of validation messages without
    distress, and what it does on the test split. Reported so the cost of 100% recall is visible."""
    threshold = float(np.quantile(scores[validation & ~truth], 1 - rate))
    flagged = scores >= threshold
    return {
        "threshold": round(threshold, 6),
        "test_recall": rates(flagged[test], truth[test])["recall"],
        "test_false_alarm_rate": round(
            float(flagged[test & ~truth].sum() / max((test & ~truth).sum(), 1)), 4
        ),
    }


def slot_metrics(predicted: np.ndarray, truth: np.ndarray) -> Report:
    per_class = {name: rates(predicted == i, truth == i) for i, name in enumerate(SLOTS)}
    return {
        "per_class": per_class,
        "accuracy": round(float((predicted == truth).mean()), 4),
        "macro_f1": round(float(np.mean([m["f1"] for m in per_class.values()])), 4),
        "confusion": [
            [int(((truth == i) & (predicted == j)).sum()) for j in range(len(SLOTS))]
            for i in range(len(SLOTS))
        ],
        "sentences": len(truth),
    }


def sizes(rows: list[Row], split: np.ndarray) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for row, s in zip(rows, split, strict=True):
        for label in labels(row) or ["none"]:
            counts = out.setdefault(label, dict.fromkeys((*SPLITS, "total"), 0))
            counts[SPLITS[s]] += 1
            counts["total"] += 1
    return dict(sorted(out.items()))


# ---------------------------------------------------------------- report


def markdown(report: Report) -> str:
    intents, slots, other = report["intents"], report["slots"], report["distress_at_5_percent_false_alarms"]
    lines = [
        "# Message classifiers: held-out report",
        "",
        "Written by `python -m services.understanding.train` (`make classifiers`); do not edit by hand.",
        f"Data hash `{report['data_hash'][:16]}…`, seed {report['config']['seed']}. Split 70 / 15 / 15 "
        "(train / validation / test) by label and by group: a hand-written line with all its variants, "
        "or all fillings of one template, stay in one split, so the test split holds unseen phrasings. "
        f"{report['train_only']} examples from lines written after a false alarm was seen "
        "(`data/handwritten/intents/train-only/`) always train and leave the other groups' splits "
        "as they were.",
        "Intents are scored as the runtime scores them: the maximum over the message and its sentences; "
        "thresholds were chosen on the validation split. Three views of each text (MiniLM embedding, "
        "character n-grams, words and word pairs); a message without an intent is fitted as a negative "
        "both whole and piece by piece (the runtime's pieces), a message with it whole.",
        "",
        "## Intents (held-out test split)",
        "",
        "| intent | threshold | precision | recall | F1 | support | false pos. | false neg. |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in intents["per_class"].items():
        lines.append(
            f"| {name} | {report['thresholds'][name]:.4f} | {m['precision']:.3f} | {m['recall']:.3f} "
            f"| {m['f1']:.3f} | {m['support']} | {m['false_positives']} | {m['false_negatives']} |"
        )
    lines += [
        "",
        f"**Distress false-alarm rate: {intents['distress_false_alarm_rate']:.4f}** (flagged among the "
        f"{intents['messages_without_distress']} test messages without distress); among the "
        f"{intents['hard_negatives']} hard negatives alone (academic stress, grades, idioms, dark course "
        f"content, no ordinary answers): {intents['distress_false_alarm_rate_hard_negatives']:.4f}.",
        "",
        f"The cost of 100% recall: a threshold flagging 5% of validation messages without distress "
        f"({other['threshold']:.4f}) would give test recall {other['test_recall']:.4f} at a false-alarm "
        f"rate of {other['test_false_alarm_rate']:.4f}.",
        "",
        *(
            [
                "How the interview uses it: the rules and a probability at or above the *sure* level "
                f"({sure['threshold']:.4f}, flagging 1% of the validation split's hard negatives; on the "
                f"test split recall {sure['test_recall']:.4f}, false alarms "
                f"{sure['test_false_alarm_rate']:.4f}) escalate at once; a message between the fitted "
                "threshold and the sure level gets one check-in question, and the answer escalates on any "
                "further signal or on 'not really'.",
                "",
            ]
            if (sure := report.get("distress_sure"))
            else []
        ),
        "## Sentence slots (held-out test split)",
        "",
        "| slot | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
        *(
            f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |"
            for name, m in slots["per_class"].items()
        ),
        "",
        f"Accuracy {slots['accuracy']:.3f}, macro F1 {slots['macro_f1']:.3f} "
        f"over {slots['sentences']} sentences.",
        "Confusion (rows: true slot, columns: predicted, in the order above):",
        "",
        "```",
        *(" ".join(f"{v:4d}" for v in row) + f"  {SLOTS[i]}" for i, row in enumerate(slots["confusion"])),
        "```",
        "",
        "## Data (examples per label and split)",
        "",
        "| task | label | train | validation | test | total |",
        "|---|---|---|---|---|---|",
    ]
    for task in ("intents", "slots"):
        for label, c in report["sizes"][task].items():
            lines.append(
                f"| {task} | {label} | {c['train']} | {c['validation']} | {c['test']} | {c['total']} |"
            )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main


def train(cfg: Config) -> Report:
    intent_rows = limited(read_jsonl(cfg.data / "intents.jsonl"), cfg.limit)
    slot_rows = limited(read_jsonl(cfg.data / "slots.jsonl"), cfg.limit)
    intent_split = assign_splits(intent_rows, cfg.validation, cfg.test, cfg.seed)
    slot_split = assign_splits(slot_rows, cfg.validation, cfg.test, cfg.seed)

    spelling = load_spelling()
    intent_pieces = [[spelling.correct(p) for p in pieces(r["text"])] for r in intent_rows]
    # fitted on whole messages as written; scored, like the runtime, on their pieces (no courtesies)
    messages = [spelling.correct(" ".join(r["text"].split())) for r in intent_rows]
    slot_texts = [spelling.correct(" ".join(r["text"].split())) for r in slot_rows]
    vectors = embed_all(messages + [p for ps in intent_pieces for p in ps] + slot_texts, cfg.cache)

    y_intent = np.array([[name in r["labels"] for name in INTENTS] for r in intent_rows])
    fit_rows = np.flatnonzero(intent_split == 0)
    fit_texts = [messages[i] for i in fit_rows]
    features = Features(fit_texts, cfg)
    x_intent = features.matrix(fit_texts, np.stack([vectors[t] for t in fit_texts]))
    # every piece of every fitted message, with the row of its message (none without negative pieces)
    owned = [(n, p) for n, i in enumerate(fit_rows) for p in intent_pieces[i]] if cfg.negative_pieces else []
    dim = len(next(iter(vectors.values())))
    x_pieces = features.matrix(
        [p for _, p in owned], np.array([vectors[p] for _, p in owned], np.float32).reshape(-1, dim)
    )
    intent_coef, intent_intercept = fit_intents(
        x_intent, y_intent[fit_rows], cfg.intent_c, cfg.seed, x_pieces, np.array([n for n, _ in owned], int)
    )

    y_slot = np.array([SLOTS.index(r["slot"]) for r in slot_rows])
    slot_vectors = np.stack([vectors[t] for t in slot_texts])
    slot_fit = np.flatnonzero(slot_split == 0)
    # sentence slots keep the two views they were fitted on: with words, held-out accuracy rose
    # (0.945 -> 0.976) but the replayed interviews read negations and terse openings worse
    x_slot = features.matrix([slot_texts[i] for i in slot_fit], slot_vectors[slot_fit], words=False)
    slot_coef, slot_intercept = fit_slots(x_slot, y_slot[slot_fit], cfg.slot_c, cfg.seed)

    arrays = {
        "intent_labels": np.array(INTENTS),
        "slot_labels": np.array(SLOTS),
        **features.arrays(),
        **features.model("intent", intent_coef, intent_intercept, dim),
        **features.model("slot", slot_coef, slot_intercept, dim),
        "intent_thresholds": np.full(len(INTENTS), 0.5),
        "data_hash": np.array(data_hash(cfg.data)),
    }
    model = MessageClassifier(arrays)
    scores = np.stack(
        [model.intent_scores(ps, np.array([vectors[p] for p in ps]).reshape(-1, dim)) for ps in intent_pieces]
    )
    validation, test = intent_split == 1, intent_split == 2
    thresholds = np.array(
        [
            choose_threshold(scores[validation, i], y_intent[validation, i], keep_all=True)
            if name == "distress"
            else max(
                choose_threshold(scores[validation, i], y_intent[validation, i], keep_all=False), FLAG_FLOOR
            )
            for i, name in enumerate(INTENTS)
        ]
    )
    arrays["intent_thresholds"] = thresholds
    hard = ~y_intent.any(axis=1) & np.array([r["source"] != "slot" for r in intent_rows])
    slot_test = np.flatnonzero(slot_split == 2)
    slot_predicted = model.slot_probabilities([slot_texts[i] for i in slot_test], slot_vectors[slot_test])

    d = INTENTS.index("distress")
    report: Report = {
        "data_hash": str(arrays["data_hash"]),
        "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("data", "out", "cache")},
        "thresholds": {name: round(float(t), 6) for name, t in zip(INTENTS, thresholds, strict=True)},
        "intents": intent_metrics(scores[test], y_intent[test], thresholds, hard[test]),
        "distress_at_5_percent_false_alarms": distress_at_false_alarm_rate(
            scores[:, d], y_intent[:, d], validation, test, 0.05
        ),
        "slots": slot_metrics(slot_predicted.argmax(axis=1), y_slot[slot_test]),
        "validation": {
            "intents": intent_metrics(scores[validation], y_intent[validation], thresholds, hard[validation])
        },
        "sizes": {"intents": sizes(intent_rows, intent_split), "slots": sizes(slot_rows, slot_split)},
        "train_only": sum(1 for r in intent_rows if TRAIN_ONLY_GROUP.search(r["group"])),
    }
    # the level the interview acts on without asking first: 1% of the validation split's hard negatives
    # (academic stress, idioms, dark course content), the messages an anxious student writes. Over all
    # messages without distress it sat at 0.893, where blind students' anxious course talk ("I keep
    # losing points for leaving out 'me' or 'se'", 0.90) was escalated without a check-in
    sure = distress_at_false_alarm_rate(
        scores[:, d], y_intent[:, d], validation & (hard | y_intent[:, d]), test, SURE_FALSE_ALARMS
    )
    report["distress_sure"] = sure
    arrays["distress_sure_threshold"] = np.array(sure["threshold"])
    cfg.out.mkdir(parents=True, exist_ok=True)
    with (cfg.out / "weights.npz").open("wb") as f:
        np.savez(f, allow_pickle=False, **arrays)
    (cfg.out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (cfg.out / "report.md").write_text(markdown(report))
    return report


def latency(weights: Path, runs: int = 50) -> float:
    """Median seconds for ``understand`` on a typical two-sentence answer (after one warm-up call)."""
    model = MessageClassifier.load(weights)
    message = "I'm stuck on problem 3 of the second homework, the recursion part. I tried tracing it by hand."
    model.understand(message)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.understand(message)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def parse(argv: list[str] | None) -> tuple[Config, bool]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for field in dataclasses.fields(Config):
        kind = Path if field.name in ("data", "out", "cache") else type(field.default)
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=kind, default=field.default)
    parser.add_argument("--no-cache", action="store_true", help="embed everything afresh")
    parser.add_argument("--latency", action="store_true", help="also time `understand` (median of 50 calls)")
    args = vars(parser.parse_args(argv))
    if args.pop("no_cache"):
        args["cache"] = None
    timed = args.pop("latency")
    return Config(**args), timed


def main(argv: list[str] | None = None) -> None:
    cfg, timed = parse(argv)
    report = train(cfg)
    for name, m in report["intents"]["per_class"].items():
        print(f"{name:15s} P {m['precision']:.3f} R {m['recall']:.3f} F1 {m['f1']:.3f} n={m['support']}")
    print("distress false alarms:", report["intents"]["distress_false_alarm_rate"])
    print("slots accuracy:", report["slots"]["accuracy"], "macro F1:", report["slots"]["macro_f1"])
    if timed:
        print(f"understand latency (median of 50): {latency(cfg.out / 'weights.npz') * 1000:.1f} ms")


if __name__ == "__main__":
    main()
