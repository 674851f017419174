"""Running students' own model code for Q1 inside a bubblewrap sandbox, and checking their code uploads.

Public surface:
- `materialise_code(upload, destination, *, limits=None, field="code") -> MaterialisedCode`: a zip (bytes) or
  (filename, bytes) pairs → a fresh folder of .py files; `UnsafeUpload` / `InvalidUpload` (InputError) naming
  the entry and the limit. `ArchiveLimits` holds the limits.
- `sandbox_available() -> str | None`: None when sandboxed runs work here, else why not.
- `run_sandboxed(command, *, binds, limits, gpu, env) -> SandboxResult`: one run with `SandboxLimits`,
  ending in a `SandboxStatus`; raises `SandboxUnavailable` (an InfrastructureError) when no sandbox can be made.
- `read_model_interface(rubric) -> ModelInterface | None`: the rubric's `model_interface:` section;
  `read_network_config(sheet, label, interface)`: the sheet's `q1.<label>_config`.
- `evaluate_student_code(code_dir, checkpoint, *, label, config, interface, cifar10_root, ...) -> dict`:
  the Q1 result in student-code mode (imports torch on first use, like grader.evaluation).
- `student_code_sha256(code_dir)`, `student_code_cache_key(...)`: what results are cached by.
- `architecture_from_trace(trace) -> dict`: architecture facts from a run's trace, as grader/checks/q1.py reads them.
- `grader.sandbox.code_checks.run_code_checks(code_dir, spec, ...)`: the Q1(a)–(d) code checks of a whole code folder
  (imports torch; `code_checks_spec.read_code_checks(rubric)` reads the rubric's `code_checks:` section).

Nothing here imports torch, FastAPI, SQLAlchemy or Celery at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from grader.domain.status import SandboxStatus
from grader.sandbox.archive import ArchiveLimits, InvalidUpload, MaterialisedCode, UnsafeUpload, materialise_code
from grader.sandbox.bwrap import Bind
from grader.sandbox.cache_key import SANDBOX_VERSION, student_code_cache_key, student_code_sha256
from grader.sandbox.interface import ModelInterface, read_model_interface, read_network_config
from grader.sandbox.limits import SandboxLimits
from grader.sandbox.runner import (
    INSECURE_ENV,
    SandboxResult,
    SandboxUnavailable,
    insecure_dev_mode,
    run_sandboxed,
    sandbox_available,
)
from grader.sandbox.trace import architecture_from_trace

if TYPE_CHECKING:
    from grader.sandbox.student_mode import evaluate_student_code

__all__ = [
    "INSECURE_ENV",
    "SANDBOX_VERSION",
    "ArchiveLimits",
    "Bind",
    "InvalidUpload",
    "MaterialisedCode",
    "ModelInterface",
    "SandboxLimits",
    "SandboxResult",
    "SandboxStatus",
    "SandboxUnavailable",
    "UnsafeUpload",
    "architecture_from_trace",
    "evaluate_student_code",
    "insecure_dev_mode",
    "materialise_code",
    "read_model_interface",
    "read_network_config",
    "run_sandboxed",
    "sandbox_available",
    "student_code_cache_key",
    "student_code_sha256",
]


def __getattr__(name: str) -> Any:
    # evaluate_student_code lives in student_mode, which imports torch: loaded on first use only.
    if name == "evaluate_student_code":
        from grader.sandbox.student_mode import evaluate_student_code

        return evaluate_student_code
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
