"""The model-call log and the assessments as Prometheus metrics, read from Redis when ``/metrics`` is
scraped (the worker makes the summary calls and runs the assessments, and it is never scraped)."""

from __future__ import annotations

import structlog

from services.gateway import metrics
from services.gateway.quality.assess import AssessmentStore
from services.gateway.quality.calls import CallLog

log = structlog.get_logger()


async def refresh(calls: CallLog, assessments: AssessmentStore) -> None:
    try:
        totals = await calls.totals()
        today = await calls.report(days=1)
        averages = await assessments.averages()
    except Exception as exc:  # a scrape reports a Redis outage; it never fails because of one
        log.warning("metrics_quality_unavailable", error=type(exc).__name__)
        metrics.QUALITY.snapshot.redis_up = False
        return
    latency = []
    for row in today.latency:
        for kind, quantile, value in (
            ("first_token", "0.5", row.first_token_p50_s),
            ("first_token", "0.95", row.first_token_p95_s),
            ("total", "0.5", row.total_p50_s),
            ("total", "0.95", row.total_p95_s),
        ):
            if value is not None:
                latency.append((row.model, row.purpose, kind, quantile, value))
    scores, assessed = [], []
    for group in averages:  # prompt versions folded into their model (a gauge per prompt would pile up)
        assessed.append((group.rubric_version, group.model, group.intakes))
        for kind, figures in group.kinds.items():
            if figures.mean_score is not None:
                scores.append((group.rubric_version, group.model, kind, figures.mean_score, figures.records))
    metrics.QUALITY.snapshot = metrics.QualitySnapshot(
        calls=[(*key, count) for key, count in sorted(totals.calls.items())],
        tokens=[(*key, count) for key, count in sorted(totals.tokens.items())],
        latency=latency,
        scores=_weighted(scores),
        assessed=_summed(assessed),
    )


def _weighted(rows: list[tuple[str, str, str, float, int]]) -> list[tuple[str, str, str, float]]:
    """Mean scores of the prompt versions of one (rubric, model, kind), weighted by their records."""
    sums: dict[tuple[str, str, str], tuple[float, int]] = {}
    for rubric, model, kind, mean, n in rows:
        total, count = sums.get((rubric, model, kind), (0.0, 0))
        sums[(rubric, model, kind)] = (total + mean * n, count + n)
    return [(*key, round(total / count, 3)) for key, (total, count) in sorted(sums.items()) if count]


def _summed(rows: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    sums: dict[tuple[str, str], int] = {}
    for rubric, model, n in rows:
        sums[(rubric, model)] = sums.get((rubric, model), 0) + n
    return [(*key, n) for key, n in sorted(sums.items())]
