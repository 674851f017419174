"""Checkpoint evaluations as rows: finding or creating the cached one, and running it in the worker."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from grader.db.models import CheckpointEvaluation, Submission, as_utc, utcnow
from grader.domain.status import EvaluationStatus
from grader.errors import InvalidAnswer
from grader.services.submissions import CHECKPOINT_FIELDS
from grader.settings import Settings
from grader.storage import ArtifactStore


@dataclass
class EvaluationPlan:
    results: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    """Final evaluation results by label, ready for the rubric engine."""
    pending: dict[str, CheckpointEvaluation] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return not self.pending


def plan_evaluations(
    session: Session, *, submission: Submission, sheet: Mapping[str, Any], since: datetime
) -> EvaluationPlan:
    """For each uploaded checkpoint, the cached evaluation or a new pending one.

    An `error` row older than `since` (the job's start) is retried: an infrastructure failure is not cached.
    """
    plan = EvaluationPlan()
    uploads = [upload for upload in submission.files if upload.field in CHECKPOINT_FIELDS]
    if not uploads:
        return plan
    # Imported here so that grading answer sheets without checkpoints never loads the evaluator.
    from grader.evaluation import EVALUATOR_VERSION, evaluation_cache_key, read_preprocessing

    for upload in uploads:
        try:
            preprocessing = read_preprocessing(sheet, upload.field)
        except InvalidAnswer:
            continue  # scored as `invalid` by the Q1 checkers
        key = evaluation_cache_key(upload.artifact_sha256, preprocessing)
        row = _find_or_create(session, key, upload.artifact_sha256, upload.field, preprocessing, EVALUATOR_VERSION)
        status = EvaluationStatus(row.status)
        if status is EvaluationStatus.ERROR and (row.finished_at is None or as_utc(row.finished_at) < as_utc(since)):
            row.status, row.attempts, row.detail = str(EvaluationStatus.PENDING), 0, ""
            status = EvaluationStatus.PENDING
        if status.is_final:
            plan.results[upload.field] = row.result or {"status": "error", "message": row.detail}
        else:
            plan.pending[upload.field] = row
    session.flush()
    return plan


def _find_or_create(
    session: Session, key: str, sha256: str, label: str, preprocessing: Mapping[str, Any], version: str
) -> CheckpointEvaluation:
    row = session.scalar(select(CheckpointEvaluation).where(CheckpointEvaluation.cache_key == key))
    if row is not None:
        return row
    row = CheckpointEvaluation(
        cache_key=key,
        artifact_sha256=sha256,
        label=label,
        preprocessing=dict(preprocessing),
        evaluator_version=version,
        status=str(EvaluationStatus.PENDING),
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # another job created it first
        row = session.scalars(select(CheckpointEvaluation).where(CheckpointEvaluation.cache_key == key)).one()
    return row


def run_evaluation(session: Session, *, evaluation_id: str, settings: Settings, max_attempts: int) -> bool:
    """Evaluate one checkpoint unless already done; True when the row is final afterwards."""
    from grader.evaluation import evaluate_checkpoint

    row = session.get(CheckpointEvaluation, evaluation_id)
    if row is None or EvaluationStatus(row.status).is_final:
        return True
    row.attempts += 1
    if row.attempts > max_attempts:
        return finish_evaluation_with_error(session, row=row, message=f"gave up after {max_attempts} attempts")
    row.status, row.started_at, row.worker = str(EvaluationStatus.RUNNING), utcnow(), socket.gethostname()
    session.commit()
    path = ArtifactStore(settings.resolved_storage_dir).path_for(row.artifact_sha256)
    result = evaluate_checkpoint(
        path, label=row.label, preprocessing=row.preprocessing, cifar10_root=settings.cifar10_root
    )
    row.result = result
    row.status = str(EvaluationStatus.EVALUATED if result.get("status") == "evaluated" else EvaluationStatus.REJECTED)
    row.finished_at = utcnow()
    session.commit()
    return True


def finish_evaluation_with_error(session: Session, *, row: CheckpointEvaluation, message: str) -> bool:
    row.status = str(EvaluationStatus.ERROR)
    row.detail = message
    row.result = {"status": "error", "message": message}
    row.finished_at = utcnow()
    session.commit()
    return True


def evaluation_by_id(session: Session, evaluation_id: str) -> CheckpointEvaluation | None:
    return session.get(CheckpointEvaluation, evaluation_id)


def note_problem(session: Session, *, evaluation_id: str, detail: str) -> None:
    row = session.get(CheckpointEvaluation, evaluation_id)
    if row is not None and not EvaluationStatus(row.status).is_final:
        row.detail = f"retrying after a grader problem: {detail}"
        session.commit()
