"""The versions and keys under which evaluation results are cached: reference mode, student-code mode and the
Q1 code checks (no torch needed)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader.evaluation.preprocessing import normalize_preprocessing
from grader.sandbox.archive import code_sha256, read_code_dir

if TYPE_CHECKING:
    from grader.evaluation.student.interface import ModelInterface

EVALUATOR_VERSION = "q1-eval-1"
"""Bump when a change could alter a result (reader, mapping, forward pass, scoring of variants)."""


def evaluation_cache_key(
    checkpoint_sha256: str, preprocessing: Mapping[str, Any] | str, label: str | None = None
) -> str:
    """sha256 over canonical JSON of (evaluator version, checkpoint hash, canonical preprocessing, label)."""
    payload = {
        "evaluator_version": EVALUATOR_VERSION,
        "checkpoint_sha256": checkpoint_sha256.lower(),
        "preprocessing": normalize_preprocessing(preprocessing),
        "label": label,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


SANDBOX_VERSION = "sandbox-2"
"""Bump when the harness or the reading of its output changes in a way that could alter a result."""
CODE_CHECKS_VERSION = "code-checks-1"
"""Bump when the code checks' harness (code_checks_harness.py), their inputs or their judging change in a way that
could alter a verdict: cached code-check results under the old version are then recomputed."""


def student_code_sha256(code_dir: Path) -> str:
    """sha256 over the .py files under `code_dir` (relative paths and contents), as `materialise_code` reports."""
    return code_sha256(read_code_dir(Path(code_dir)))


def student_code_cache_key(
    *, code_sha256: str, checkpoint_sha256: str, label: str, arguments: Mapping[str, Any], interface: ModelInterface
) -> str:
    """sha256 over canonical JSON of (versions, code and checkpoint hashes, label, the factory call, interface)."""
    payload = {
        "evaluator_version": EVALUATOR_VERSION,
        "sandbox_version": SANDBOX_VERSION,
        "mode": "student_code",
        "code_sha256": code_sha256.lower(),
        "checkpoint_sha256": checkpoint_sha256.lower(),
        "label": label,
        "arguments": dict(arguments),
        "interface": interface.to_json(),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def code_checks_cache_key(*, code_sha256: str, spec: Mapping[str, Any]) -> str:
    """sha256 over canonical JSON of (versions, the code's hash, the rubric's `code_checks:` section with defaults)."""
    payload = {
        "code_checks_version": CODE_CHECKS_VERSION,
        "sandbox_version": SANDBOX_VERSION,
        "mode": "code_checks",
        "code_sha256": code_sha256.lower(),
        "spec": dict(spec),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()
