"""Q1 in reference mode, isolated: the uploaded checkpoint is loaded and run in a sandboxed child, scored here.

The worker's process never parses an uploaded checkpoint. Each evaluation starts a fresh child (see
grader/evaluation/child.py) under bubblewrap with the sandbox's limits, showing it only the grader's own package,
the checkpoint and the test images as raw records WITHOUT labels. A fresh child per evaluation, not a
long-lived one: a file that subverted its loader could otherwise tamper with the next student's evaluation.
The test set is still read and checked once per process; its images file is written once and shared read-only.

The child predicts with the default forward pass first; when that scores under the retry threshold and the
architecture leaves choices open, a second child runs the alternatives, and the runs are cut after the first
that reaches the threshold, exactly as the in-process evaluator (grader.evaluation.evaluate) stops.

Where bubblewrap cannot run, the child runs as a plain process with the same RLIMITs (evidence
`"isolation": "process"`): the grader's own code facing an untrusted file, so a weaker wall is still a wall.
Student code never runs that way (see runner.run_sandboxed).
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from grader.domain.status import SandboxStatus
from grader.errors import InfrastructureError
from grader.evaluation.cache_key import evaluation_cache_key
from grader.evaluation.checkpoint import CheckpointRejected, read_file
from grader.evaluation.cifar import Cifar10TestSet, load_cifar10_test
from grader.evaluation.evaluate import ResultCache, Run, best_run, pick_device, reached_target, rejected, summarize
from grader.evaluation.preprocessing import normalize_preprocessing
from grader.evaluation.resnet import ForwardVariant
from grader.evaluation.sandboxed import (
    STUDENT_LIMITS,
    checked_predictions,
    limit_text,
    reported_seconds,
    run_grader_module,
)
from grader.evaluation.testset_file import images_file
from grader.sandbox.bwrap import Bind
from grader.sandbox.limits import SandboxLimits
from grader.sandbox.protocol import REJECTED, RESULT_FD_ENV, Reply
from grader.sandbox.runner import SandboxResult, isolation_here, path_inside, run_sandboxed

log = logging.getLogger(__name__)

TESTSET_TARGET = "/sandbox/testset/images.u8"
MAX_RUNS = 16

_RESULTS = ResultCache()


def evaluate_reference(
    path: str | Path,
    *,
    label: str | None = None,
    preprocessing: Mapping[str, Any] | str,
    cifar10_root: str | Path | None,
    device: str | torch.device | None = None,
    limits: SandboxLimits,
    limit: int | None = None,
) -> dict[str, Any]:
    """JSON-ready result with the shape of grader.evaluation.evaluate.evaluate_in_process's, plus
    `"isolation"`; `{"status": "timed_out" | "memory_limit" | "resource_limit", "message": ...}` when the
    checkpoint's network does not fit the sandbox's limits. `limit` (the first N images) is for tests.

    Raises InfrastructureError when the data set or the file cannot be read, or the child failed in a way
    that is not the checkpoint's doing (it crashed, the GPU ran out of memory): worth a retry.
    """
    if cifar10_root is None:
        raise InfrastructureError("GRADER_CIFAR10_ROOT is not set: the folder holding cifar-10-batches-py/")
    target = _usable_in_sandbox(pick_device(device), limits)
    spec = normalize_preprocessing(preprocessing)
    testset = load_cifar10_test(cifar10_root, "cpu")
    count = min(limit or len(testset), len(testset))
    try:
        data, sha256 = read_file(path)
    except CheckpointRejected as exc:
        return rejected(exc.message, "", Path(path).stat().st_size)
    key = (evaluation_cache_key(sha256, spec), str(target), testset.source, count)
    cached = _RESULTS.get(key)
    if cached is not None:
        return cached
    started = time.perf_counter()
    job = _ChildJob(data, sha256, spec, testset, count, target, limits)
    first = _child(job, "default")
    if not isinstance(first, _Predicted):
        return {**first, "checkpoint_sha256": sha256}
    runs = first.runs
    if not reached_target(runs[0][1], count) and first.variants_left:
        more = _child(job, "alternatives")
        if isinstance(more, _Predicted):
            runs = _until_target([*runs, *more.runs], count)
        else:  # the default's result stands; the log says why no alternative was scored
            log.warning("alternative forward passes of %s not evaluated: %s", sha256[:12], more.get("message"))
    result = summarize(
        best_run(runs),
        runs,
        testset,
        checkpoint=first.checkpoint,
        architecture=first.architecture,
        preprocessing=spec,
        device=first.device,
    )
    result["isolation"] = first.isolation
    result["sandbox_start"] = first.start  # "warm": forked from the warm server; "cold": a fresh child
    result["seconds"] = {**first.seconds, "total": round(time.perf_counter() - started, 3)}
    log.info("evaluated %s checkpoint %s: %s", label or "a", sha256[:12], result["accuracy_percent"])
    _RESULTS.put(key, result)
    return result


class _Predicted:
    """A child's predictions, checked: every field below comes from an untrusted process."""

    def __init__(self, payload: Mapping[str, Any], labels: torch.Tensor, isolation: str, start: str) -> None:
        count = int(labels.shape[0])
        raw_runs = payload.get("runs")
        if not isinstance(raw_runs, list) or len(raw_runs) > MAX_RUNS:
            raise ValueError("runs is not a short list")
        self.runs: list[Run] = []
        for run in raw_runs:
            predictions = torch.tensor(
                checked_predictions(run.get("predictions") if isinstance(run, Mapping) else None, count),
                dtype=torch.int64,
            )
            variant = ForwardVariant.from_json(run.get("variant"))
            self.runs.append((variant, int((predictions == labels).sum()), predictions))
        self.checkpoint = _mapping(payload, "checkpoint")
        self.architecture = _mapping(payload, "architecture")
        self.device = str(payload.get("device", ""))[:200]
        left = payload.get("variants_left")
        self.variants_left = left if type(left) is int and 0 <= left < MAX_RUNS else 0
        self.seconds = reported_seconds(payload.get("seconds"), most=4)
        self.isolation, self.start = isolation, start


def _mapping(payload: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = payload.get(name)
    if not isinstance(value, dict):
        raise ValueError(f"{name} is not a mapping")
    return value


def _until_target(runs: list[Run], count: int) -> list[Run]:
    """The runs up to the first that reaches the retry threshold: what the in-process evaluator would try."""
    for index, run in enumerate(runs):
        if reached_target(run[1], count):
            return runs[: index + 1]
    return runs


@dataclass(frozen=True, slots=True)
class _ChildJob:
    """What every child run of one evaluation is given."""

    data: bytes
    sha256: str
    preprocessing: dict[str, Any]
    testset: Cifar10TestSet
    count: int
    device: torch.device
    limits: SandboxLimits


def _child(job: _ChildJob, variants: str) -> _Predicted | dict[str, Any]:
    """One child run: its checked predictions, or the final result (rejected, a limit) it ends in."""
    isolation = isolation_here(process_fallback=True)
    run = _run_child(job, variants, isolation)
    if run.status in STUDENT_LIMITS:
        message = f"Evaluating your checkpoint {run.message}."
        return {"status": str(run.status), "message": message, "isolation": isolation}
    reply = Reply.read(run.payload) if run.status is SandboxStatus.OK else Reply("")
    if reply.status == REJECTED:
        message = reply.message or "not a usable checkpoint"
        return {**rejected(message, job.sha256, len(job.data), reply.mapping("architecture")), "isolation": isolation}
    if reply.failed and reply.kind == "memory":
        message = f"Evaluating your checkpoint {limit_text('memory', job.limits)}."
        return {"status": str(SandboxStatus.MEMORY_LIMIT), "message": message, "isolation": isolation}
    if reply.status == "predicted":
        try:
            return _Predicted(reply.fields, job.testset.labels[: job.count], run.isolation, run.start)
        except ValueError as exc:
            raise InfrastructureError(f"the evaluation child returned an unusable result: {exc}") from exc
    detail = reply.message or run.payload_error or run.message
    raise InfrastructureError(f"the evaluation child for {job.sha256[:12]} failed ({run.status}): {detail[:500]}")


def _run_child(job: _ChildJob, variants: str, isolation: str) -> SandboxResult:
    spec = {"checkpoint_sha256": job.sha256, "preprocessing": job.preprocessing, "variants": variants}
    inputs = {"checkpoint": ("checkpoint.bin", job.data)}
    return run_child(inputs, spec, job.testset, job.count, job.device, job.limits, isolation)


def run_child(
    inputs: Mapping[str, tuple[str, bytes]],
    spec: Mapping[str, Any],
    testset: Cifar10TestSet,
    count: int,
    device: torch.device,
    limits: SandboxLimits,
    isolation: str,
) -> SandboxResult:
    """One run of grader.evaluation.child: `inputs` (job key → file name, bytes) next to `spec`, the test images
    (without labels) and the run's settings."""
    images = Bind(images_file(testset), TESTSET_TARGET)
    job = {
        **spec,
        "images": path_inside(images, isolation),
        "count": count,
        "device": str(device),
        "threads": limits.threads,
    }
    return run_grader_module(
        "grader.evaluation.child",
        job,
        inputs,
        limits=limits,
        isolation=isolation,
        prefix="grader-reference-",
        binds=[images],
        gpu=device.type == "cuda",
        warm=True,
    )


GPU_PROBE = "import os, torch; torch.zeros(1, device='cuda').sum().item(); os.write(int(os.environ['{fd}']), b'1')"


def _usable_in_sandbox(device: torch.device, limits: SandboxLimits) -> torch.device:
    """`device`, or the CPU when a sandboxed child cannot use the GPU here (said once, loudly, in the log)."""
    if device.type != "cuda" or _gpu_works_in_sandbox(limits.memory_bytes):
        return device
    return torch.device("cpu")


@functools.cache
def _gpu_works_in_sandbox(memory_bytes: int) -> bool:
    probe = GPU_PROBE.format(fd=RESULT_FD_ENV)
    limits = SandboxLimits(  # the grader's own probe of the GPU
        wall_seconds=120,
        cpu_seconds=120,
        memory_bytes=memory_bytes,
        max_processes=64,
        max_output_bytes=1 << 20,
        threads=1,
    )
    try:
        run = run_sandboxed([sys.executable, "-c", probe], limits=limits, gpu=True, process_fallback=True)
    except InfrastructureError as exc:
        run = None
        reason = str(exc)
    else:
        reason = run.stderr_tail.strip().splitlines()[-1:] or [run.message]
    if run is not None and run.status is SandboxStatus.OK and run.payload == 1:
        return True
    log.error("a sandboxed child cannot use the GPU here (%s); checkpoints are evaluated on the CPU", reason)
    return False
