"""Checkpoint evaluations as rows: finding or creating the cached one, and running it in the worker."""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from grader.db.models import CheckpointEvaluation, Submission, as_utc, utcnow
from grader.domain.status import EvaluationStatus
from grader.errors import InvalidAnswer
from grader.evaluation.request import CODE_CHECKS, EvaluationRequest, checkpoint_request, code_checks_request
from grader.services import leases
from grader.services.submissions import CHECKPOINT_FIELDS
from grader.settings import Settings
from grader.storage import ArtifactStore

log = logging.getLogger(__name__)


@dataclass
class EvaluationPlan:
    results: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    """Final evaluation results by label, ready for the rubric engine."""
    pending: dict[str, CheckpointEvaluation] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return not self.pending


def plan_evaluations(
    session: Session,
    *,
    submission: Submission,
    sheet: Mapping[str, Any],
    since: datetime,
    settings: Settings,
) -> EvaluationPlan:
    """For each uploaded checkpoint, the cached evaluation or a new pending one; and the code checks of the
    student's code (`code` in the plan) when code was uploaded.

    With the student's code uploaded next to a checkpoint, it is evaluated in student-code mode (sandboxed);
    otherwise in reference mode. An `error` row older than `since` (the job's start) is retried: an
    infrastructure failure is not cached.
    """
    plan = EvaluationPlan()
    files = {upload.field: upload.artifact_sha256 for upload in submission.files}
    for label in (name for name in CHECKPOINT_FIELDS if name in files):
        try:
            request = checkpoint_request(
                label, sheet, files[label], code_sha256=files.get(f"{label}_code"), rubric=_rubric(submission, settings)
            )
        except InvalidAnswer as exc:
            # The sheet does not say how to run it: a result for the checkers, nothing to evaluate.
            plan.results[label] = {"status": "rejected", "message": exc.message}
            continue
        _settle(plan, label, _find_or_create(session, request), since)
    _plan_code_checks(session, plan, files, _rubric(submission, settings), since)
    session.flush()
    return plan


def _rubric(submission: Submission, settings: Settings) -> Path:
    return settings.rubrics_dir / f"{submission.assignment_id}.yaml"


def _plan_code_checks(
    session: Session, plan: EvaluationPlan, files: Mapping[str, str], rubric: Path, since: datetime
) -> None:
    """The Q1 code checks of the submission's code, when the rubric declares them: one sandboxed run per code upload,
    cached by the code's hash and the rubric's `code_checks:` section, whether or not a checkpoint came with it.
    Their result joins the plan as `code`."""
    from grader.evaluation.student.code_checks_spec import CODE_FIELDS, EVALUATION_LABEL

    field = next((name for name in CODE_FIELDS if name in files), None)
    request = code_checks_request(field, files[field], rubric=rubric) if field is not None else None
    if request is not None:
        _settle(plan, EVALUATION_LABEL, _find_or_create(session, request), since)


def needs_gpu(row: CheckpointEvaluation) -> bool:
    """Whether the row runs a network over the test set (the `gpu` queue's work). The code checks run the student's
    functions on the grader's small inputs: CPU work, for the `cpu` queue, so they never hold a GPU worker and run
    beside the checkpoints' evaluations."""
    return row.mode != CODE_CHECKS


def _settle(plan: EvaluationPlan, label: str, row: CheckpointEvaluation, since: datetime) -> None:
    """A final row's result joins the plan; any other row is pending. An `error` older than `since` is retried."""
    status = EvaluationStatus(row.status)
    if status is EvaluationStatus.ERROR and (row.finished_at is None or as_utc(row.finished_at) < as_utc(since)):
        row.status, row.attempts, row.detail = str(EvaluationStatus.PENDING), 0, ""
        status = EvaluationStatus.PENDING
    if status.is_final:
        plan.results[label] = row.result or {"status": "error", "message": row.detail}
    else:
        plan.pending[label] = row


def _find_or_create(session: Session, request: EvaluationRequest) -> CheckpointEvaluation:
    from grader.evaluation import EVALUATOR_VERSION

    query = select(CheckpointEvaluation).where(CheckpointEvaluation.cache_key == request.cache_key)
    row = session.scalar(query)
    if row is not None:
        return row
    row = CheckpointEvaluation(
        cache_key=request.cache_key,
        artifact_sha256=request.artifact_sha256,
        label=request.label,
        preprocessing=request.preprocessing,
        evaluator_version=EVALUATOR_VERSION,
        mode=request.mode,
        code_sha256=request.code_sha256,
        config=request.config,
        status=str(EvaluationStatus.PENDING),
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # another job created it first
        row = session.scalars(query).one()
    return row


def run_evaluation(
    session: Session, *, evaluation_id: str, settings: Settings, max_attempts: int, worker: str | None = None
) -> bool:
    """Evaluate one checkpoint unless already done; True when the row is final afterwards.

    `worker`: the lease owner (the Celery node name). While another worker holds the evaluation under a live lease,
    this does nothing and returns False: that worker stores the result and wakes the waiting jobs."""
    from grader.evaluation.request import run_request
    from grader.sandbox import SandboxLimits

    row = session.get(CheckpointEvaluation, evaluation_id)
    if row is None or EvaluationStatus(row.status).is_final:
        return True
    owner = worker or leases.default_owner()
    if not leases.claim(session, CheckpointEvaluation, row.id, owner=owner, lease_s=settings.resolved_lease_s):
        log.info("evaluation %s is held by %s; this delivery does nothing", row.id, row.lease_owner)
        session.rollback()
        return EvaluationStatus(row.status).is_final
    row.attempts += 1
    if row.attempts > max_attempts:
        return finish_evaluation_with_error(session, row=row, message=f"gave up after {max_attempts} attempts")
    row.status, row.started_at, row.worker = str(EvaluationStatus.RUNNING), utcnow(), socket.gethostname()
    session.commit()
    request = EvaluationRequest(
        label=row.label,
        artifact_sha256=row.artifact_sha256,
        cache_key=row.cache_key,
        preprocessing=row.preprocessing,
        mode=row.mode,
        code_sha256=row.code_sha256,
        config=row.config,
    )
    store = ArtifactStore(settings.resolved_storage_dir)
    limits = SandboxLimits.from_settings(settings)
    result = run_request(request, store, cifar10_root=settings.cifar10_root, limits=limits).to_json()
    if not leases.still_held(session, CheckpointEvaluation, row.id, owner=owner):
        # Our lease lapsed (the database was out of reach for longer than a lease) and another worker took it over.
        session.rollback()
        log.warning("evaluation %s: lost its lease while running; the holder's result counts", row.id)
        return EvaluationStatus(row.status).is_final
    row.result = result
    done = result.get("status") in ("evaluated", "checked")  # checked: the code checks ran (whatever they found)
    row.status = str(EvaluationStatus.EVALUATED if done else EvaluationStatus.REJECTED)
    row.finished_at = utcnow()
    leases.release(row)
    session.commit()
    return True


def finish_evaluation_with_error(session: Session, *, row: CheckpointEvaluation, message: str) -> bool:
    row.status = str(EvaluationStatus.ERROR)
    row.detail = message
    row.result = {"status": "error", "message": message}
    row.finished_at = utcnow()
    leases.release(row)
    session.commit()
    return True


def evaluation_by_id(session: Session, evaluation_id: str) -> CheckpointEvaluation | None:
    return session.get(CheckpointEvaluation, evaluation_id)


def note_problem(session: Session, *, evaluation_id: str, detail: str) -> None:
    row = session.get(CheckpointEvaluation, evaluation_id)
    if row is not None and not EvaluationStatus(row.status).is_final:
        row.detail = f"retrying after a grader problem: {detail}"
        leases.release(row)  # the retry may be delivered to another worker
        session.commit()
