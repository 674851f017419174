"""The grading core shared by `grader grade` and the worker: sheet + checkpoint evaluations -> report."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from grader.answers.sheet import check_assignment, parse_answer_sheet
from grader.db.models import Submission
from grader.domain.results import GradeReport
from grader.errors import InvalidAnswer
from grader.rubric.engine import grade_sheet
from grader.rubric.model import Rubric
from grader.storage import ArtifactStore


def load_sheet_from_store(submission: Submission, store: ArtifactStore) -> dict[str, Any]:
    answers = next(file for file in submission.files if file.field == "answers")
    return parse_answer_sheet(store.read_bytes(answers.artifact_sha256), filename=answers.original_name)


def evaluate_checkpoints_locally(
    sheet: Mapping[str, Any], checkpoints: Mapping[str, Path], *, cifar10_root: Path | None
) -> dict[str, dict[str, Any]]:
    """Evaluate each checkpoint in this process, as the `gpu` worker task would (for `grader grade`)."""
    from grader.evaluation import evaluate_checkpoint, read_preprocessing
    from grader.evaluation.safety import require_safe_torch

    if checkpoints:
        require_safe_torch()
    results: dict[str, dict[str, Any]] = {}
    for label, path in checkpoints.items():
        try:
            preprocessing = read_preprocessing(sheet, label)
        except InvalidAnswer:
            continue  # the Q1 checkers report the malformed declaration as `invalid`
        results[label] = evaluate_checkpoint(path, label=label, preprocessing=preprocessing, cifar10_root=cifar10_root)
    return results


def grade_answer_file(
    answers: Path,
    rubric: Rubric,
    *,
    checkpoints: Mapping[str, Path] | None = None,
    cifar10_root: Path | None = None,
) -> GradeReport:
    sheet = parse_answer_sheet(answers.read_bytes(), filename=answers.name)
    check_assignment(sheet, rubric.assignment)
    evaluations = evaluate_checkpoints_locally(sheet, checkpoints or {}, cifar10_root=cifar10_root)
    return grade_sheet(sheet, rubric, evaluations)
