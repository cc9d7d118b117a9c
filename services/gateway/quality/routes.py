"""Staff read-outs of intake quality: one intake's assessments and model calls, and the comparison of models.

- ``GET /staff/api/intakes/{staff_id}/assessments`` — the intake's assessment records (latest rubric
  version; earlier versions' means) and its model calls (counts and timings, never the prompt).
- ``GET /staff/api/quality?days=<1-90>&course=<slug>`` — the averages per rubric version, model and
  prompt version, the model-call figures (tokens and calls per day, latency percentiles per purpose) and
  the models side by side.
- ``GET /staff/quality`` — the same as a page (server-rendered tables, readable on a phone).

The comparison covers only the courses the staff member staffs (all of them added up, or the one
``course`` names; a course they do not staff is a 404 like one that does not exist); the operator's covers
every call and intake, calls outside an intake (readiness probes) included. An intake's read-out follows
the intake's course like every ``{staff_id}`` route. Neither ever shows the student's token.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Annotated

import msgspec
from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.params import FromPath, QueryParameter

from finetune.rubric import RUBRIC_VERSION
from services.gateway.container import Services
from services.gateway.errors import NotFound, Unauthorized, problems
from services.gateway.intake.models import IntakeRecord
from services.gateway.quality.assess import KINDS, Assessment, QualityGroup
from services.gateway.quality.calls import CallRecord, CallsReport, LatencyFigures
from services.gateway.staff import auth
from services.gateway.staff.accounts import StaffPrincipal
from services.gateway.staff.login import PAGE_HEADERS  # one set of headers for every staff page

_API = {**problems(Unauthorized), **problems(NotFound)}
_HEADERS = {"Cache-Control": "no-store"}
Days = Annotated[int, QueryParameter(name="days", ge=1, le=90, description="the window, in days up to today")]
CourseSlug = Annotated[
    str | None, QueryParameter(name="course", max_length=64, description="one of the caller's courses")
]


class CallView(msgspec.Struct, frozen=True, kw_only=True):
    """A model call as staff see it (the intake is the one in the path)."""

    id: str
    request_id: str
    purpose: str
    model: str
    prompt_version: str
    prompt_tokens: int | None
    completion_tokens: int
    cached_tokens: int | None
    first_token_s: float | None
    total_s: float
    status: str
    created_at: str


class EarlierAssessment(msgspec.Struct, frozen=True, kw_only=True):
    rubric_version: str
    created_at: str
    means: dict[str, float]


class IntakeQuality(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /staff/api/intakes/{staff_id}/assessments``."""

    staff_id: str
    model: str  # the model that runs (ran) the intake
    rubric_version: str | None  # None: not assessed yet (it is, once the final summary is kept)
    prompt_version: str | None
    assessed_at: str | None
    means: dict[str, float]  # kind -> mean score of the records below
    assessments: list[Assessment]
    earlier: list[EarlierAssessment]  # other rubric versions' verdicts on the same intake
    calls: list[CallView]


class ModelSide(msgspec.Struct, frozen=True, kw_only=True):
    """One model's figures for the side-by-side comparison (the current rubric version only)."""

    model: str
    intakes: int  # assessed
    scores: dict[str, float | None]  # kind -> mean score
    error_shares: dict[str, float | None]  # kind -> share of records in category error
    calls: int
    failed_calls: int
    prompt_tokens: int
    completion_tokens: int
    cached_share: float | None
    question_first_token_p95_s: float | None
    summary_total_p95_s: float | None


class QualityReport(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /staff/api/quality``."""

    rubric_version: str  # the running rubric's version (the comparison uses it)
    courses: list[str] | None  # the course slugs the figures cover; None: every call (the operator's view)
    models: list[ModelSide]
    assessments: list[QualityGroup]  # every (rubric version, model, prompt version) ever assessed
    calls: CallsReport


@get("/staff/api/intakes/{staff_id:str}/assessments", guards=[auth.staff_guard], responses=_API)
async def intake_assessments(
    staff_id: FromPath[str], request: Request, services: NamedDependency[Services]
) -> Response[IntakeQuality]:
    """The intake's assessment records and model calls."""
    found = auth.provide_staff_intake(request)
    return Response(
        await intake_quality(services, found.staff_id, found.token, found.record), headers=_HEADERS
    )


@get("/staff/api/quality", guards=[auth.staff_guard], responses=_API)
async def quality(
    services: NamedDependency[Services], principal: StaffPrincipal, days: Days = 7, course: CourseSlug = None
) -> Response[QualityReport]:
    """Averages per rubric version, model and prompt version; model calls per day and purpose; the models
    side by side: of the caller's own courses (or the one ``course`` names)."""
    report = await quality_report(services, days, scope(services, principal, course))
    return Response(report, headers=_HEADERS)


@get("/staff/quality", guards=[auth.staff_guard], media_type=MediaType.HTML, include_in_schema=False)
async def quality_page(
    services: NamedDependency[Services], principal: StaffPrincipal, days: Days = 7, course: CourseSlug = None
) -> Response[bytes]:
    report = await quality_report(services, days, scope(services, principal, course))
    mine = [slug for slug in sorted(services.catalog.courses) if principal.can_see(slug)]
    page = render_page(report, days, mine)
    return Response(page.encode(), media_type=MediaType.HTML, headers=PAGE_HEADERS)


def scope(services: Services, principal: StaffPrincipal, course: str | None) -> list[str] | None:
    """The course slugs a read-out covers: the one asked for (if the caller staffs it), else every course
    the caller staffs; None for the operator without a ``course``: everything."""
    if course is not None:
        if course not in services.catalog.courses or not principal.can_see(course):
            raise NotFound("No such course.")
        return [course]
    if principal.is_operator:
        return None
    return sorted(principal.courses)


# --- building the answers ---------------------------------------------------------------------------


async def intake_quality(
    services: Services, staff_id: str, token: str, record: IntakeRecord
) -> IntakeQuality:
    verdicts = await services.assessments.for_intake(token)
    calls = await services.calls.for_intake(token)
    latest = next(
        (v for v in verdicts if v.rubric_version == RUBRIC_VERSION), verdicts[0] if verdicts else None
    )
    return IntakeQuality(
        staff_id=staff_id,
        model=latest.model if latest else services.model_id_of(record),
        rubric_version=latest.rubric_version if latest else None,
        prompt_version=latest.prompt_version if latest else None,
        assessed_at=latest.created_at if latest else None,
        means=latest.means if latest else {},
        assessments=latest.assessments if latest else [],
        earlier=[
            EarlierAssessment(rubric_version=v.rubric_version, created_at=v.created_at, means=v.means)
            for v in verdicts
            if v is not latest
        ],
        calls=[_view(c) for c in calls],
    )


def _view(call: CallRecord) -> CallView:
    fields = {f: getattr(call, f) for f in CallView.__struct_fields__}
    return CallView(**fields)


async def quality_report(services: Services, days: int, courses: list[str] | None = None) -> QualityReport:
    """The figures of ``courses`` (slugs) added up; None: of every call and intake."""
    groups = await services.assessments.averages(courses)
    calls = await services.calls.report(days, courses=courses)
    return QualityReport(
        rubric_version=RUBRIC_VERSION,
        courses=courses,
        models=side_by_side(groups, calls),
        assessments=groups,
        calls=calls,
    )


def side_by_side(groups: Sequence[QualityGroup], calls: CallsReport) -> list[ModelSide]:
    """Every model with assessments (current rubric) or calls in the window, figures folded over prompts."""
    current = [g for g in groups if g.rubric_version == RUBRIC_VERSION]
    called = {m.model: m for m in calls.models}
    models = sorted({g.model for g in current} | set(called))
    sides = []
    for model in models:
        mine = [g for g in current if g.model == model]
        usage = called.get(model)
        sides.append(
            ModelSide(
                model=model,
                intakes=sum(g.intakes for g in mine),
                scores={k: _weighted(mine, k, "mean_score") for k in KINDS},
                error_shares={k: _weighted(mine, k, "error_share") for k in KINDS},
                calls=usage.calls if usage else 0,
                failed_calls=usage.failed if usage else 0,
                prompt_tokens=usage.prompt_tokens if usage else 0,
                completion_tokens=usage.completion_tokens if usage else 0,
                cached_share=usage.cached_share if usage else None,
                question_first_token_p95_s=_p95(calls.latency, model, "interview_question", "first"),
                summary_total_p95_s=_p95(calls.latency, model, "summary_draft", "total"),
            )
        )
    return sides


def _weighted(groups: Iterable[QualityGroup], kind: str, field: str) -> float | None:
    total, records = 0.0, 0
    for g in groups:
        figures = g.kinds.get(kind)
        value = getattr(figures, field) if figures else None
        if figures and value is not None:
            total, records = total + value * figures.records, records + figures.records
    return round(total / records, 3) if records else None


def _p95(rows: Sequence[LatencyFigures], model: str, purpose: str, kind: str) -> float | None:
    row = next((r for r in rows if r.model == model and r.purpose == purpose), None)
    if row is None:
        return None
    return row.first_token_p95_s if kind == "first" else row.total_p95_s


# --- the page ---------------------------------------------------------------------------------------


def render_page(report: QualityReport, days: int, courses: Sequence[str] = ()) -> str:
    """Tables only (no script): the comparison, the averages per version, calls per day and latency;
    ``courses`` are the caller's own, offered as links to one course's figures."""
    covered = "every course" if report.courses is None else ", ".join(report.courses)
    picks = " · ".join(
        f"<a href='/staff/quality?course={_e(slug)}&amp;days={days}'>{_e(slug)}</a>" for slug in courses
    )
    body = [
        f"<h1>Intake quality</h1><p class='muted'>Rubric {_e(report.rubric_version)}; model calls over the "
        f"last {days} day(s), {_e(report.calls.since)} to {_e(report.calls.until)} (UTC).</p>",
        f"<p class='muted'>Courses: {_e(covered)}.{' One course: ' + picks if len(courses) > 1 else ''}</p>",
        _table(
            "Models side by side",
            [
                "Model",
                "Intakes",
                "Turn score",
                "Conversation",
                "Summary",
                "Calls",
                "Failed",
                "Tokens in/out",
                "Cached",
                "Question p95 first token",
                "Summary p95",
            ],
            [
                [
                    m.model,
                    m.intakes,
                    *(_num(m.scores[k]) for k in KINDS),
                    m.calls,
                    m.failed_calls,
                    f"{m.prompt_tokens}/{m.completion_tokens}",
                    _pct(m.cached_share),
                    _secs(m.question_first_token_p95_s),
                    _secs(m.summary_total_p95_s),
                ]
                for m in report.models
            ],
        ),
        _table(
            "Averages per rubric version, model and prompt version",
            ["Rubric", "Model", "Prompt", "Intakes", "Turn score", "Conversation", "Summary", "Errors"],
            [
                [
                    g.rubric_version,
                    g.model,
                    g.prompt_version,
                    g.intakes,
                    *(_num(g.kinds[k].mean_score) for k in KINDS),
                    ", ".join(f"{k} {n}" for k, n in g.errors.items()) or "none",
                ]
                for g in report.assessments
            ],
        ),
        _table(
            "Model calls per day",
            ["Day", "Model", "Purpose", "Calls", "Failed", "Prompt tokens", "Completion tokens", "Cached"],
            [
                [
                    d.day,
                    d.model,
                    d.purpose,
                    d.calls,
                    d.failed,
                    d.prompt_tokens,
                    d.completion_tokens,
                    d.cached_tokens,
                ]
                for d in report.calls.days
            ],
        ),
        _table(
            "Latency by purpose",
            ["Model", "Purpose", "Calls", "First token p50", "First token p95", "Total p50", "Total p95"],
            [
                [
                    r.model,
                    r.purpose,
                    r.calls,
                    _secs(r.first_token_p50_s),
                    _secs(r.first_token_p95_s),
                    _secs(r.total_p50_s),
                    _secs(r.total_p95_s),
                ]
                for r in report.calls.latency
            ],
        ),
    ]
    return _PAGE.replace("{{body}}", "\n".join(body))


def _table(title: str, head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    if not rows:
        return f"<section class='card'><h2>{_e(title)}</h2><p class='muted'>Nothing yet.</p></section>"
    header = "".join(f"<th scope='col'>{_e(h)}</th>" for h in head)
    lines = "".join("<tr>" + "".join(f"<td>{_e(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return (
        f"<section class='card'><h2>{_e(title)}</h2><div class='quality-table'><table>"
        f"<thead><tr>{header}</tr></thead><tbody>{lines}</tbody></table></div></section>"
    )


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _secs(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} s"


_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="referrer" content="no-referrer">
  <meta name="robots" content="noindex, nofollow">
  <title>Quality · Office hours intake</title>
  <link rel="stylesheet" href="/static/chat.css">
  <link rel="stylesheet" href="/static/staff/staff.css">
  <link rel="stylesheet" href="/static/staff/quality.css">
</head>
<body data-page="quality">
  <header class="bar">
    <div class="bar-inner staff-bar">
      <p class="course"><a href="/staff/intakes">← All intakes</a></p>
    </div>
  </header>
  <main class="page staff-page">
{{body}}
  </main>
</body>
</html>
"""

ROUTES = [intake_assessments, quality, quality_page]
