"""Checkpoint evaluations as rows: finding or creating the cached one, and running it in the worker."""

from __future__ import annotations

import socket
import tempfile
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
from grader.errors import InfrastructureError, InvalidAnswer
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


@dataclass(frozen=True, slots=True)
class EvaluationRequest:
    """What one checkpoint's evaluation is keyed and run by, in either mode."""

    label: str
    checkpoint_sha256: str
    cache_key: str
    preprocessing: dict[str, Any]
    mode: str = "reference"
    code_sha256: str | None = None
    config: dict[str, Any] | None = None


def plan_evaluations(
    session: Session,
    *,
    submission: Submission,
    sheet: Mapping[str, Any],
    since: datetime,
    settings: Settings,
) -> EvaluationPlan:
    """For each uploaded checkpoint, the cached evaluation or a new pending one.

    With the student's code uploaded next to a checkpoint, it is evaluated in student-code mode (sandboxed);
    otherwise in reference mode. An `error` row older than `since` (the job's start) is retried: an
    infrastructure failure is not cached.
    """
    plan = EvaluationPlan()
    files = {upload.field: upload.artifact_sha256 for upload in submission.files}
    for label in (name for name in CHECKPOINT_FIELDS if name in files):
        try:
            request = _request(label, files, sheet, submission.assignment_id, settings)
        except InvalidAnswer as exc:
            # The sheet does not say how to run it: a result for the checkers, nothing to evaluate.
            plan.results[label] = {"status": "rejected", "message": exc.message}
            continue
        row = _find_or_create(session, request)
        status = EvaluationStatus(row.status)
        if status is EvaluationStatus.ERROR and (row.finished_at is None or as_utc(row.finished_at) < as_utc(since)):
            row.status, row.attempts, row.detail = str(EvaluationStatus.PENDING), 0, ""
            status = EvaluationStatus.PENDING
        if status.is_final:
            plan.results[label] = row.result or {"status": "error", "message": row.detail}
        else:
            plan.pending[label] = row
    session.flush()
    return plan


def _request(
    label: str, files: Mapping[str, str], sheet: Mapping[str, Any], assignment_id: str, settings: Settings
) -> EvaluationRequest:
    # Imported here so that grading answer sheets without checkpoints never loads the evaluator.
    from grader.evaluation import evaluation_cache_key, evaluation_preprocessing

    # Evaluated even when the declaration cannot be used: the architecture part needs only the weights.
    preprocessing = evaluation_preprocessing(sheet, label)
    checkpoint = files[label]
    code = files.get(f"{label}_code")
    if code is None:
        return EvaluationRequest(label, checkpoint, evaluation_cache_key(checkpoint, preprocessing), preprocessing)
    from grader.sandbox import read_model_interface, read_network_config, student_code_cache_key

    interface = read_model_interface(settings.rubrics_dir / f"{assignment_id}.yaml")
    if interface is None:
        raise InvalidAnswer(f"this assignment does not run student code; upload {label} without {label}_code")
    arguments = interface.arguments(label, read_network_config(sheet, label, interface))
    key = student_code_cache_key(
        code_sha256=code, checkpoint_sha256=checkpoint, label=label, arguments=arguments, interface=interface
    )
    config = {"arguments": arguments, "interface": interface.to_json()}
    return EvaluationRequest(label, checkpoint, key, preprocessing, "student_code", code, config)


def _find_or_create(session: Session, request: EvaluationRequest) -> CheckpointEvaluation:
    from grader.evaluation import EVALUATOR_VERSION

    query = select(CheckpointEvaluation).where(CheckpointEvaluation.cache_key == request.cache_key)
    row = session.scalar(query)
    if row is not None:
        return row
    row = CheckpointEvaluation(
        cache_key=request.cache_key,
        artifact_sha256=request.checkpoint_sha256,
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


def run_evaluation(session: Session, *, evaluation_id: str, settings: Settings, max_attempts: int) -> bool:
    """Evaluate one checkpoint unless already done; True when the row is final afterwards."""
    from grader.evaluation import evaluate_checkpoint
    from grader.sandbox import SandboxLimits

    row = session.get(CheckpointEvaluation, evaluation_id)
    if row is None or EvaluationStatus(row.status).is_final:
        return True
    row.attempts += 1
    if row.attempts > max_attempts:
        return finish_evaluation_with_error(session, row=row, message=f"gave up after {max_attempts} attempts")
    row.status, row.started_at, row.worker = str(EvaluationStatus.RUNNING), utcnow(), socket.gethostname()
    session.commit()
    store = ArtifactStore(settings.resolved_storage_dir)
    path = store.path_for(row.artifact_sha256)
    if row.mode == "student_code":
        result = _evaluate_student_code(row, store, path, settings)
    else:
        result = evaluate_checkpoint(
            path,
            label=row.label,
            preprocessing=row.preprocessing,
            cifar10_root=settings.cifar10_root,
            limits=SandboxLimits.from_settings(settings),
        )
    row.result = result
    row.status = str(EvaluationStatus.EVALUATED if result.get("status") == "evaluated" else EvaluationStatus.REJECTED)
    row.finished_at = utcnow()
    session.commit()
    return True


def _evaluate_student_code(
    row: CheckpointEvaluation, store: ArtifactStore, checkpoint: Path, settings: Settings
) -> dict[str, Any]:
    from grader.sandbox import SandboxLimits, evaluate_student_code, materialise_code
    from grader.sandbox.interface import parse_model_interface

    if row.code_sha256 is None or row.config is None:
        raise InfrastructureError(f"evaluation {row.id} is in student-code mode but has no code or config")
    if settings.cifar10_root is None:
        raise InfrastructureError("GRADER_CIFAR10_ROOT is not set: the folder holding cifar-10-batches-py/")
    with tempfile.TemporaryDirectory(prefix="grader-code-") as folder:
        code = materialise_code(store.read_bytes(row.code_sha256), Path(folder) / "code", field=f"{row.label}_code")
        return evaluate_student_code(
            code.directory,
            checkpoint,
            label=row.label,
            config=row.config["arguments"],
            interface=parse_model_interface(row.config["interface"]),
            cifar10_root=settings.cifar10_root,
            limits=SandboxLimits.from_settings(settings),
        )


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
