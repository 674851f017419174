"""Summarising uploaded checkpoints' weights for integrity checks, in sandboxed children, as evaluations are loaded.

The caller's process never parses an uploaded checkpoint: each batch of files goes to a fresh child
(`python -m grader.evaluation.fingerprint_child`, the grader's own code only) under bwrap with the sandbox's limits,
or, where bubblewrap cannot run, a plain child process with the same RLIMITs (like reference-mode evaluations).
What comes back is checked before it is used: a child that a hostile file subverted can only misdescribe the files
it was given, so callers give one child one student's files. Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from grader.domain.status import SandboxStatus
from grader.errors import InfrastructureError
from grader.evaluation.sandboxed import limit_text, run_grader_module
from grader.evaluation.similarity import SHA256, WeightSummary
from grader.sandbox.limits import SandboxLimits
from grader.sandbox.protocol import REJECTED, Reply
from grader.sandbox.runner import isolation_here

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
    for sha256 in files:
        if not SHA256.fullmatch(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    run = run_grader_module(
        "grader.evaluation.fingerprint_child",
        {"threads": limits.threads, "checkpoints": list(files)},
        {sha256: (f"{sha256}.bin", data) for sha256, data in files.items()},
        limits=limits,
        isolation=isolation,
        prefix="grader-fingerprint-",
    )
    if run.status is not SandboxStatus.OK:
        failed = Unusable(f"reading the checkpoint {run.message}", final=False)
        return dict.fromkeys(files, failed)
    reply = Reply.read(run.payload)
    if reply.failed:
        return dict.fromkeys(files, Unusable(f"reading the checkpoint {limit_text(reply.kind, limits)}", final=False))
    results = reply.mapping("results")
    if reply.status != "summarized" or results is None or set(results) != set(files):
        detail = run.payload_error or run.stderr_tail[-500:] or "no result"
        raise InfrastructureError(f"the fingerprint child returned an unusable result: {detail}")
    return {sha256: _checked(results[sha256]) for sha256 in files}


def _checked(value: object) -> WeightSummary | Unusable:
    reply = Reply.read(value)
    if reply.status == REJECTED:
        return Unusable(reply.message or "not a usable checkpoint", final=True)
    try:
        return WeightSummary.from_json(value)
    except ValueError as exc:
        return Unusable(f"the summary of this checkpoint was unusable ({exc})", final=False)
