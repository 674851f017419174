"""Q1 in student-code mode: evaluating a checkpoint with the student's own network and preprocessing, sandboxed.

The parent checks the code files and the checkpoint's first bytes (it never parses the checkpoint), writes the
code, the checkpoint, the test images as raw uint8 records WITHOUT labels and the job into a fresh folder, runs
grader/sandbox/harness.py under bubblewrap, and scores the predicted labels it gets back through the result pipe
against its own labels. The result has the shape of grader.evaluation.evaluate_checkpoint's, plus
`"mode": "student_code"`, `"code_sha256"` and `"trace"`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from grader.evaluation.cache_key import EVALUATOR_VERSION
from grader.evaluation.checkpoint import CheckpointRejected, read_file, sniff_format
from grader.evaluation.cifar import Cifar10TestSet, load_cifar10_test
from grader.evaluation.evaluate import accuracy_summary, describe_device
from grader.sandbox.archive import InvalidUpload, UnsafeUpload, code_sha256, read_code_dir, write_files
from grader.sandbox.bwrap import Bind
from grader.sandbox.cache_key import SANDBOX_VERSION
from grader.sandbox.interface import ModelInterface
from grader.sandbox.limits import SandboxLimits, SandboxStatus
from grader.sandbox.runner import SandboxResult, path_inside, run_folder, run_sandboxed
from grader.sandbox.testset_file import images_file
from grader.sandbox.trace import architecture_from_trace, summarize_trace

log = logging.getLogger(__name__)

HARNESS = Path(__file__).with_name("harness.py")
CODE_TARGET, INPUT_TARGET, IMAGES_TARGET = "/sandbox/code", "/sandbox/input", "/sandbox/testset/images.u8"
MODE = "student_code"
CPU_BATCH, GPU_BATCH = 100, 500
NUM_CLASSES = 10
ERROR_STATUS = {
    "invalid_checkpoint": SandboxStatus.REJECTED_INVALID_FILE,
    "checkpoint_mismatch": SandboxStatus.REJECTED_INVALID_FILE,
    "missing_module": SandboxStatus.REJECTED_INVALID_FILE,
    "memory": SandboxStatus.MEMORY_LIMIT,
    "processes": SandboxStatus.RESOURCE_LIMIT,
    "file_size": SandboxStatus.RESOURCE_LIMIT,
    "interface": SandboxStatus.CRASHED,
    "student_code": SandboxStatus.CRASHED,
}
"""Harness error kinds → result status."""


def evaluate_student_code(
    code_dir: Path,
    checkpoint: Path,
    *,
    label: str,
    config: Mapping[str, Any],
    interface: ModelInterface,
    cifar10_root: Path,
    limits: SandboxLimits | None = None,
    device: str = "cpu",
    limit_images: int | None = None,
) -> dict[str, Any]:
    """JSON-ready result: {"status": "evaluated", ...} or {"status": <SandboxStatus>, "message": ...}.

    Raises InvalidAnswer when `config` (the sheet's `q1.<label>_config`) does not give the factory's arguments,
    InfrastructureError when the data set is missing or the files cannot be read, SandboxUnavailable (an
    InfrastructureError) when no sandbox can be made here.
    """
    limits = limits or SandboxLimits()
    arguments = interface.arguments(label, config)
    testset = load_cifar10_test(cifar10_root, "cpu")
    data, checkpoint_sha = read_file(checkpoint)
    context = {
        "mode": MODE,
        "label": label,
        "checkpoint_sha256": checkpoint_sha,
        "evaluator_version": EVALUATOR_VERSION,
    }
    try:
        sniff_format(data)  # the first bytes only: the file is parsed in the sandbox, never here
    except CheckpointRejected as exc:
        return _failed(SandboxStatus.REJECTED_INVALID_FILE, exc.message, context)
    try:
        files = read_code_dir(Path(code_dir))
    except UnsafeUpload as exc:
        return _failed(SandboxStatus.REJECTED_UNSAFE, exc.message, context)
    except InvalidUpload as exc:
        return _failed(SandboxStatus.REJECTED_INVALID_FILE, exc.message, context)
    context["code_sha256"] = code_sha256(files)
    missing = _missing_modules(files, interface)
    if missing:
        return _failed(SandboxStatus.REJECTED_INVALID_FILE, f"{' and '.join(missing)} not found in your code", context)
    count = min(limit_images or len(testset), len(testset))
    started = time.perf_counter()
    run = _run(files, data, testset, count, arguments, interface, limits, device)
    log.info("student-code run for %s %s: %s in %.1f s", label, checkpoint_sha[:12], run.status, run.wall_seconds)
    outcome = _outcome(run, count, limits)
    if isinstance(outcome, tuple):
        return _failed(*outcome, context, run)
    checkpoint_facts = {"sha256": checkpoint_sha, "bytes": len(data), "format": sniff_format(data)}
    result = _evaluated(outcome, testset, count, checkpoint_facts, arguments, interface, device, context, run)
    result["seconds"] = {**_harness_seconds(run.payload), "total": round(time.perf_counter() - started, 3)}
    return result


def _missing_modules(files: list[tuple[str, bytes]], interface: ModelInterface) -> list[str]:
    stems = {name.removesuffix(".py").lower() for name, _ in files if "/" not in name}
    wanted = dict.fromkeys([interface.network_module, interface.preprocess_module])
    return [f"{name}.py" for name in wanted if name.lower() not in stems]


def _run(
    files: list[tuple[str, bytes]],
    checkpoint: bytes,
    testset: Cifar10TestSet,
    count: int,
    arguments: Mapping[str, Any],
    interface: ModelInterface,
    limits: SandboxLimits,
    device: str,
) -> SandboxResult:
    with run_folder() as work:
        code, inputs = Bind(work / "code", CODE_TARGET), Bind(work / "input", INPUT_TARGET)
        images = Bind(images_file(testset), IMAGES_TARGET)
        write_files(files, code.source)
        inputs.source.mkdir(mode=0o755)
        _write_input(inputs.source / "checkpoint.pt", checkpoint)
        _write_input(inputs.source / "harness.py", HARNESS.read_bytes())
        job = _job(code, inputs, images, count, arguments, interface, limits, device)
        _write_input(inputs.source / "job.json", json.dumps(job).encode())
        inside = path_inside(inputs)
        command = [sys.executable, "-B", f"{inside}/harness.py", f"{inside}/job.json"]
        return run_sandboxed(command, binds=[code, inputs, images], limits=limits, gpu=device.startswith("cuda"))


def _job(
    code: Bind,
    inputs: Bind,
    images: Bind,
    count: int,
    arguments: Mapping[str, Any],
    interface: ModelInterface,
    limits: SandboxLimits,
    device: str,
) -> dict[str, Any]:
    """What the harness does, with paths as the sandbox sees them."""
    inside = path_inside(inputs)
    return {
        "code_dir": path_inside(code),
        "images": path_inside(images),
        "count": count,
        "checkpoint": f"{inside}/checkpoint.pt",
        "network": {"module": interface.network_module, "factory": interface.factory, "arguments": dict(arguments)},
        "preprocess": {
            "module": interface.preprocess_module,
            "function": interface.preprocess_function,
            "keyword_arguments": dict(interface.preprocess_kwargs),
        },
        "record_dtype": interface.record_dtype,
        "device": device,
        "threads": limits.threads,
        "batch_size": GPU_BATCH if device.startswith("cuda") else CPU_BATCH,
    }


def _write_input(path: Path, data: bytes) -> None:
    with open(path, "xb") as handle:
        handle.write(data)
    path.chmod(0o644)


def _outcome(run: SandboxResult, count: int, limits: SandboxLimits) -> list[int] | tuple[SandboxStatus, str]:
    """The predictions, or (status, message) saying why there are none."""
    if run.status in (SandboxStatus.TIMED_OUT, SandboxStatus.MEMORY_LIMIT, SandboxStatus.RESOURCE_LIMIT):
        return run.status, f"Running your code {run.message}."
    payload = run.payload if isinstance(run.payload, Mapping) else {}
    error = payload.get("error")
    if isinstance(error, Mapping):
        kind = str(error.get("kind"))
        where = f"while {str(error.get('stage', ''))[:300]}: {str(error.get('message', ''))[:1500]}"
        return ERROR_STATUS.get(kind, SandboxStatus.CRASHED), f"Running your code {_limit_text(kind, limits)}{where}"
    if run.status is not SandboxStatus.OK:
        return run.status, f"Running your code: it {run.message}."
    return _predictions(payload, count)


def _limit_text(kind: str, limits: SandboxLimits) -> str:
    """What a harness error kind says about the limits, before "while <stage>"."""
    if kind == "memory":
        return f"ran out of memory (the limit is {limits.memory_bytes / 2**30:.1f} GiB) "
    if kind == "processes":
        return f"tried to start more than {limits.max_processes} processes or threads (the limit) "
    if kind == "file_size":
        return f"wrote a file over {limits.max_file_bytes} bytes (the limit) "
    return "failed "


def _predictions(payload: Mapping[str, Any], count: int) -> list[int] | tuple[SandboxStatus, str]:
    predictions = payload.get("predictions")
    if not isinstance(predictions, list):
        return SandboxStatus.CRASHED, "Running your code ended without a result (did it call exit()?)."
    if len(predictions) != count:
        return SandboxStatus.CRASHED, f"Your network gave {len(predictions)} predictions for {count} images."
    wrong = next((p for p in predictions if type(p) is not int or not 0 <= p < NUM_CLASSES), None)
    if wrong is not None:
        return SandboxStatus.CRASHED, f"Your network predicted class {wrong!r}; CIFAR-10 classes are 0..9."
    return predictions


def _evaluated(
    predictions: list[int],
    testset: Cifar10TestSet,
    count: int,
    checkpoint: Mapping[str, Any],
    arguments: Mapping[str, Any],
    interface: ModelInterface,
    device: str,
    context: Mapping[str, Any],
    run: SandboxResult,
) -> dict[str, Any]:
    trace = run.payload.get("trace") if isinstance(run.payload, Mapping) else None
    labels = testset.labels[:count]
    return {
        "status": "evaluated",
        **context,
        "sandbox_version": SANDBOX_VERSION,
        **accuracy_summary(torch.tensor(predictions, dtype=torch.int64), labels, testset.class_names),
        "architecture": architecture_from_trace(trace),
        "trace": summarize_trace(trace),
        "preprocessing": {"kind": MODE, "function": interface.describe_preprocessing()},
        "network_arguments": dict(arguments),
        "checkpoint": dict(checkpoint),
        "device": describe_device(torch.device(device)),
        "torch_version": torch.__version__,
        "dataset": {"images": count, "pixels_sha256": testset.pixels_sha256},
        "isolation": run.isolation,
        "sandbox": run.evidence(),
    }


def _harness_seconds(payload: Any) -> dict[str, float]:
    """The harness's own timings (import, load, predict), kept only when they are plain numbers."""
    info = payload.get("info") if isinstance(payload, Mapping) else None
    seconds = info.get("seconds") if isinstance(info, Mapping) else None
    if not isinstance(seconds, Mapping):
        return {}
    return {str(k)[:20]: float(v) for k, v in list(seconds.items())[:5] if type(v) in (int, float)}


def _failed(
    status: SandboxStatus, message: str, context: Mapping[str, Any], run: SandboxResult | None = None
) -> dict[str, Any]:
    result = {"status": str(status), "message": message, **context, "sandbox_version": SANDBOX_VERSION}
    if run is not None:
        result["sandbox"] = run.evidence()
    return result
