"""Q1(a)–(d) code checks: the student's DataReader, ImageUtils, NetWork and Model code, run in the bubblewrap sandbox
on inputs the grader makes, judged against the grader's reference behaviour in the grader's own process.

One sandboxed run (code_checks_harness.py, beside this module) calls the student's functions stage by stage and sends
back their raw outputs; each stage module here makes its inputs and judges them:

    stage          checks                                          module
    preprocessing  parse_record, crop, flip, standardisation       code_checks_preprocessing   Q1(b)
    data_reader    load_train, load_test, split                    code_checks_data_reader     Q1(a)
    network        network_v1, network_v2                          code_checks_network         Q1(c)
    training       training_loss, batch_norm, zero_grad, checkpoint code_checks_training       Q1(d)

The result (JSON-ready, cached by code sha256 and the rubric's `code_checks:` section, see cache_key.py):

    {"status": "checked", "mode": "code_checks", "code_sha256": ..., "checks": {name: {"verdict": "correct" |
     "partial" | "incorrect" | "not_applicable", "summary": ..., "evidence": {...}}}, "preprocessing": <kind>, ...}

or, when the run itself ended badly, {"status": <SandboxStatus>, "message": ...} (timed_out, memory_limit,
resource_limit, crashed, rejected_unsafe, rejected_invalid_file), as student-code evaluations end.
The rubric's `code_check` checker (grader/checks/code.py) turns verdicts into (suggested) points.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from grader.domain.status import SandboxStatus
from grader.evaluation.cache_key import CODE_CHECKS_VERSION, SANDBOX_VERSION
from grader.evaluation.sandboxed import (
    CODE_TARGET,
    INPUT_TARGET,
    STUDENT_LIMITS,
    failed_result,
    read_student_code,
    reported_seconds,
)
from grader.evaluation.student import code_checks_data_reader as data_reader
from grader.evaluation.student import code_checks_network as network
from grader.evaluation.student import code_checks_preprocessing as preprocessing
from grader.evaluation.student import code_checks_training as training
from grader.evaluation.student.code_checks_common import INCORRECT, Verdict
from grader.evaluation.student.code_checks_spec import STAGES, CodeChecksSpec
from grader.evaluation.student.student_mode import harness_files
from grader.sandbox.archive import code_sha256, write_files
from grader.sandbox.bwrap import Bind
from grader.sandbox.limits import MIB, SandboxLimits
from grader.sandbox.protocol import Reply
from grader.sandbox.runner import SandboxResult, path_inside, run_folder, run_sandboxed

log = logging.getLogger(__name__)

MODE = "code_checks"
HERE = Path(__file__).parent
HARNESSES = (HERE / "harness.py", HERE / "code_checks_harness.py")
STUBS = {"tqdm.py": "def tqdm(iterable=None, *args, **kwargs):\n    return iterable\n\n\ntrange = range\n"}
"""Modules the starter code imports that the grader's Python may lack: inert stand-ins, found only when missing
(they come after the student's folder and site-packages on sys.path). The starter's Model.py imports tqdm."""
CHECKS = {
    "preprocessing": ("parse_record", "crop", "flip", "standardisation"),
    "data_reader": ("load_train", "load_test", "split"),
    "network": ("network_v1", "network_v2"),
    "training": ("training_loss", "batch_norm", "zero_grad", "checkpoint"),
}
NOT_APPLICABLE = "not_applicable"
MIN_RESULT_BYTES = 32 * MIB
"""The preprocessing stage alone sends 256 outputs of 3072 float64 values (about 8 MB in base64)."""


@dataclass
class _Prepared:
    """A stage's part of the job (paths as the sandbox sees them) and how to judge what comes back."""

    job: dict[str, Any]
    judge: Callable[[Any], dict[str, dict[str, Any]]]


def run_code_checks(
    code_dir: Path,
    spec: CodeChecksSpec,
    *,
    limits: SandboxLimits,
    stages: tuple[str, ...] = STAGES,
) -> dict[str, Any]:
    """Run the code checks of `stages` on the student's folder; the JSON-ready result described above.

    Raises SandboxUnavailable (an InfrastructureError) when no sandbox can be made here: student code is never run
    unsandboxed (except in insecure development mode)."""
    limits = replace(limits, max_result_bytes=max(limits.max_result_bytes, MIN_RESULT_BYTES))
    context: dict[str, Any] = {
        "mode": MODE,
        "code_checks_version": CODE_CHECKS_VERSION,
        "sandbox_version": SANDBOX_VERSION,
    }
    files = read_student_code(code_dir)
    if isinstance(files, tuple):
        return failed_result(*files, context)
    context["code_sha256"] = code_sha256(files)
    context["files"] = [name for name, _ in files][:50]
    started = time.perf_counter()
    rng = np.random.default_rng()
    with run_folder() as work:
        code, inputs = Bind(work / "code", CODE_TARGET), Bind(work / "input", INPUT_TARGET)
        write_files(files, code.source)
        write_files(harness_files(*HARNESSES), inputs.source)
        write_files([(name, text.encode()) for name, text in STUBS.items()], inputs.source / "stubs")
        inside = path_inside(inputs)
        prepared = {stage: PREPARE[stage](inputs.source, inside, rng, spec) for stage in stages}
        job = {
            "code_dir": path_inside(code),
            "stubs": f"{inside}/stubs",
            "threads": limits.threads,
            "stage_seconds": spec.stage_seconds,
            "checks": {stage: item.job for stage, item in prepared.items()},
        }
        (inputs.source / "job.json").write_text(json.dumps(job))
        (inputs.source / "job.json").chmod(0o644)
        command = [sys.executable, "-B", f"{inside}/code_checks_harness.py", f"{inside}/job.json"]
        run = run_sandboxed(command, binds=[code, inputs], limits=limits, gpu=False)
    log.info("code checks of %s: %s in %.1f s", context["code_sha256"][:12], run.status, run.wall_seconds)
    payload = _payload(run)
    if isinstance(payload, tuple):
        return failed_result(*payload, context, run)
    checks: dict[str, dict[str, Any]] = {}
    for stage, item in prepared.items():
        checks |= item.judge(payload.get(stage))
    result = {"status": "checked", **context, "checks": checks, "sandbox": run.evidence()}
    test_kind = checks.get("standardisation", {}).get("evidence", {}).get("test_preprocessing")
    if test_kind is not None:
        result["preprocessing"] = test_kind
    result["seconds"] = {"total": round(time.perf_counter() - started, 3), **_harness_seconds(run.payload)}
    return result


def _payload(run: SandboxResult) -> Mapping[str, Any] | tuple[SandboxStatus, str]:
    if run.status in STUDENT_LIMITS:
        return run.status, f"Running your code {run.message}."
    if run.status is not SandboxStatus.OK:
        return run.status, f"Running your code: it {run.message}."
    reply = Reply.read(run.payload)
    checks = reply.mapping("checks")
    if reply.status != "checked" or checks is None:
        return SandboxStatus.CRASHED, "Running your code ended without a result (did it call exit()?)."
    return checks


def _harness_seconds(payload: Any) -> dict[str, float]:
    info = payload.get("info") if isinstance(payload, Mapping) else None
    return reported_seconds(info.get("seconds") if isinstance(info, Mapping) else None)


def _write(folder: Path, name: str, data: bytes) -> None:
    path = folder / name
    with open(path, "xb") as handle:
        handle.write(data)
    path.chmod(0o644)


def _stage_failed(stage: str, outputs: Any) -> dict[str, dict[str, Any]] | None:
    """Every check of `stage` as incorrect when the whole stage failed (a module missing, a timeout)."""
    if not isinstance(outputs, Mapping) or ("outputs" not in outputs and "error" not in outputs):
        verdict = Verdict(INCORRECT, f"The {stage} checks did not run: nothing came back.")
        return {name: verdict.to_json() for name in CHECKS[stage]}
    if "error" in outputs:
        error = outputs["error"] if isinstance(outputs["error"], Mapping) else {}
        stage_text, message = str(error.get("stage", ""))[:300], str(error.get("message", ""))[:1500]
        text = message if error.get("kind") == "missing_module" else f"Failed while {stage_text}: {message}"
        if error.get("kind") == "timed_out":
            text = f"The {stage} checks {message}: the stage was stopped."
        return {name: Verdict(INCORRECT, text).to_json() for name in CHECKS[stage]}
    return None


# ---------------------------------------------------------------------------------------------- (b)


def _prepare_preprocessing(folder: Path, inside: str, rng: np.random.Generator, spec: CodeChecksSpec) -> _Prepared:
    from grader.evaluation.student.student_mode import probe_images

    section = spec["preprocessing"]
    probes = np.concatenate([preprocessing.picture()[None], probe_images(rng)])
    image = probe_images(rng)[0].transpose(1, 2, 0).copy()
    seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=int(section["seeds"]))]
    _write(folder, "records.u8", probes.reshape(len(probes), 3072).tobytes())
    _write(folder, "images.u8", np.ascontiguousarray(probes.transpose(0, 2, 3, 1)).tobytes())
    _write(folder, "augmented.u8", image.tobytes())
    job = {
        "module": section["module"],
        "parse_record": section["parse_record"],
        "preprocess_image": section["preprocess_image"],
        "record_dtype": section["record_dtype"],
        "count": len(probes),
        "records": f"{inside}/records.u8",
        "images": f"{inside}/images.u8",
        "augmented": f"{inside}/augmented.u8",
        "seeds": seeds,
    }

    def judge(outputs: Any) -> dict[str, dict[str, Any]]:
        failed = _stage_failed("preprocessing", outputs)
        if failed is not None:
            return failed
        found = outputs["outputs"] if isinstance(outputs["outputs"], Mapping) else {}
        parse_name = f"{section['module']}.{section['parse_record']}(record, False)"
        process_name = f"{section['module']}.{section['preprocess_image']}"
        parse, parse_kind = preprocessing.judge_parse_record(found.get("parse_record"), probes, function=parse_name)
        layout = "chw" if found.get("layout") == "chw" else "hwc"
        test_kind, why = preprocessing.judge_test_time(found.get("test_time"), probes, layout, function=process_name)
        if test_kind is None and parse_kind is not None and parse.verdict != INCORRECT:
            test_kind, why = parse_kind, ""
        augmentation = preprocessing.judge_augmentation(
            found.get("augment"),
            image,
            layout,
            seeds,
            test_kind=test_kind,
            false_alarm_rate=float(section["false_alarm_rate"]),
            function=process_name,
        )
        standardisation = preprocessing.judge_standardisation(test_kind, why, augmentation, function=process_name)
        return {
            "parse_record": parse.to_json(),
            "crop": augmentation.crop.to_json(),
            "flip": augmentation.flip.to_json(),
            "standardisation": standardisation.to_json(),
        }

    return _Prepared(job, judge)


# ---------------------------------------------------------------------------------------------- (a)


def _prepare_data_reader(folder: Path, inside: str, rng: np.random.Generator, spec: CodeChecksSpec) -> _Prepared:
    section = spec["data_reader"]
    written = data_reader.write_folder(folder / "data", rng, int(section["records_per_batch"]))
    count = written.x_train.shape[0]
    split_index = count - int(section["records_per_batch"])
    _write(folder, "split_x.u8", written.x_train.tobytes())
    _write(folder, "split_y.u8", written.y_train.astype(np.uint8).tobytes())
    job = {
        "module": section["module"],
        "function": section["function"],
        "split_functions": list(section["split_functions"]),
        # With the trailing slash, data_dir + "data_batch_1" works as well as os.path.join(data_dir, ...).
        "data_dir": f"{inside}/data/{data_reader.BATCHES_FOLDER}/",
        "x_train": f"{inside}/split_x.u8",
        "y_train": f"{inside}/split_y.u8",
        "train_count": count,
        "split_index": split_index,
    }

    def judge(outputs: Any) -> dict[str, dict[str, Any]]:
        failed = _stage_failed("data_reader", outputs)
        if failed is not None:
            return failed
        found = outputs["outputs"] if isinstance(outputs["outputs"], Mapping) else {}
        train, test = data_reader.judge_load(
            found.get("load"), written, function=f"{section['module']}.{section['function']}"
        )
        checks = {"load_train": train.to_json(), "load_test": test.to_json()}
        if "split" in found:
            split = data_reader.judge_split(found["split"], written.x_train, written.y_train, function="the split")
            checks["split"] = split.to_json()
        else:
            names = " or ".join(section["split_functions"])
            checks["split"] = {"verdict": NOT_APPLICABLE, "summary": f"DataReader.py has no {names}.", "evidence": {}}
        return checks

    return _Prepared(job, judge)


# ---------------------------------------------------------------------------------------------- (c)


def _prepare_network(folder: Path, inside: str, rng: np.random.Generator, spec: CodeChecksSpec) -> _Prepared:
    section = spec["network"]
    versions, sizes = list(section["versions"]), list(section["sizes"])
    calls = network.builds(versions, sizes, int(section["num_classes"]), int(section["first_num_filters"]))
    _write(folder, "network_input.f4", rng.normal(size=(2, 3, 32, 32)).astype("<f4").tobytes())
    job = {
        "module": section["module"],
        "factory": section["factory"],
        "builds": calls,
        "input": f"{inside}/network_input.f4",
    }

    def judge(outputs: Any) -> dict[str, dict[str, Any]]:
        failed = _stage_failed("network", outputs)
        if failed is not None:
            return failed
        function = f"{section['module']}.{section['factory']}"
        found = outputs["outputs"]
        return {
            f"network_v{version}": network.judge_network(found, version, calls, function=function).to_json()
            for version in (1, 2)
            if version in versions
        }

    return _Prepared(job, judge)


# ---------------------------------------------------------------------------------------------- (d)


def _prepare_training(folder: Path, inside: str, rng: np.random.Generator, spec: CodeChecksSpec) -> _Prepared:
    section = spec["training"]
    data = training.make_data(rng, int(section["records"]), int(section["classes"]))
    _write(folder, "train_x.u8", data.x.tobytes())
    _write(folder, "train_y.u8", data.y.tobytes())
    _write(folder, "train_batch.f4", data.reference_batch.astype("<f4").tobytes())
    preprocess = spec["preprocessing"]
    job = {
        **{key: section[key] for key in ("module", "class", "train", "test", "network_attribute", "epochs", "records")},
        "config": section["config"],
        "defaults": dict(section["defaults"]),
        # A relative folder: under the sandbox's private /tmp (its working directory), whatever the isolation.
        "overrides": {**dict(section["overrides"]), "modeldir": "grader-checkpoints"},
        "preprocess_module": preprocess["module"],
        "parse_record": preprocess["parse_record"],
        "x_train": f"{inside}/train_x.u8",
        "y_train": f"{inside}/train_y.u8",
        "batch": f"{inside}/train_batch.f4",
    }

    def judge(outputs: Any) -> dict[str, dict[str, Any]]:
        failed = _stage_failed("training", outputs)
        if failed is not None:
            return failed
        return training.judge_training(outputs["outputs"], data, spec=section).to_json()

    return _Prepared(job, judge)


PREPARE: dict[str, Callable[[Path, str, np.random.Generator, CodeChecksSpec], _Prepared]] = {
    "preprocessing": _prepare_preprocessing,
    "data_reader": _prepare_data_reader,
    "network": _prepare_network,
    "training": _prepare_training,
}
