"""What the grader's sandboxed Q1 programs share: running the grader's own code in a child (reference-mode
evaluation, weight summaries), the messages a sandbox limit turns into, and the check of predicted labels.

The programs themselves hand back their reply through grader/sandbox/protocol.py.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import grader
from grader.domain.status import SandboxStatus
from grader.sandbox.archive import InvalidUpload, UnsafeUpload, read_code_dir, write_files
from grader.sandbox.bwrap import Bind
from grader.sandbox.limits import SandboxLimits
from grader.sandbox.runner import SandboxResult, path_inside, run_folder, run_sandboxed
from grader.sandbox.warm import INPUT_DIR, WARM_ENV, WarmUnavailable, warm_server

log = logging.getLogger(__name__)

PACKAGE = Path(grader.__file__).resolve().parent
LIB_TARGET, INPUT_TARGET, CODE_TARGET = "/sandbox/lib", "/sandbox/input", "/sandbox/code"
"""Where a sandboxed program sees the grader's package, its input files and the student's code."""
NUM_CLASSES = 10
STUDENT_LIMITS = (SandboxStatus.TIMED_OUT, SandboxStatus.MEMORY_LIMIT, SandboxStatus.RESOURCE_LIMIT)
"""How a run can end that is the upload's doing (a network or code too big for the limits), not the grader's."""


def run_grader_module(
    module: str,
    job: Mapping[str, Any],
    inputs: Mapping[str, tuple[str, bytes]],
    *,
    limits: SandboxLimits,
    isolation: str,
    prefix: str,
    binds: Sequence[Bind] = (),
    gpu: bool = False,
    warm: bool = False,
) -> SandboxResult:
    """`python -m <module> job.json` (the grader's own code, never a student's) in a fresh folder: `inputs` (job key →
    file name, bytes) are written there and named in the job by their path inside; `binds` are shown as well.

    With `warm` (and where the warm sandbox works: bubblewrap, CPU, not switched off) the run is a child forked from
    this process's warm server (grader/sandbox/warm.py) instead of a fresh Python; the result's `start` says which."""
    if warm and isolation == "bubblewrap" and not gpu and warm_enabled():
        try:
            return _run_warm(module, job, inputs, limits, binds)
        except WarmUnavailable as exc:
            _warm_failed(str(exc))
    with run_folder(prefix) as work:
        folder = Bind(work / "input", INPUT_TARGET)
        lib = Bind(PACKAGE, f"{LIB_TARGET}/{PACKAGE.name}")
        inside = path_inside(folder, isolation)
        job = {**job, **{key: f"{inside}/{name}" for key, (name, _) in inputs.items()}}
        write_files([*inputs.values(), ("job.json", json.dumps(job).encode())], folder.source)
        return run_sandboxed(
            [sys.executable, "-B", "-m", module, f"{inside}/job.json"],
            binds=[lib, folder, *binds],
            limits=limits,
            gpu=gpu,
            env={"PYTHONPATH": LIB_TARGET if isolation == "bubblewrap" else str(PACKAGE.parent)},
            process_fallback=True,
        )


WARM_PRELOAD = ("grader.evaluation.child",)
"""What the warm server imports once (and torch with it): the evaluation child, run in each forked child."""


def warm_enabled() -> bool:
    """The warm sandbox is on unless GRADER_SANDBOX_WARM=0 (then every run starts cold)."""
    return os.environ.get(WARM_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def _run_warm(
    module: str,
    job: Mapping[str, Any],
    inputs: Mapping[str, tuple[str, bytes]],
    limits: SandboxLimits,
    binds: Sequence[Bind],
) -> SandboxResult:
    server = warm_server(WARM_PRELOAD, binds, {})
    job = {**job, **{key: f"{INPUT_DIR}/{name}" for key, (name, _) in inputs.items()}}
    files = {name: data for name, data in inputs.values()} | {"job.json": json.dumps(job).encode()}
    return server.run(module, [module, f"{INPUT_DIR}/job.json"], files, limits)


@functools.cache
def _warm_failed(reason: str) -> None:
    log.warning("the warm sandbox is not available here (%s): runs start cold", reason)


def limit_text(kind: str, limits: SandboxLimits) -> str:
    """What a program's error kind says about the limits (the rest of the message says while doing what)."""
    if kind == "memory":
        return f"ran out of memory (the limit is {limits.memory_bytes / 2**30:.1f} GiB)"
    if kind == "processes":
        return f"tried to start more than {limits.max_processes} processes or threads (the limit)"
    if kind == "file_size":
        return f"wrote a file over {limits.max_file_bytes} bytes (the limit)"
    return "failed"


def reported_seconds(value: Any, most: int = 5) -> dict[str, float]:
    """A program's own timings (`{"load": 0.1, ...}`) from its untrusted reply: at most `most`, plain numbers only."""
    if not isinstance(value, Mapping):
        return {}
    return {str(k)[:20]: float(v) for k, v in list(value.items())[:most] if type(v) in (int, float)}


def read_student_code(code_dir: Path) -> list[tuple[str, bytes]] | tuple[SandboxStatus, str]:
    """The student's .py files as (relative path, bytes), or (status, why) when the folder is unsafe or unusable."""
    try:
        return read_code_dir(Path(code_dir))
    except UnsafeUpload as exc:
        return SandboxStatus.REJECTED_UNSAFE, exc.message
    except InvalidUpload as exc:
        return SandboxStatus.REJECTED_INVALID_FILE, exc.message


def failed_result(
    status: SandboxStatus | str, message: str, context: Mapping[str, Any], run: SandboxResult | None = None
) -> dict[str, Any]:
    """The result of a run of a student's code that ended without one: its status and message in the student's
    terms, what it was about (`context`) and, where it ran, how (`sandbox`)."""
    result = {"status": str(status), "message": message, **context}
    if run is not None:
        result["sandbox"] = run.evidence()
    return result


def checked_predictions(value: Any, count: int) -> list[int]:
    """One class index 0..9 per image, from an untrusted reply; ValueError otherwise."""
    if not isinstance(value, list) or len(value) != count:
        raise ValueError(f"predictions are not a list of {count}")
    if any(type(p) is not int or not 0 <= p < NUM_CLASSES for p in value):
        raise ValueError("a prediction is not a class index 0..9")
    return value
