"""One Q1 evaluation, from what is asked to what it found: the request is built once (the only place that chooses
reference mode, student-code mode or the code checks), by `grader grade` and the services alike, and run by one
path, `run_request`, whose result is the typed `EvaluationResult` the Q1 checks read.

Files are named by their sha256 and read through `Artifacts` (the service's content-addressed store, or the files
given on the command line), so a request is also what a stored evaluation row holds.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from grader.domain.evaluation import EvaluationResult
from grader.errors import InfrastructureError, InvalidAnswer
from grader.evaluation.cache_key import code_checks_cache_key, evaluation_cache_key, student_code_cache_key
from grader.evaluation.preprocessing import evaluation_preprocessing
from grader.sandbox.limits import SandboxLimits

REFERENCE, STUDENT_CODE, CODE_CHECKS = "reference", "student_code", "code_checks"


class Artifacts(Protocol):
    """Where a request's files are, by sha256."""

    def path_for(self, sha256: str) -> Path: ...

    def read_bytes(self, sha256: str) -> bytes: ...


@dataclass(frozen=True, slots=True)
class EvaluationRequest:
    """What one evaluation is keyed and run by."""

    label: str
    """The checkpoint's field (`v1`, `v2`), or for the code checks the code's field (`code`, `v1_code`...)."""
    artifact_sha256: str
    """The checkpoint, or for the code checks the code."""
    cache_key: str
    preprocessing: dict[str, Any]
    mode: str = REFERENCE
    code_sha256: str | None = None
    config: dict[str, Any] | None = None
    """Student-code mode: the factory's arguments and the rubric's model interface; code checks: their spec."""


def checkpoint_request(
    label: str, sheet: Mapping[str, Any], checkpoint_sha256: str, *, code_sha256: str | None, rubric: Path | None
) -> EvaluationRequest:
    """The evaluation of checkpoint `label`: in student-code mode when the student's code came with it, else on the
    grader's reference family. Raises InvalidAnswer when the sheet does not say how to run the student's code (or
    the assignment runs none): a result for the checkers, nothing to evaluate."""
    # Evaluated even when the declaration cannot be used: the architecture part needs only the weights.
    preprocessing = evaluation_preprocessing(sheet, label)
    if code_sha256 is None:
        key = evaluation_cache_key(checkpoint_sha256, preprocessing)
        return EvaluationRequest(label, checkpoint_sha256, key, preprocessing)
    from grader.evaluation.student import read_model_interface, read_network_config

    interface = read_model_interface(rubric) if rubric is not None else None
    if interface is None:
        raise InvalidAnswer(f"this assignment does not run student code; upload {label} without {label}_code")
    arguments = interface.arguments(label, read_network_config(sheet, label, interface))
    key = student_code_cache_key(
        code_sha256=code_sha256,
        checkpoint_sha256=checkpoint_sha256,
        label=label,
        arguments=arguments,
        interface=interface,
    )
    config = {"arguments": arguments, "interface": interface.to_json()}
    return EvaluationRequest(label, checkpoint_sha256, key, preprocessing, STUDENT_CODE, code_sha256, config)


def code_checks_request(field: str, code_sha256: str, *, rubric: Path) -> EvaluationRequest | None:
    """The Q1 code checks of the code uploaded as `field`, or None when the rubric declares none."""
    from grader.evaluation.student.code_checks_spec import read_code_checks

    spec = read_code_checks(rubric)
    if spec is None:
        return None
    key = code_checks_cache_key(code_sha256=code_sha256, spec=spec.to_json())
    return EvaluationRequest(field, code_sha256, key, {}, CODE_CHECKS, code_sha256, {"spec": spec.to_json()})


def run_request(
    request: EvaluationRequest, artifacts: Artifacts, *, cifar10_root: Path | None, limits: SandboxLimits
) -> EvaluationResult:
    """Run one request in the sandbox. Raises InfrastructureError when the grader could not (worth a retry)."""
    if request.mode == REFERENCE:
        from grader.evaluation import evaluate_checkpoint

        path = artifacts.path_for(request.artifact_sha256)
        result = evaluate_checkpoint(
            path, label=request.label, preprocessing=request.preprocessing, cifar10_root=cifar10_root, limits=limits
        )
    elif request.mode == STUDENT_CODE:
        result = _run_student_code(request, artifacts, cifar10_root, limits)
    elif request.mode == CODE_CHECKS:
        result = _run_code_checks(request, artifacts, limits)
    else:
        raise InfrastructureError(f"evaluation of {request.label}: unknown mode {request.mode!r}")
    return EvaluationResult.from_json(result)


def _run_student_code(
    request: EvaluationRequest, artifacts: Artifacts, cifar10_root: Path | None, limits: SandboxLimits
) -> dict[str, Any]:
    from grader.evaluation.student import evaluate_student_code
    from grader.evaluation.student.interface import parse_model_interface

    if request.code_sha256 is None or request.config is None:
        raise InfrastructureError(f"evaluation of {request.label} is in student-code mode but has no code or config")
    if cifar10_root is None:
        raise InfrastructureError("GRADER_CIFAR10_ROOT is not set: the folder holding cifar-10-batches-py/")
    with _materialised(artifacts.read_bytes(request.code_sha256), f"{request.label}_code") as code_dir:
        return evaluate_student_code(
            code_dir,
            artifacts.path_for(request.artifact_sha256),
            label=request.label,
            config=request.config["arguments"],
            interface=parse_model_interface(request.config["interface"]),
            cifar10_root=cifar10_root,
            limits=limits,
        )


def _run_code_checks(request: EvaluationRequest, artifacts: Artifacts, limits: SandboxLimits) -> dict[str, Any]:
    from grader.evaluation.student.code_checks import run_code_checks
    from grader.evaluation.student.code_checks_spec import parse_code_checks

    if request.code_sha256 is None or request.config is None:
        raise InfrastructureError(f"the code checks of {request.label} have no code or spec")
    with _materialised(artifacts.read_bytes(request.code_sha256), request.label) as code_dir:
        result = run_code_checks(code_dir, parse_code_checks(request.config["spec"]), limits=limits)
    return {**result, "code_field": request.label}


@contextlib.contextmanager
def _materialised(upload: bytes, field: str) -> Iterator[Path]:
    """The code upload (a normalised zip) unpacked into a fresh folder of .py files, removed afterwards."""
    from grader.sandbox import materialise_code
    from grader.sandbox.leftovers import owned_prefix

    with tempfile.TemporaryDirectory(prefix=owned_prefix("grader-code-")) as folder:
        yield materialise_code(upload, Path(folder) / "code", field=field).directory
