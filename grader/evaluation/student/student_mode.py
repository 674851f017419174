"""Q1 in student-code mode: a checkpoint evaluated with the network the student's own code builds, in two steps.

Points come from the submitted weights run through a network whose structure the grader saw for itself; nothing
the student's process says about itself is taken on trust (it runs their code, so it could write any result).

1. The student's code, sandboxed (harness.py, beside this module): their modules are imported, the network is built
   with the rubric's arguments and exported as a graph (torch.export, as JSON), and their preprocessing is run on
   random images the grader made. It never sees the checkpoint or a test image.
2. The grader's code, sandboxed with no student code (grader/evaluation/child.py): the graph is checked against
   the operations a ResNet needs, bound to the checkpoint's tensors (weights only, the grader's loader) and run
   on the test images, preprocessed by the grader's own implementation of the kind step 1 showed (it must be
   one of the known kinds); one pass is traced, and the architecture is inferred from that trace.

The parent scores the predictions against its own labels. The result has the shape of
grader.evaluation.evaluate_checkpoint's, plus `"mode": "student_code"`, `"code_sha256"` and `"trace"`; a graph
or preprocessing the grader cannot run ends `rejected` with the reason.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grader.domain.status import SandboxStatus
from grader.evaluation.cache_key import EVALUATOR_VERSION, SANDBOX_VERSION
from grader.evaluation.checkpoint import CheckpointRejected, read_file, sniff_format
from grader.evaluation.cifar import Cifar10TestSet, load_cifar10_test
from grader.evaluation.evaluate import accuracy_summary, describe_device
from grader.evaluation.program import Program, ProgramRejected
from grader.evaluation.reference_mode import run_child
from grader.evaluation.sandboxed import (
    CODE_TARGET,
    INPUT_TARGET,
    STUDENT_LIMITS,
    checked_predictions,
    failed_result,
    limit_text,
    read_student_code,
    reported_seconds,
)
from grader.evaluation.student.interface import ModelInterface
from grader.evaluation.student.trace import architecture_from_trace, summarize_trace
from grader.evaluation.transforms import identify_preprocessing
from grader.sandbox import protocol
from grader.sandbox.archive import code_sha256, write_files
from grader.sandbox.bwrap import Bind
from grader.sandbox.limits import SandboxLimits
from grader.sandbox.protocol import Reply
from grader.sandbox.runner import SandboxResult, isolation_here, path_inside, run_folder, run_sandboxed

log = logging.getLogger(__name__)

HARNESS = Path(__file__).with_name("harness.py")
MODE = "student_code"
CPU_BATCH, GPU_BATCH = 100, 500
PROBE_IMAGES = 8
ERROR_STATUS = {
    "missing_module": SandboxStatus.REJECTED_INVALID_FILE,
    "memory": SandboxStatus.MEMORY_LIMIT,
    "processes": SandboxStatus.RESOURCE_LIMIT,
    "file_size": SandboxStatus.RESOURCE_LIMIT,
    "interface": SandboxStatus.CRASHED,
    "export": SandboxStatus.CRASHED,
    "student_code": SandboxStatus.CRASHED,
}
"""Harness error kinds → result status."""
REJECTED = "rejected"
"""A graph or a preprocessing the grader will not run (the same status as an unusable checkpoint in reference mode)."""


def evaluate_student_code(
    code_dir: Path,
    checkpoint: Path,
    *,
    label: str,
    config: Mapping[str, Any],
    interface: ModelInterface,
    cifar10_root: Path,
    limits: SandboxLimits,
    device: str = "cpu",
    limit_images: int | None = None,
) -> dict[str, Any]:
    """JSON-ready result: {"status": "evaluated", ...} or {"status": <SandboxStatus> | "rejected", "message": ...}.

    Raises InvalidAnswer when `config` (the sheet's `q1.<label>_config`) does not give the factory's arguments,
    InfrastructureError when the data set is missing or the files cannot be read, SandboxUnavailable (an
    InfrastructureError) when no sandbox can be made here.
    """
    arguments = interface.arguments(label, config)
    testset = load_cifar10_test(cifar10_root, "cpu")
    data, checkpoint_sha = read_file(checkpoint)
    context = {
        "mode": MODE,
        "label": label,
        "checkpoint_sha256": checkpoint_sha,
        "evaluator_version": EVALUATOR_VERSION,
        "sandbox_version": SANDBOX_VERSION,
    }
    try:
        sniff_format(data)  # the first bytes only: the file is parsed in the sandbox, never here
    except CheckpointRejected as exc:
        return failed_result(SandboxStatus.REJECTED_INVALID_FILE, exc.message, context)
    files = read_student_code(code_dir)
    if isinstance(files, tuple):
        return failed_result(*files, context)
    context["code_sha256"] = code_sha256(files)
    missing = _missing_modules(files, interface)
    if missing:
        return failed_result(
            SandboxStatus.REJECTED_INVALID_FILE, f"{' and '.join(missing)} not found in your code", context
        )
    count = min(limit_images or len(testset), len(testset))
    started = time.perf_counter()
    probes = probe_images(np.random.default_rng())
    run = _run(files, probes, arguments, interface, limits)
    log.info("student-code run for %s %s: %s in %.1f s", label, checkpoint_sha[:12], run.status, run.wall_seconds)
    built = _outcome(run, limits)
    if isinstance(built, tuple):
        return failed_result(*built, context, run)
    program, preprocessing = _read_payload(built, probes, interface)
    if isinstance(program, str):
        return failed_result(REJECTED, program, context, run)
    assert preprocessing is not None
    ran = _run_program(data, checkpoint_sha, built["program"], preprocessing, testset, count, limits, device)
    if isinstance(ran, tuple):
        return failed_result(*ran, context, run)
    result = _evaluated(ran, testset, count, arguments, interface, preprocessing, context)
    result["sandbox"] = run.evidence()
    info = run.payload.get("info") if isinstance(run.payload.get("info"), Mapping) else {}
    result["seconds"] = {**reported_seconds(info.get("seconds")), "total": round(time.perf_counter() - started, 3)}
    return result


def probe_images(rng: np.random.Generator) -> np.ndarray:
    """Random images whose brightness and contrast differ per image and per channel, so that the known kinds
    of preprocessing (global, per image, per channel) give clearly different outputs on them."""
    low = rng.integers(0, 120, size=(PROBE_IMAGES, 3, 1, 1))
    span = rng.integers(40, 136, size=(PROBE_IMAGES, 3, 1, 1))
    return (low + rng.random((PROBE_IMAGES, 3, 32, 32)) * span).astype(np.uint8)


def _missing_modules(files: list[tuple[str, bytes]], interface: ModelInterface) -> list[str]:
    stems = {name.removesuffix(".py").lower() for name, _ in files if "/" not in name}
    wanted = dict.fromkeys([interface.network_module, interface.preprocess_module])
    return [f"{name}.py" for name in wanted if name.lower() not in stems]


def _run(
    files: list[tuple[str, bytes]],
    probes: np.ndarray,
    arguments: Mapping[str, Any],
    interface: ModelInterface,
    limits: SandboxLimits,
) -> SandboxResult:
    """Step 1: the student's code builds and exports the network and preprocesses the probe images."""
    with run_folder() as work:
        code, inputs = Bind(work / "code", CODE_TARGET), Bind(work / "input", INPUT_TARGET)
        write_files(files, code.source)
        job = _job(code, inputs, probes.shape[0], arguments, interface, limits)
        write_files(
            [*harness_files(HARNESS), ("probes.u8", probes.tobytes()), ("job.json", json.dumps(job).encode())],
            inputs.source,
        )
        inside = path_inside(inputs)
        command = [sys.executable, "-B", f"{inside}/harness.py", f"{inside}/job.json"]
        return run_sandboxed(command, binds=[code, inputs], limits=limits, gpu=False)


def _job(
    code: Bind,
    inputs: Bind,
    probe_count: int,
    arguments: Mapping[str, Any],
    interface: ModelInterface,
    limits: SandboxLimits,
) -> dict[str, Any]:
    """What the harness does, with paths as the sandbox sees them."""
    return {
        "code_dir": path_inside(code),
        "probes": f"{path_inside(inputs)}/probes.u8",
        "probe_count": probe_count,
        "network": {"module": interface.network_module, "factory": interface.factory, "arguments": dict(arguments)},
        "preprocess": {
            "module": interface.preprocess_module,
            "function": interface.preprocess_function,
            "keyword_arguments": dict(interface.preprocess_kwargs),
        },
        "record_dtype": interface.record_dtype,
        "threads": limits.threads,
    }


def harness_files(*harnesses: Path) -> list[tuple[str, bytes]]:
    """The harness programs to copy into the sandbox, with the protocol module they reply through beside them."""
    return [(protocol.COPY_NAME, Path(protocol.__file__).read_bytes())] + [(h.name, h.read_bytes()) for h in harnesses]


def _outcome(run: SandboxResult, limits: SandboxLimits) -> dict[str, Any] | tuple[SandboxStatus, str]:
    """The harness's payload, or (status, message) saying why there is none."""
    if run.status in STUDENT_LIMITS:
        return run.status, f"Running your code {run.message}."
    reply = Reply.read(run.payload)
    if reply.failed:
        where = f"while {reply.stage}: {reply.message[:1500]}"
        status = ERROR_STATUS.get(reply.kind, SandboxStatus.CRASHED)
        return status, f"Running your code {limit_text(reply.kind, limits)} {where}"
    if run.status is not SandboxStatus.OK:
        return run.status, f"Running your code: it {run.message}."
    if reply.status != "built" or reply.mapping("program") is None or not isinstance(reply.get("probe"), list):
        return SandboxStatus.CRASHED, "Running your code ended without a result (did it call exit()?)."
    return dict(reply.fields)


def _read_payload(
    payload: Mapping[str, Any], probes: np.ndarray, interface: ModelInterface
) -> tuple[Program | str, dict[str, Any] | None]:
    """The checked program and the preprocessing kind the probe shows, or (why not, None)."""
    try:
        program = Program.from_json(payload["program"])
    except ProgramRejected as exc:
        return f"Your network cannot be evaluated: {exc.message}.", None
    function = interface.describe_preprocessing()
    outputs = [_decode(entry, probes.shape) for entry in payload["probe"][:2]]
    if len(outputs) != 2 or any(isinstance(output, str) for output in outputs):
        found = next((output for output in outputs if isinstance(output, str)), "no output")
        return f"Your preprocessing {function} cannot be used: {found}.", None
    first, again = outputs
    assert isinstance(first, torch.Tensor) and isinstance(again, torch.Tensor)
    if not torch.equal(first, again):
        return (
            f"Your preprocessing {function} is not deterministic at test time: the same record gave two results.",
            None,
        )
    spec, why = identify_preprocessing(torch.from_numpy(probes), first)
    if spec is None:
        return f"Your preprocessing {function} cannot be reproduced by the grader: {why}.", None
    return program, spec


def _decode(entry: Any, shape: tuple[int, ...]) -> torch.Tensor | str:
    if (
        not isinstance(entry, Mapping)
        or not isinstance(entry.get("data"), str)
        or not isinstance(entry.get("shape"), list)
    ):
        return "no output"
    got = entry.get("shape")
    if not isinstance(got, list) or got != list(shape):
        returned = tuple(got[1:]) if isinstance(got, list) else "?"
        return f"it returned arrays of shape {returned}; expected {tuple(shape[1:])}"
    try:
        raw = base64.b64decode(entry["data"], validate=True)
    except ValueError:
        return "its output could not be read"
    if len(raw) != int(np.prod(shape)) * 4:
        return "its output could not be read"
    return torch.from_numpy(np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape))


def _run_program(
    data: bytes,
    sha256: str,
    program: Mapping[str, Any],
    preprocessing: Mapping[str, Any],
    testset: Cifar10TestSet,
    count: int,
    limits: SandboxLimits,
    device: str,
) -> _Predicted | tuple[str, str]:
    """Step 2: the grader runs the graph with the checkpoint's tensors; its checked output, or (status, why)."""
    isolation = isolation_here(process_fallback=True)
    spec = {
        "checkpoint_sha256": sha256,
        "preprocessing": dict(preprocessing),
        "batch_size": GPU_BATCH if device.startswith("cuda") else CPU_BATCH,
    }
    inputs = {"checkpoint": ("checkpoint.bin", data), "program": ("program.json", json.dumps(program).encode())}
    run = run_child(inputs, spec, testset, count, torch.device(device), limits, isolation)
    if run.status in STUDENT_LIMITS:
        return str(run.status), f"Running your network {run.message}."
    reply = Reply.read(run.payload) if run.status is SandboxStatus.OK else Reply("")
    if reply.status == protocol.REJECTED:
        message = reply.message or "not a usable network"
        if reply.get("cause") == "checkpoint":
            return str(SandboxStatus.REJECTED_INVALID_FILE), f"Loading your checkpoint failed: {message}"
        if reply.get("cause") == "weights":
            return str(SandboxStatus.REJECTED_INVALID_FILE), f"Your checkpoint does not fit your network ({message})."
        return REJECTED, f"Your network cannot be evaluated: {message}."
    if reply.failed and reply.kind == "memory":
        return str(SandboxStatus.MEMORY_LIMIT), f"Running your network {limit_text('memory', limits)}."
    if reply.status != "predicted":
        detail = reply.message or run.payload_error or run.message
        return str(SandboxStatus.CRASHED), f"Running your network failed ({run.status}): {detail[:500]}"
    try:
        predictions = checked_predictions(reply.get("predictions"), count)
    except ValueError:
        return str(SandboxStatus.CRASHED), f"Your network did not give one class 0..9 for each of the {count} images."
    trace = reply.mapping("trace") or {}
    checkpoint = reply.mapping("checkpoint") or {}
    return _Predicted(predictions, trace, checkpoint, str(reply.get("device", ""))[:200], run.isolation)


@dataclass(frozen=True, slots=True)
class _Predicted:
    """What step 2 returned, checked: the predictions, the trace of one pass, facts about the checkpoint."""

    predictions: list[int]
    trace: dict[str, Any]
    checkpoint: dict[str, Any]
    device: str
    isolation: str


def _evaluated(
    ran: _Predicted,
    testset: Cifar10TestSet,
    count: int,
    arguments: Mapping[str, Any],
    interface: ModelInterface,
    preprocessing: Mapping[str, Any],
    context: Mapping[str, Any],
) -> dict[str, Any]:
    labels = testset.labels[:count]
    return {
        "status": "evaluated",
        **context,
        **accuracy_summary(torch.tensor(ran.predictions, dtype=torch.int64), labels, testset.class_names),
        "architecture": architecture_from_trace(ran.trace),
        "trace": summarize_trace(ran.trace),
        "preprocessing": dict(preprocessing),
        "preprocessing_function": interface.describe_preprocessing(),
        "network_arguments": dict(arguments),
        "checkpoint": ran.checkpoint,
        "device": ran.device or describe_device(torch.device("cpu")),
        "torch_version": torch.__version__,
        "dataset": {"images": count, "pixels_sha256": testset.pixels_sha256},
        "isolation": ran.isolation,
    }
