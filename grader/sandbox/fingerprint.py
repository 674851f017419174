"""Summarising uploaded checkpoints' weights for integrity checks, in sandboxed children, as evaluations are loaded.

The caller's process never parses an uploaded checkpoint: each batch of files goes to a fresh child
(`python -m grader.evaluation.fingerprint`, the grader's own code only) under bubblewrap with the sandbox's limits,
or, where bubblewrap cannot run, a plain child process with the same RLIMITs (like reference-mode evaluations).
What comes back is checked before it is used: a child that a hostile file subverted can only misdescribe the files
it was given, so callers give one child one student's files. Importing this module does not import torch.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grader
from grader.domain.status import SandboxStatus
from grader.errors import InfrastructureError
from grader.evaluation.similarity import SHA256, WeightSummary
from grader.sandbox.bwrap import Bind
from grader.sandbox.limits import SandboxLimits
from grader.sandbox.runner import isolation_here, path_inside, run_folder, run_sandboxed

PACKAGE = Path(grader.__file__).resolve().parent
LIB_TARGET, INPUT_TARGET = "/sandbox/lib", "/sandbox/input"
"""Where the child sees the grader's package and its files (as reference-mode evaluation children do)."""
MAX_MESSAGE = 2000


@dataclass(frozen=True, slots=True)
class Unusable:
    """A file that is not a usable checkpoint (a fact about its bytes: worth caching), or a run that failed
    (not: `final` is False), with the reason in words."""

    message: str
    final: bool


def summarize_checkpoints(files: Mapping[str, bytes], *, limits: SandboxLimits) -> dict[str, WeightSummary | Unusable]:
    """sha256 → its summary or why there is none, for every file given, from one sandboxed child run."""
    isolation = isolation_here(process_fallback=True)
    with run_folder("grader-fingerprint-") as work:
        folder = Bind(work / "input", INPUT_TARGET)
        lib = Bind(PACKAGE, f"{LIB_TARGET}/{PACKAGE.name}")
        folder.source.mkdir(mode=0o755)
        inside = path_inside(folder, isolation)
        job = {"threads": limits.threads, "checkpoints": {}}
        for sha256, data in files.items():
            if not SHA256.fullmatch(sha256):
                raise ValueError(f"not a sha256 hex digest: {sha256!r}")
            _write(folder.source / f"{sha256}.bin", data)
            job["checkpoints"][sha256] = f"{inside}/{sha256}.bin"
        _write(folder.source / "job.json", json.dumps(job).encode())
        run = run_sandboxed(
            [sys.executable, "-B", "-m", "grader.evaluation.fingerprint", f"{inside}/job.json"],
            binds=[lib, folder],
            limits=limits,
            env={"PYTHONPATH": LIB_TARGET if isolation == "bubblewrap" else str(PACKAGE.parent)},
            process_fallback=True,
        )
    if run.status is not SandboxStatus.OK:
        failed = Unusable(f"reading the checkpoint {run.message}", final=False)
        return dict.fromkeys(files, failed)
    payload = run.payload if isinstance(run.payload, Mapping) else {}
    if payload.get("status") == "error":
        return dict.fromkeys(files, Unusable("reading the checkpoint ran out of memory", final=False))
    results = payload.get("results")
    if payload.get("status") != "done" or not isinstance(results, Mapping) or set(results) != set(files):
        detail = run.payload_error or run.stderr_tail[-500:] or "no result"
        raise InfrastructureError(f"the fingerprint child returned an unusable result: {detail}")
    return {sha256: _checked(results[sha256]) for sha256 in files}


def _checked(value: object) -> WeightSummary | Unusable:
    if isinstance(value, Mapping) and value.get("status") == "rejected":
        return Unusable(str(value.get("message", "not a usable checkpoint"))[:MAX_MESSAGE], final=True)
    try:
        return WeightSummary.from_json(value)
    except ValueError as exc:
        return Unusable(f"the summary of this checkpoint was unusable ({exc})", final=False)


def _write(path: Path, data: bytes) -> None:
    with open(path, "xb") as handle:
        handle.write(data)
    path.chmod(0o644)
