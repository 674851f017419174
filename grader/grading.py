"""The grading core shared by `grader grade` and the worker: sheet + checkpoint evaluations -> report."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader.answers.sheet import parse_answer_sheet
from grader.answers.validate import require_valid_sheet
from grader.domain.results import GradeReport
from grader.errors import InfrastructureError, InputError, InvalidAnswer
from grader.rubric.engine import grade_sheet
from grader.rubric.model import Rubric

if TYPE_CHECKING:
    from grader.sandbox import SandboxLimits


def evaluate_checkpoints_locally(
    sheet: Mapping[str, Any],
    checkpoints: Mapping[str, Path],
    *,
    cifar10_root: Path | None,
    code: Mapping[str, Path] | None = None,
    rubric_path: Path | None = None,
    limits: SandboxLimits,
) -> dict[str, dict[str, Any]]:
    """Evaluate each checkpoint as the `gpu` worker task would, each in a sandboxed child (for `grader grade`).

    A checkpoint with code (`code[label]`: a folder or a zip of the student's .py files) runs in student-code
    mode, in the sandbox; the others in reference mode. With code, the Q1 code checks run too (as `code`).
    """
    from grader.evaluation import evaluate_checkpoint, evaluation_preprocessing
    from grader.evaluation.safety import require_safe_torch

    if checkpoints:
        require_safe_torch()
    results: dict[str, dict[str, Any]] = {}
    for label, path in checkpoints.items():
        # Evaluated even when the declaration cannot be used: the architecture part needs only the weights.
        preprocessing = evaluation_preprocessing(sheet, label)
        if code and label in code:
            results[label] = _evaluate_code_locally(sheet, label, path, code[label], cifar10_root, rubric_path, limits)
        else:
            results[label] = evaluate_checkpoint(
                path, label=label, preprocessing=preprocessing, cifar10_root=cifar10_root, limits=limits
            )
    if code and rubric_path is not None:
        results.update(_code_checks_locally(code, rubric_path, limits))
    return results


def _code_checks_locally(
    code: Mapping[str, Path], rubric_path: Path, limits: SandboxLimits
) -> dict[str, dict[str, Any]]:
    """The Q1 code checks on the first code given (v1's, else v2's), as the worker runs them: {"code": result}."""
    from grader.sandbox import materialise_code
    from grader.sandbox.archive import read_code_dir
    from grader.sandbox.code_checks import run_code_checks
    from grader.sandbox.code_checks_spec import EVALUATION_LABEL, read_code_checks
    from grader.sandbox.leftovers import owned_prefix

    spec = read_code_checks(rubric_path)
    if spec is None:
        return {}
    label = min(code)  # v1 before v2, as the service prefers v1_code
    path, field = code[label], f"{label}_code"
    upload = read_code_dir(path, field=field) if path.is_dir() else path.read_bytes()
    with tempfile.TemporaryDirectory(prefix=owned_prefix("grader-code-")) as folder:
        materialised = materialise_code(upload, Path(folder) / "code", field=field)
        result = run_code_checks(materialised.directory, spec, limits=limits)
    return {EVALUATION_LABEL: {**result, "code_field": field}}


def _evaluate_code_locally(
    sheet: Mapping[str, Any],
    label: str,
    checkpoint: Path,
    code: Path,
    cifar10_root: Path | None,
    rubric_path: Path | None,
    limits: SandboxLimits,
) -> dict[str, Any]:
    from grader.sandbox import evaluate_student_code, materialise_code, read_model_interface, read_network_config
    from grader.sandbox.archive import read_code_dir
    from grader.sandbox.leftovers import owned_prefix

    interface = read_model_interface(rubric_path) if rubric_path is not None else None
    if interface is None:
        raise InputError("the rubric declares no model_interface, so student code cannot be run", field="--code")
    if cifar10_root is None:
        raise InfrastructureError("GRADER_CIFAR10_ROOT is not set: the folder holding cifar-10-batches-py/")
    try:
        config = read_network_config(sheet, label, interface)
        interface.arguments(label, config)
    except InvalidAnswer as exc:
        return {"status": "rejected", "message": exc.message, "mode": "student_code"}
    upload = read_code_dir(code, field=f"{label}_code") if code.is_dir() else code.read_bytes()
    with tempfile.TemporaryDirectory(prefix=owned_prefix("grader-code-")) as folder:
        materialised = materialise_code(upload, Path(folder) / "code", field=f"{label}_code")
        return evaluate_student_code(
            materialised.directory,
            checkpoint,
            label=label,
            config=config,
            interface=interface,
            cifar10_root=cifar10_root,
            limits=limits,
        )


def grade_answer_file(
    answers: Path,
    rubric: Rubric,
    *,
    checkpoints: Mapping[str, Path] | None = None,
    code: Mapping[str, Path] | None = None,
    rubric_path: Path | None = None,
    cifar10_root: Path | None = None,
    limits: SandboxLimits,
) -> GradeReport:
    sheet = parse_answer_sheet(answers.read_bytes(), filename=answers.name)
    require_valid_sheet(sheet, rubric)  # a misspelt key is an error, never a silent `missing`
    evaluations = evaluate_checkpoints_locally(
        sheet, checkpoints or {}, cifar10_root=cifar10_root, code=code, rubric_path=rubric_path, limits=limits
    )
    return grade_sheet(sheet, rubric, evaluations)
