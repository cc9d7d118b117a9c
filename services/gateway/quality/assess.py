"""Assessment of every finished intake, with the evaluation's own rubric (``finetune/rubric.py``).

The ``assess`` job (``delivery/jobs.py``) runs ``assess_record`` once the final summary is kept: one
``interaction`` record per bot message, one ``multi_turn`` for the conversation, one ``session_summary``,
stamped with the rubric version, the model that ran the intake and the prompt version its calls used.

Redis keys:

- ``quality:assess:<token>`` — a hash, rubric version -> the intake's assessments (JSON). The explanations
  may quote the bot's messages, so it is student data: it expires ``INTAKE_RETENTION_DAYS`` after the
  assessment (which runs when the intake finishes, before the meeting).
- ``quality:assess:agg`` — counters per (rubric version, model, prompt version): intakes, per kind the
  count, score sum and records in error, and each error key's count. No personal data; kept
  ``AGGREGATE_KEEP_DAYS`` after the last write.
- ``quality:assess:agg:<course slug>`` — the same counters for one course's intakes (a staff member's
  read-out adds up only the courses they staff; the operator's reads the global hash).

Storing is one Lua script: the intake's record is written only if that rubric version has none yet, and
only then are the counters bumped, so a retried or duplicated job never counts an intake twice.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any, Literal

import msgspec
import redis.asyncio as aioredis

from finetune.rubric import RUBRIC_VERSION, Judgement, assess_intake
from services.coursepack import Course
from services.gateway.intake.models import IntakeRecord
from services.gateway.quality.calls import AGGREGATE_KEEP_DAYS, PROMPT_VERSION, CallRecord, iso, now_utc

Category = Literal["error", "progress"]
Kind = Literal["interaction", "multi_turn", "session_summary"]
KINDS: tuple[Kind, ...] = ("interaction", "multi_turn", "session_summary")
_BY_INTAKE = "quality:assess:{}"
AGGREGATES = "quality:assess:agg"
_COURSE_AGGREGATES = "quality:assess:agg:{}"
_SEP = "|"

# KEYS intake hash, then the aggregate hashes; ARGV version, json, ttl, aggregate ttl, then field,
# increment pairs
_SAVE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[3])
for k = 2, #KEYS do
  for i = 5, #ARGV, 2 do
    redis.call('HINCRBYFLOAT', KEYS[k], ARGV[i], ARGV[i + 1])
  end
  redis.call('EXPIRE', KEYS[k], ARGV[4])
end
return 1
"""


class AssessmentError(msgspec.Struct, frozen=True, kw_only=True):
    key: str  # stable: counted per model and rubric version
    message: str
    severity: Literal["minor", "major", "critical"]


class Assessment(msgspec.Struct, frozen=True, kw_only=True):
    """One assessment record, shaped like the brief's."""

    kind: Kind
    category: Category  # error: a major or critical finding; progress: none
    score: float  # 0-1
    explanation: str
    errors: list[AssessmentError] = []
    rubric_version: str
    created_at: str
    model: str  # the model that ran the intake
    prompt_version: str
    turn: int | None = None  # interaction: the bot message's place (0 = the greeting)


class IntakeAssessment(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one rubric version said about one intake."""

    model: str
    rubric_version: str
    prompt_version: str
    created_at: str
    status: str  # the intake's status when assessed
    assessments: list[Assessment]
    means: dict[str, float]  # kind -> mean score


class KindFigures(msgspec.Struct, frozen=True, kw_only=True):
    records: int
    mean_score: float | None
    error_share: float | None  # share of records in category ``error``


class QualityGroup(msgspec.Struct, frozen=True, kw_only=True):
    """The averages of one (rubric version, model, prompt version): a regression shows as a new row."""

    rubric_version: str
    model: str
    prompt_version: str
    intakes: int
    kinds: dict[str, KindFigures]
    errors: dict[str, int]  # error key -> records with it


def judge(
    record: IntakeRecord, course: Course, model: str, prompt_version: str, now: dt.datetime | None = None
) -> IntakeAssessment:
    """The rubric's judgements of a finished intake as assessment records (pure: no I/O)."""
    summary = msgspec.to_builtins(record.summary) if record.summary is not None else None
    messages = [m for m in record.interview.messages if not getattr(m, "to_staff", False)]
    judgements = assess_intake(course, messages, record.status, summary, notes=record.booking.notes)
    created = iso(now or now_utc())
    assessments = [_record(j, model, prompt_version, created) for j in judgements]
    return IntakeAssessment(
        model=model,
        rubric_version=RUBRIC_VERSION,
        prompt_version=prompt_version,
        created_at=created,
        status=record.status,
        assessments=assessments,
        means=_means(assessments),
    )


def _record(judgement: Judgement, model: str, prompt_version: str, created: str) -> Assessment:
    errors = [AssessmentError(key=f.key, message=f.message, severity=f.severity) for f in judgement.errors]
    serious = any(e.severity in ("major", "critical") for e in errors)
    return Assessment(
        kind=judgement.kind,
        category="error" if serious else "progress",
        score=judgement.score,
        explanation=judgement.explanation,
        errors=errors,
        rubric_version=RUBRIC_VERSION,
        created_at=created,
        model=model,
        prompt_version=prompt_version,
        turn=judgement.turn,
    )


def _means(assessments: Sequence[Assessment]) -> dict[str, float]:
    scores: dict[str, list[float]] = defaultdict(list)
    for a in assessments:
        scores[a.kind].append(a.score)
    return {kind: round(sum(v) / len(v), 3) for kind, v in scores.items()}


def prompt_version_of(calls: Sequence[CallRecord]) -> str:
    """The prompt version most of the intake's calls used (the running code's when it made none)."""
    versions = Counter(c.prompt_version for c in calls if c.purpose != "readiness_probe")
    return versions.most_common(1)[0][0] if versions else PROMPT_VERSION


class AssessmentStore:
    """The intakes' assessments and the averages per rubric version, model and prompt version."""

    def __init__(self, redis: aioredis.Redis, retention_days: int) -> None:
        self._redis = redis
        self._keep_s = max(1, retention_days) * 24 * 3600
        self._save = redis.register_script(_SAVE)

    async def save(self, token: str, result: IntakeAssessment, course: str = "") -> bool:
        """Store the intake's assessments and count them (globally and for ``course``, the intake's slug);
        False if this rubric version already has them."""
        group = _SEP.join(_clean(x) for x in (result.rubric_version, result.model, result.prompt_version))
        increments: list[Any] = [f"{group}{_SEP}intakes", 1]
        for a in result.assessments:
            increments += [f"{group}{_SEP}{a.kind}{_SEP}n", 1, f"{group}{_SEP}{a.kind}{_SEP}sum", a.score]
            if a.category == "error":
                increments += [f"{group}{_SEP}{a.kind}{_SEP}errors", 1]
            for key in {e.key for e in a.errors}:
                increments += [f"{group}{_SEP}key{_SEP}{_clean(key)}", 1]
        args = [
            result.rubric_version,
            msgspec.json.encode(result),
            self._keep_s,
            AGGREGATE_KEEP_DAYS * 86400,
            *increments,
        ]
        keys = [_BY_INTAKE.format(token), AGGREGATES]
        if course:
            keys.append(_COURSE_AGGREGATES.format(_clean(course)))
        saved = await self._save(keys=keys, args=args)
        return bool(saved)

    async def for_intake(self, token: str) -> list[IntakeAssessment]:
        """Every rubric version's assessment of the intake, newest version first."""
        raw = await self._redis.hgetall(_BY_INTAKE.format(token))
        found = [msgspec.json.decode(v, type=IntakeAssessment) for v in raw.values()]
        return sorted(found, key=lambda a: a.created_at, reverse=True)

    async def delete(self, token: str) -> None:
        await self._redis.delete(_BY_INTAKE.format(token))

    async def averages(self, courses: Sequence[str] | None = None) -> list[QualityGroup]:
        """The averages over every intake (``courses`` None), or over the intakes of ``courses`` (slugs)."""
        if courses is None:
            keys = [AGGREGATES]
        else:
            keys = [_COURSE_AGGREGATES.format(_clean(c)) for c in sorted(set(courses))]
        counters: dict[str, float] = defaultdict(float)
        for key in keys:
            for k, v in (await self._redis.hgetall(key)).items():
                counters[k.decode() if isinstance(k, bytes) else k] += float(v)
        return averages_from(counters)


def averages_from(counters: dict[str, float]) -> list[QualityGroup]:
    """The aggregate hash's counters as one row per (rubric version, model, prompt version)."""
    groups: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)
    for field, value in counters.items():
        rubric, model, prompt, rest = field.split(_SEP, 3)
        groups[(rubric, model, prompt)][rest] = value
    rows = []
    for (rubric, model, prompt), c in sorted(groups.items()):
        kinds: dict[str, KindFigures] = {}
        for kind in KINDS:
            n = int(c.get(f"{kind}{_SEP}n", 0))
            kinds[kind] = KindFigures(
                records=n,
                mean_score=round(c.get(f"{kind}{_SEP}sum", 0.0) / n, 3) if n else None,
                error_share=round(c.get(f"{kind}{_SEP}errors", 0.0) / n, 3) if n else None,
            )
        errors = {k.split(_SEP, 1)[1]: int(v) for k, v in c.items() if k.startswith(f"key{_SEP}")}
        rows.append(
            QualityGroup(
                rubric_version=rubric,
                model=model,
                prompt_version=prompt,
                intakes=int(c.get("intakes", 0)),
                kinds=kinds,
                errors=dict(sorted(errors.items())),
            )
        )
    return rows


def _clean(label: str) -> str:
    return label.replace(_SEP, "/")[:80] or "unknown"
