"""Write the labelled examples the classifiers learn from: ``data/intents.jsonl`` and ``data/slots.jsonl``.

Everything a student could say lives in data files, not here: hand-written messages (one per line in
``data/handwritten/<task>/<label>.txt``, a file named ``a+b.txt`` carries both labels), templates
(``data/templates.toml``) and the subjects they are filled from (``data/subjects.toml``). This module is
the mechanism: fill the templates over many subjects, add student styles (texting, lowercase, emoji,
non-native phrasing, code-switching into Spanish, Hindi or Chinese, typos, rambling), frame every
hand-written line inside ordinary answers (so an injection or distress sentence hidden in a normal
answer is learned, and a frame is never a clue), and de-duplicate. A fixed seed makes the files reproducible.

Every example carries a ``group``: the template or hand-written line it came from. The training script
keeps a group inside one split, so a style variant of a training sentence never lands in the test set.

    python -m services.understanding.dataset            # rewrites data/intents.jsonl and data/slots.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import re
import string
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).parent / "data"
TRAIN_ONLY = "train-only"  # hand-written lines the training script never holds out (see train_only_examples)
INTENTS = ("distress", "answer_request", "injection", "off_topic", "reschedule")
SLOTS = ("stuck_on", "attempts", "goal", "deadline", "assignment", "context", "junk")
DEFAULTS = {
    "seed": 7,
    "fills": 10,  # fillings per intent template
    "slot_fills": 16,  # fillings per slot template
    "styles": 2,  # style variants per hand-written line (and per filling, at half the rate)
    "frames": 2,  # framed variants per hand-written intent line (every label alike)
    "mashes": 120,  # generated keyboard mash and punctuation noise for the junk slot
}
_FIELD = re.compile(r"\{(\w+?)(2?)\}")


@dataclass(frozen=True)
class Example:
    text: str
    labels: tuple[str, ...]
    group: str
    source: str  # handwritten | template | style | framed | generated | slot


# ---------------------------------------------------------------- styles

_TEXTING = (
    (r"\byou\b", "u"),
    (r"\byour\b", "ur"),
    (r"\bplease\b", "pls"),
    (r"\bbecause\b", "bc"),
    (r"\bto be honest\b", "tbh"),
    (r"\bi don'?t know\b", "idk"),
    (r"\bright now\b", "rn"),
    (r"\bgoing to\b", "gonna"),
    (r"\bwant to\b", "wanna"),
    (r"\breally\b", "rly"),
    (r"\bthough\b", "tho"),
    (r"\bwith\b", "w/"),
    (r"\bi'?m\b", "im"),
    (r"\bdon'?t\b", "dont"),
    (r"\bcan'?t\b", "cant"),
)
_EMOJI = ("😭", "😩", "🙏", "😅", "💀", "😔", "🥲", "😞", "🤷", "😬", "🫠", "😐", "🙃", "😢")
_CODESWITCH = {
    "es": (
        ("profe, ", "oye ", "pues ", "la verdad ", "bueno, ", "mira, "),
        (" jaja", " ¿sabes?", " porfa", " no sé", " la verdad"),
    ),
    "hi": (
        ("yaar ", "bhai ", "accha so ", "arre ", "dekho "),
        (" yaar", " na", " hai na", " samjhe", " bas"),
    ),
    "zh": (("老师，", "嗯 ", "那个 ", "就是 "), (" 啊", " 吧", " 哈哈", " 谢谢", " 呢")),
}
_SWAPS = {
    "es": (("homework", "tarea"), ("exam", "examen"), ("please", "por favor"), ("teacher", "profe")),
    "hi": (("I don't understand", "samajh nahi aa raha"), ("really", "ekdum"), ("please", "please yaar")),
    "zh": (("I don't understand", "我不懂"), ("teacher", "老师"), ("really", "真的")),
}
_RAMBLE = (
    ("so um basically ", "ok so like ", "hi! so ", "hmm ok so ", "sorry if this is confusing but "),
    (" if that makes sense", " idk if that helps", "... yeah", " i guess", " or something like that"),
)
_FORMAL = (
    ("Sir, ", "Hello ma'am, ", "Respected professor, ", "Kindly note, "),
    (" Please help.", " Thank you.", " Kindly advise.", ""),
)


def _lower(text: str, rng: random.Random) -> str:
    out = text.lower().rstrip(".!")
    return out.replace("'", "") if rng.random() < 0.5 else out


def _texting(text: str, rng: random.Random) -> str:
    out = text.lower()
    for pattern, repl in _TEXTING:
        out = re.sub(pattern, repl, out)
    return out.rstrip(".")


def _emoji(text: str, rng: random.Random) -> str:
    return f"{text} {rng.choice(_EMOJI)}" + (rng.choice(_EMOJI) if rng.random() < 0.3 else "")


def _nonnative(text: str, rng: random.Random) -> str:
    out = re.sub(r"\bI'm\b", "I am", text)
    out = re.sub(r"\bdon't understand\b", "am not understanding", out)
    out = re.sub(r"\bthe (?=\w)", lambda m: "" if rng.random() < 0.5 else m.group(0), out)
    head, tail = rng.choice(_FORMAL[0]), rng.choice(_FORMAL[1])
    return f"{head}{out[:1].lower()}{out[1:]}{tail}"


def _codeswitch(text: str, rng: random.Random) -> str:
    lang = rng.choice(sorted(_CODESWITCH))
    for english, other in _SWAPS[lang]:
        text = text.replace(english, other)
    heads, tails = _CODESWITCH[lang]
    if rng.random() < 0.6:
        text = rng.choice(heads) + text[:1].lower() + text[1:]
    if rng.random() < 0.6:
        text = text.rstrip(".") + rng.choice(tails)
    return text


def _typo(text: str, rng: random.Random) -> str:
    words = text.split()
    long = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    for i in rng.sample(long, min(len(long), 1)):
        w = words[i]
        j = rng.randrange(1, len(w) - 2)
        words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    return " ".join(words)


def _ramble(text: str, rng: random.Random) -> str:
    return rng.choice(_RAMBLE[0]) + text[:1].lower() + text[1:].rstrip(".") + rng.choice(_RAMBLE[1])


STYLES: tuple[Callable[[str, random.Random], str], ...] = (
    _lower,
    _texting,
    _emoji,
    _nonnative,
    _codeswitch,
    _typo,
    _ramble,
)


def styled(
    text: str,
    count: int,
    rng: random.Random,
    styles: tuple[Callable[[str, random.Random], str], ...] = STYLES,
) -> list[str]:
    """``count`` variants of ``text`` in different student styles (some may equal the original)."""
    return [style(text, rng) for style in rng.sample(styles, min(count, len(styles)))]


# ---------------------------------------------------------------- templates


class Filler:
    """Fills ``{field}`` from one randomly chosen subject (its list ``field`` or ``fields``) and the shared
    [fill] lists; ``{field2}`` is a second, different value of the same field."""

    def __init__(self, subjects: list[dict[str, object]], shared: dict[str, list[str]]) -> None:
        self.subjects = subjects
        self.shared = shared

    def fill(self, template: str, rng: random.Random, extra: dict[str, str] | None = None) -> str | None:
        fields = [
            name
            for name in dict.fromkeys(n for n, _ in _FIELD.findall(template))
            if name not in (extra or {})
        ]
        candidates = [s for s in self.subjects if all(self._values(s, f) for f in fields)]
        if not candidates:
            return None
        subject = rng.choice(candidates)
        chosen: dict[str, str] = dict(extra or {})
        for name in fields:
            first, *rest = rng.sample(self._values(subject, name), min(2, len(self._values(subject, name))))
            chosen[name] = first
            chosen[name + "2"] = rest[0] if rest else first
        return _FIELD.sub(lambda m: chosen[m.group(1) + m.group(2)], template)

    def _values(self, subject: dict[str, object], field: str) -> list[str]:
        if field == "subject":
            return [str(subject["name"])]
        value = subject.get(field, subject.get(field + "s", self.shared.get(field, [])))
        return [str(v) for v in value] if isinstance(value, list) else []


def _fills(filler: Filler, template: str, count: int, rng: random.Random, **extra: str) -> Iterator[str]:
    seen: set[str] = set()
    for _ in range(count * 4):
        text = filler.fill(template, rng, extra or None)
        if text is None:
            return
        if text not in seen:
            seen.add(text)
            yield text
        if len(seen) >= count:
            return


# ---------------------------------------------------------------- sources


def read_handwritten(task: str, folder: str = "") -> Iterator[tuple[tuple[str, ...], int, str]]:
    """(labels, line number, text) for every non-comment line; ``none.txt`` means no label."""
    for path in sorted((DATA / "handwritten" / task / folder).glob("*.txt")):
        labels = () if path.stem == "none" else tuple(path.stem.split("+"))
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip() and not line.lstrip().startswith("#"):
                yield labels, number, line.strip()


def _mash(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        return "".join(rng.choice("asdfghjklqwertyuiopzxcvbnm") for _ in range(rng.randint(3, 12)))
    if kind == 1:
        return rng.choice(string.ascii_lowercase) * rng.randint(3, 10)
    if kind == 2:
        return "".join(rng.choice("?!.-_~") for _ in range(rng.randint(1, 5)))
    if kind == 3:
        return "".join(rng.choice(_EMOJI) for _ in range(rng.randint(1, 3)))
    return rng.choice(("ok", "k", "idk", "lol", "no", "ye", "nah", "hm", "meh", "eh")) + rng.choice(
        ("", ".", "!", "?", " lol", " 😅")
    )


def intent_examples(
    filler: Filler, templates: dict[str, object], cfg: dict[str, int], rng: random.Random
) -> Iterator[Example]:
    """Hand-written lines with their style variants and framed variants, then filled templates."""
    frames: list[str] = templates["frames"]["templates"]  # type: ignore[index]
    for labels, number, text in read_handwritten("intents"):
        group = f"intents:{'+'.join(labels) or 'none'}:h{number}"
        yield Example(text, labels, group, "handwritten")
        for variant in styled(text, cfg["styles"], rng):
            yield Example(variant, labels, group, "style")
        for frame in rng.sample(frames, cfg["frames"]):
            for framed in _fills(filler, frame, 1, rng, core=text.rstrip(".")):
                yield Example(framed, labels, group, "framed")
    intent_templates: dict[str, dict[str, list[str]]] = templates["intents"]  # type: ignore[assignment]
    for label, section in intent_templates.items():
        labels = () if label == "none" else (label,)
        for index, template in enumerate(section["templates"]):
            group = f"intents:{label}:t{index}"
            for text in _fills(filler, template, cfg["fills"], rng):
                yield Example(text, labels, group, "template")
                if rng.random() < 0.5:
                    yield Example(styled(text, 1, rng)[0], labels, group, "style")


def train_only_examples(cfg: dict[str, int], rng: random.Random) -> Iterator[Example]:
    """Lines written after a false alarm or a miss was seen (``handwritten/intents/train-only/``), with
    their style variants: groups ``intents:<label>:x<line>``, which the training script always puts in the
    training split. They come last with a random stream of their own, so every earlier example, and with
    it the held-out split the report is measured on, stays exactly as it was."""
    for labels, number, text in read_handwritten("intents", TRAIN_ONLY):
        group = f"intents:{'+'.join(labels) or 'none'}:x{number}"
        yield Example(text, labels, group, "handwritten")
        for variant in styled(text, cfg["styles"], rng):
            yield Example(variant, labels, group, "style")


def slot_examples(
    filler: Filler, templates: dict[str, object], cfg: dict[str, int], rng: random.Random
) -> Iterator[Example]:
    """Hand-written slot sentences with style variants, filled templates, and generated junk."""
    for labels, number, text in read_handwritten("slots"):
        group = f"slots:{labels[0]}:h{number}"
        yield Example(text, labels, group, "handwritten")
        styles = (_lower, _emoji, _codeswitch) if labels == ("junk",) else STYLES
        for variant in styled(text, cfg["styles"], rng, styles):
            yield Example(variant, labels, group, "style")
    slot_templates: dict[str, dict[str, list[str]]] = templates["slots"]  # type: ignore[assignment]
    for slot, section in slot_templates.items():
        for index, template in enumerate(section["templates"]):
            group = f"slots:{slot}:t{index}"
            for text in _fills(filler, template, cfg["slot_fills"], rng):
                yield Example(text, (slot,), group, "template")
                if rng.random() < 0.5:
                    yield Example(styled(text, 1, rng)[0], (slot,), group, "style")
    for index in range(cfg["mashes"]):
        yield Example(_mash(rng), ("junk",), f"slots:junk:m{index % 12}", "generated")


def deduplicated(examples: Iterator[Example]) -> tuple[list[Example], int]:
    """First occurrence wins (hand-written lines come first); returns the examples and how many
    duplicates were dropped."""
    seen: set[str] = set()
    kept: list[Example] = []
    dropped = 0
    for example in examples:
        key = " ".join(example.text.lower().split())
        if not key or key in seen:
            dropped += 1
            continue
        seen.add(key)
        kept.append(example)
    return kept, dropped


def build(cfg: dict[str, int]) -> tuple[list[Example], list[Example]]:
    """(intent examples, slot examples). Slot sentences (ordinary answers) double as no-intent examples
    for the intent task, so intents learn what a normal answer sentence looks like."""
    rng = random.Random(cfg["seed"])
    templates = tomllib.loads((DATA / "templates.toml").read_text())
    subjects = tomllib.loads((DATA / "subjects.toml").read_text())["subject"]
    filler = Filler(subjects, templates["fill"])
    slots, _ = deduplicated(slot_examples(filler, templates, cfg, rng))
    as_answers = (Example(e.text, (), e.group, "slot") for e in slots)
    intents, _ = deduplicated(iter([*intent_examples(filler, templates, cfg, rng), *as_answers]))
    extra = train_only_examples(cfg, random.Random(cfg["seed"] + 1))
    intents, _ = deduplicated(iter([*intents, *extra]))  # the earlier examples win, as they come first
    return intents, slots


def write(path: Path, examples: list[Example], key: str) -> None:
    lines = []
    for e in examples:
        value: object = list(e.labels) if key == "labels" else e.labels[0]
        lines.append(
            json.dumps({"text": e.text, key: value, "group": e.group, "source": e.source}, ensure_ascii=False)
        )
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in DEFAULTS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)
    parser.add_argument("--out", type=Path, default=DATA)
    cfg = vars(parser.parse_args(argv))
    out: Path = cfg.pop("out")
    intents, slots = build(cfg)
    write(out / "intents.jsonl", intents, "labels")
    write(out / "slots.jsonl", slots, "slot")
    counts = Counter(label or "none" for e in intents for label in (e.labels or ("",)))
    print("intents:", len(intents), dict(sorted(counts.items())))
    print("slots:", len(slots), dict(sorted(Counter(e.labels[0] for e in slots).items())))


if __name__ == "__main__":
    main()
