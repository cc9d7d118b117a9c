"""Curate generated conversations: automatic checks, a report, and the accepted set.

Every conversation is checked; any failed check rejects it, and the report lists each rejected
conversation with its reasons. Checks:

- ``one_question``: every assistant turn that continues the interview asks exactly one question;
- ``turns``: 5–8 student turns (an escalated conversation stops at the distress message instead);
- ``no_homework``: no assistant turn writes or solves the student's work (the gateway's own solution
  patterns plus the rubric's);
- ``targets``: there is at least one model-written reply to learn from, and no composed reply was
  refused by the gateway's checks;
- ``summary_valid``: the delivered summary decodes as ``Summary`` v1 and the model's draft decodes with
  all four text fields (a field the gateway's evidence check refuses is kept: it falls back to the
  composed text at serving time, and the generator already prefers wording the check keeps);
- ``summary_consistent``: the summary agrees with the persona on status, distress, assignment and topic;
- ``own_course``: no assistant turn or draft names an assignment or topic title of another course
  (the sample courses' vocabulary must not leak into a new course);
- ``duplicate``: no two conversations with the same student and assistant text.

Usage: ``python -m finetune.curate [--data-dir DIR]`` reads ``conversations.jsonl``, writes
``curated.jsonl`` and ``curation.json`` under ``<data_dir>/finetune/``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import msgspec

from finetune.conversation import Conversation, read_jsonl, write_jsonl
from finetune.personas import training_catalog
from finetune.rubric import _SOLVING, MAX_QUESTION_WORDS
from services.coursepack import Course, load_catalog
from services.gateway.intake import guardrails, summary
from services.gateway.intake.models import Summary
from services.gateway.intake.wording import RECAP_CUE
from services.settings import load_settings

CHECKS = (
    "one_question",
    "turns",
    "no_homework",
    "targets",
    "summary_valid",
    "summary_consistent",
    "own_course",
    "duplicate",
)


class Rejected(msgspec.Struct, frozen=True):
    id: str
    persona_id: str
    style: str
    reasons: list[str]


class CurationReport(msgspec.Struct, kw_only=True):
    total: int
    accepted: int
    rejected: int
    by_check: dict[str, int]  # conversations failing each check
    by_style: dict[str, dict[str, int]]  # style -> {"accepted": n, "rejected": n}
    examples: int  # training examples (model calls) in the accepted set
    rejects: list[Rejected]


def check_conversation(
    conv: Conversation, min_turns: int = 5, max_turns: int = 8, foreign: Mapping[str, set[str]] | None = None
) -> list[str]:
    """Reasons this conversation must not be trained on (empty: accept).

    ``foreign`` maps a course slug to the titles of every other course (``foreign_titles``).
    """
    return [
        *_own_course(conv, (foreign or {}).get(conv.persona.course_slug, set())),
        *_one_question(conv),
        *_turns(conv, min_turns, max_turns),
        *_no_homework(conv),
        *_targets(conv),
        *_summary_valid(conv),
        *_summary_consistent(conv),
    ]


def _continuing_replies(conv: Conversation) -> list[str]:
    """Assistant turns that ask the next question; the recap (a template that quotes the student back to
    them, never a model target) is checked by the gateway's own tests, not here."""
    replies = [m.text for m in conv.messages if m.role == "assistant"]
    replies = replies[:-1] if conv.status in {"complete", "escalated"} else replies
    return [r for r in replies if RECAP_CUE not in r]


def _one_question(conv: Conversation) -> list[str]:
    bad = [t for t in _continuing_replies(conv) if t.count("?") != 1 or len(t.split()) > MAX_QUESTION_WORDS]
    return (
        [f"one_question: {len(bad)} assistant turn(s) without exactly one short question: {bad[0][:70]!r}"]
        if bad
        else []
    )


def _turns(conv: Conversation, low: int, high: int) -> list[str]:
    n = sum(1 for m in conv.messages if m.role == "student")
    if conv.status == "escalated":
        return (
            []
            if conv.persona.truth.distress
            else [f"turns: escalated a non-distress persona after {n} turns"]
        )
    if conv.status != "complete":
        return [f"turns: interview not finished ({conv.status}) after {n} turns"]
    return [] if low <= n <= high else [f"turns: {n} student turns, want {low}-{high}"]


def _no_homework(conv: Conversation) -> list[str]:
    system = conv.prompt[0]["content"] if conv.prompt else ""
    replies = [m.text for m in conv.messages if m.role == "assistant" and RECAP_CUE not in m.text]
    for text in [*replies, conv.summary_reply]:
        if _SOLVING.search(text) or "solution" in guardrails.check_partial(
            text[: guardrails.MAX_REPLY_CHARS], system_prompt=system
        ):
            return [f"no_homework: solving text {text[:70]!r}"]
    return []


def _targets(conv: Conversation) -> list[str]:
    out = []
    if not conv.targets:
        out.append("targets: no model-written reply to learn from")
    if conv.replaced:
        out.append(f"targets: {conv.replaced} composed reply(ies) refused by the gateway")
    bad = [i for i in conv.targets if i >= len(conv.prompt) or conv.prompt[i]["role"] != "assistant"]
    if bad:
        out.append(f"targets: indices {bad} are not assistant messages")
    return out


def _summary_valid(conv: Conversation) -> list[str]:
    if conv.summary is None:
        return ["summary_valid: the gateway delivered no summary"]
    try:
        msgspec.convert(conv.summary, Summary)
    except (msgspec.ValidationError, TypeError) as exc:
        return [f"summary_valid: not a summary v1: {exc}"]
    if conv.status == "escalated":
        return []  # the gateway sends no draft request for an escalated interview
    try:
        draft = msgspec.convert(json.loads(conv.summary_reply), summary.DraftText)
    except (ValueError, msgspec.ValidationError) as exc:
        return [f"summary_valid: draft is not JSON with the four text fields: {exc}"]
    empty = [f for f in summary.FREE_FIELDS if not getattr(draft, f).strip()]
    out = [f"summary_valid: draft fields empty: {empty}"] if empty else []
    return out


def _summary_consistent(conv: Conversation) -> list[str]:
    s, truth = conv.summary or {}, conv.persona.truth
    out = []
    if s.get("status") != truth.status:
        out.append(f"summary_consistent: status {s.get('status')} != {truth.status}")
    if bool((s.get("flags") or {}).get("distress")) != truth.distress:
        out.append("summary_consistent: distress flag disagrees with the persona")
    if truth.status == "escalated":
        return out  # the chat stopped early: the facts may honestly be unknown
    if s.get("assignment") != truth.assignment:
        out.append(f"summary_consistent: assignment {s.get('assignment')} != {truth.assignment}")
    if s.get("topic") not in {truth.topic, "other"}:
        out.append(f"summary_consistent: topic {s.get('topic')} != {truth.topic}")
    return out


def foreign_titles(courses: Iterable[Course]) -> dict[str, set[str]]:
    """Per course, the assignment and topic titles of all the others that it does not share."""
    titles = {c.slug: {a.title for a in c.assignments} | {t.title for t in c.topics} for c in courses}
    out = {}
    for slug, own in titles.items():
        others = set().union(*(t for s, t in titles.items() if s != slug))
        # "Intervals" (music) inside "Confidence intervals" (statistics) is the course's own word
        out[slug] = {t for t in others if not any(t.lower() in o.lower() for o in own)}
    return out


def _own_course(conv: Conversation, foreign: set[str]) -> list[str]:
    texts = [m.text for m in conv.messages if m.role == "assistant"] + [conv.summary_reply]
    named = sorted(
        {t for t in foreign for text in texts if re.search(rf"(?<!\w){re.escape(t)}(?!\w)", text, re.I)}
    )
    return [f"own_course: names another course's {named[0]!r}"] if named else []


def fingerprint(conv: Conversation) -> str:
    text = "\n".join(f"{m.role}:{' '.join(m.text.lower().split())}" for m in conv.messages)
    return hashlib.sha256(text.encode()).hexdigest()


def curate(
    conversations: Sequence[Conversation],
    min_turns: int = 5,
    max_turns: int = 8,
    foreign: Mapping[str, set[str]] | None = None,
) -> tuple[list[Conversation], CurationReport]:
    """Accepted conversations and the report; the first of identical conversations is kept."""
    seen: set[str] = set()
    accepted: list[Conversation] = []
    rejects: list[Rejected] = []
    by_check: Counter[str] = Counter()
    styles: dict[str, Counter[str]] = {}
    for conv in conversations:
        reasons = check_conversation(conv, min_turns, max_turns, foreign)
        key = fingerprint(conv)
        if key in seen:
            reasons.append("duplicate: same text as an earlier conversation")
        seen.add(key)
        styles.setdefault(conv.persona.style, Counter())["rejected" if reasons else "accepted"] += 1
        if reasons:
            by_check.update({r.split(":")[0] for r in reasons})
            rejects.append(Rejected(conv.id, conv.persona.id, conv.persona.style, reasons))
        else:
            accepted.append(conv)
    report = CurationReport(
        total=len(conversations),
        accepted=len(accepted),
        rejected=len(rejects),
        by_check={c: by_check.get(c, 0) for c in CHECKS},
        by_style={
            s: {"accepted": c["accepted"], "rejected": c["rejected"]} for s, c in sorted(styles.items())
        },
        examples=sum(len(c.targets) + (1 if c.summary_reply else 0) for c in accepted),
        rejects=rejects,
    )
    return accepted, report


def format_report(report: CurationReport, limit: int = 20) -> str:
    lines = [
        f"{report.total} conversations: {report.accepted} accepted, {report.rejected} rejected; "
        f"{report.examples} training examples",
        "",
        f"{'check':<22}{'failed':>8}",
    ]
    lines += [f"{check:<22}{n:>8}" for check, n in report.by_check.items()]
    lines += ["", f"{'style':<14}{'accepted':>10}{'rejected':>10}"]
    lines += [f"{s:<14}{c['accepted']:>10}{c['rejected']:>10}" for s, c in report.by_style.items()]
    if report.rejects:
        lines += ["", "rejected (first reason):"]
        lines += [f"  {r.id:<12} {r.style:<10} {r.reasons[0]}" for r in report.rejects[:limit]]
        if len(report.rejects) > limit:
            lines.append(f"  ... {len(report.rejects) - limit} more in curation.json")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    settings = load_settings()
    parser = argparse.ArgumentParser(prog="python -m finetune.curate", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=settings.data_path)
    args = parser.parse_args(argv)
    root = args.data_dir / "finetune"
    conversations = read_jsonl(root / "conversations.jsonl", Conversation)
    catalog = load_catalog(Path(settings.corpus_dir))
    courses = [*training_catalog(catalog).courses.values(), *catalog.courses.values()]
    foreign = foreign_titles({c.slug: c for c in courses}.values())
    accepted, report = curate(conversations, settings.min_turns, settings.max_turns, foreign)
    write_jsonl(root / "curated.jsonl", accepted)
    (root / "curation.json").write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=1))
    print(format_report(report))
    print(f"\nwritten: {root / 'curated.jsonl'}, report: {root / 'curation.json'}")
    return 0 if accepted else 1


if __name__ == "__main__":
    raise SystemExit(main())
