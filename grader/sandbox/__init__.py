"""The sandbox mechanism: running an untrusted program under limits and isolation, and unpacking untrusted code
uploads. It knows nothing about CIFAR-10, checkpoints or what the programs compute (grader.evaluation does).

Public surface:
- `run_sandboxed(command, *, binds, limits, gpu, env) -> SandboxResult`: one run with `SandboxLimits`, ending in
  a `SandboxStatus`; raises `SandboxUnavailable` (an InfrastructureError) when no sandbox can be made.
- `sandbox_available() -> str | None`: None when sandboxed runs work here, else why not.
- `materialise_code(upload, destination, *, limits=None, field="code") -> MaterialisedCode`: a zip (bytes) or
  (filename, bytes) pairs → a fresh folder of .py files; `UnsafeUpload` / `InvalidUpload` (InputError) naming
  the entry and the limit. `ArchiveLimits` holds the limits.

Nothing here imports torch, FastAPI, SQLAlchemy or Celery.
"""

from __future__ import annotations

from grader.domain.status import SandboxStatus
from grader.sandbox.archive import ArchiveLimits, InvalidUpload, MaterialisedCode, UnsafeUpload, materialise_code
from grader.sandbox.bwrap import Bind
from grader.sandbox.limits import SandboxLimits
from grader.sandbox.runner import (
    INSECURE_ENV,
    SandboxResult,
    SandboxUnavailable,
    insecure_dev_mode,
    run_sandboxed,
    sandbox_available,
)

__all__ = [
    "INSECURE_ENV",
    "ArchiveLimits",
    "Bind",
    "InvalidUpload",
    "MaterialisedCode",
    "SandboxLimits",
    "SandboxResult",
    "SandboxStatus",
    "SandboxUnavailable",
    "UnsafeUpload",
    "insecure_dev_mode",
    "materialise_code",
    "run_sandboxed",
    "sandbox_available",
]
