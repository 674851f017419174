"""Q1: evaluating ResNet checkpoints on the CIFAR-10 test set, on the grader's reference family or through the
student's own code (grader.evaluation.student), always in the sandbox (grader.sandbox, the mechanism).

The one way in for the services and `grader grade` is grader.evaluation.request: `checkpoint_request` /
`code_checks_request` build an `EvaluationRequest` (the only place that chooses the mode) and `run_request` runs
it, returning the typed `EvaluationResult` (grader.domain.evaluation) the Q1 checks read.

Public surface of this package (used by the request, the intake and the tests):
- `EVALUATOR_VERSION`: bump when a change could alter a result; part of the evaluation cache key.
- `read_preprocessing(sheet, label) -> dict`: the canonical preprocessing spec declared in the sheet at
  `q1.<label>_preprocessing` (DEFAULT_PREPROCESSING when absent); raises `grader.errors.InvalidAnswer` when
  it is malformed.
- `evaluation_preprocessing(sheet, label) -> dict`: the spec a checkpoint is evaluated with: the declared one, or
  DEFAULT_PREPROCESSING when the declaration is absent or cannot be used (a checkpoint is always evaluated, so its
  architecture is judged from the weights whatever the sheet declares).
- `evaluation_cache_key(checkpoint_sha256, preprocessing, label=None) -> str`: what callers cache results by.
- `evaluate_checkpoint(path, *, label, preprocessing, cifar10_root, device=None, limits) -> dict`: reference mode,
  JSON-ready: `{"status": "evaluated", ...evidence}`, `{"status": "rejected", "message": ...}` for a file that is
  not a usable checkpoint, or a sandbox limit's status; raises `grader.errors.InfrastructureError` when the
  data set is missing or the evaluation failed for a reason worth a retry. The file is loaded and run in a
  sandboxed child process (reference_mode.py, child.py), never in the caller's process.

Importing this package does not import torch: the evaluator is loaded on the first `evaluate_checkpoint`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader.evaluation.cache_key import EVALUATOR_VERSION, evaluation_cache_key
from grader.evaluation.preprocessing import (
    DEFAULT_PREPROCESSING,
    describe_preprocessing,
    evaluation_preprocessing,
    normalize_preprocessing,
    read_preprocessing,
)

if TYPE_CHECKING:
    from grader.sandbox.limits import SandboxLimits

__all__ = [
    "DEFAULT_PREPROCESSING",
    "EVALUATOR_VERSION",
    "describe_preprocessing",
    "evaluate_checkpoint",
    "evaluation_cache_key",
    "evaluation_preprocessing",
    "normalize_preprocessing",
    "read_preprocessing",
]


def evaluate_checkpoint(
    path: str | Path,
    *,
    label: str | None = None,
    preprocessing: Mapping[str, Any] | str,
    cifar10_root: str | Path | None,
    device: str | None = None,
    limits: SandboxLimits,
) -> dict[str, Any]:
    """Evaluate the checkpoint at `path` on the test set in a sandboxed child (reference_mode.py)."""
    from grader.evaluation.reference_mode import evaluate_reference

    result = evaluate_reference(
        path, label=label, preprocessing=preprocessing, cifar10_root=cifar10_root, device=device, limits=limits
    )
    return {**result, "mode": "reference"}  # the evidence says which mode produced a result
