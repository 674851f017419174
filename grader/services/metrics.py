"""What `/metrics` reports from the database, computed when it is scraped.

Workers run in other processes (often on other machines) than the API that answers a scrape, so nothing here is
counted in memory: queue depths and live workers are the dashboard's `queue_snapshot`, jobs and evaluations are
counted by status, and how long work spent in each phase comes from the timestamps every job and evaluation
already stores, over those that finished in the last `WINDOW`. Every API process answers the same numbers, and a
restarted worker loses none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from grader.db.models import CheckpointEvaluation, GradingJob, as_utc, utcnow
from grader.domain.status import EvaluationStatus, JobStatus
from grader.services.stats import queue_snapshot
from grader.settings import Settings

WINDOW = timedelta(hours=1)
QUANTILES = (0.5, 0.9, 1.0)
"""Reported per phase; 1.0 is the slowest."""


@dataclass(frozen=True)
class PhaseDurations:
    """Seconds spent in one phase by the jobs (or evaluations) that finished within the window."""

    count: int
    quantiles: dict[float, float]


def database_metrics(session: Session, *, settings: Settings) -> dict[str, Any]:
    since = utcnow() - WINDOW
    return {
        "queue": queue_snapshot(session, settings=settings),
        "jobs": _count_by_status(session, GradingJob, [str(status) for status in JobStatus]),
        "evaluations": _count_by_status(session, CheckpointEvaluation, [str(status) for status in EvaluationStatus]),
        # Phases are named after the status the work was in: a job waits `received` (fair share, or a broker
        # outage) until it is queued, `queued` until a worker starts it, then `running` (evaluations included).
        "job_phases": _phase_durations(session, GradingJob, first_phase="received", since=since),
        "evaluation_phases": _phase_durations(session, CheckpointEvaluation, first_phase="pending", since=since),
    }


def _count_by_status(session: Session, model: Any, statuses: list[str]) -> dict[str, int]:
    counts = dict(session.execute(select(model.status, func.count()).group_by(model.status)).all())
    return {status: int(counts.get(status, 0)) for status in statuses}


def _phase_durations(session: Session, model: Any, *, first_phase: str, since: datetime) -> dict[str, PhaseDurations]:
    rows = session.execute(
        select(model.created_at, model.queued_at, model.started_at, model.finished_at).where(model.finished_at >= since)
    ).all()
    spans: dict[str, list[float]] = {first_phase: [], "queued": [], "running": [], "total": []}
    for created, queued, started, finished in rows:
        for phase, start, end in (
            (first_phase, created, queued),
            ("queued", queued, started),
            ("running", started, finished),
            ("total", created, finished),
        ):
            if start is not None and end is not None:
                spans[phase].append(max((as_utc(end) - as_utc(start)).total_seconds(), 0.0))
    return {phase: _summary(values) for phase, values in spans.items()}


def _summary(values: list[float]) -> PhaseDurations:
    ordered = sorted(values)
    # nearest rank: each quantile is a duration some job really took
    return PhaseDurations(
        count=len(ordered),
        quantiles={q: ordered[max(math.ceil(q * len(ordered)) - 1, 0)] for q in QUANTILES} if ordered else {},
    )
