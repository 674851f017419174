"""The grading core shared by `grader grade` and the worker: sheet + checkpoint evaluations -> report."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader.answers.sheet import parse_answer_sheet
from grader.answers.validate import require_valid_sheet
from grader.domain.results import GradeReport
from grader.errors import InputError, InvalidAnswer
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
    """Evaluate each checkpoint as the `gpu` worker task would, each in a sandboxed child (for `grader grade`):
    the same requests (grader.evaluation.request) from the files given instead of stored ones.

    A checkpoint with code (`code[label]`: a folder or a zip of the student's .py files) runs in student-code
    mode, in the sandbox; the others in reference mode. With code, the Q1 code checks run too (as `code`).
    """
    from grader.evaluation.request import checkpoint_request, code_checks_request, run_request
    from grader.evaluation.safety import require_safe_torch
    from grader.evaluation.student.code_checks_spec import EVALUATION_LABEL

    if checkpoints:
        require_safe_torch()
    files = LocalFiles()
    code_ids = {label: files.add_code(path, field=f"{label}_code") for label, path in (code or {}).items()}
    if code_ids and rubric_path is None:
        raise InputError("student code needs the assignment's rubric (its model_interface)", field="--code")
    requests = {}
    results: dict[str, dict[str, Any]] = {}
    for label, path in checkpoints.items():
        try:
            requests[label] = checkpoint_request(
                label, sheet, files.add_file(path), code_sha256=code_ids.get(label), rubric=rubric_path
            )
        except InvalidAnswer as exc:  # the sheet does not say how to run it, as in the service
            results[label] = {"status": "rejected", "message": exc.message}
    if code_ids:
        label = min(code_ids)  # v1 before v2, as the service prefers v1_code
        assert rubric_path is not None  # refused above otherwise
        checks = code_checks_request(f"{label}_code", code_ids[label], rubric=rubric_path)
        if checks is not None:
            requests[EVALUATION_LABEL] = checks
    for label, request in requests.items():
        results[label] = run_request(request, files, cifar10_root=cifar10_root, limits=limits).to_json()
    return results


class LocalFiles:
    """The files given on the command line, by sha256, as a request reads them (grader.evaluation.request)."""

    def __init__(self) -> None:
        self._paths: dict[str, Path] = {}
        self._bytes: dict[str, bytes] = {}

    def add_file(self, path: Path) -> str:
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        self._paths[sha256] = path
        return sha256

    def add_code(self, path: Path, *, field: str) -> str:
        """A code folder or zip, normalised as the service stores a code upload (same code, same key)."""
        from grader.sandbox.archive import normalise_code_upload, read_code_dir

        files = read_code_dir(path, field=field) if path.is_dir() else [(path.name, path.read_bytes())]
        upload = normalise_code_upload(files, field=field)
        sha256 = hashlib.sha256(upload).hexdigest()
        self._bytes[sha256] = upload
        return sha256

    def path_for(self, sha256: str) -> Path:
        return self._paths[sha256]

    def read_bytes(self, sha256: str) -> bytes:
        return self._bytes[sha256] if sha256 in self._bytes else self._paths[sha256].read_bytes()


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
