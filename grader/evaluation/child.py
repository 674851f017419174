"""The evaluation child: loads one uploaded checkpoint and predicts, in a process of its own.

Run as `python -m grader.evaluation.child JOB.json`, inside the sandbox (see grader/evaluation/reference_mode.py).
Uploaded checkpoints are untrusted: even a weights-only load is a parser facing hostile bytes, so it never
happens in the API or the worker's own process. The job names the checkpoint, the test images as raw uint8
records WITHOUT labels, the preprocessing, the device and which forward-pass variants to run. Exactly one JSON
reply goes to the result pipe (grader/sandbox/protocol.py):

    {"status": "predicted", "checkpoint": {...}, "architecture": {...}, "device": ..., "variants_left": int,
     "runs": [{"variant": {...}, "predictions": [int, ...]}, ...], "seconds": {...}}
    {"status": "rejected", "message": ..., "architecture": {...} | null}        not a usable checkpoint
    {"status": "error", "kind": "memory" | "device_memory", "message": ...}     a limit was hit

A job with a `program` (student-code mode, grader/evaluation/program.py) runs the graph the student's code
exported instead of the reference family, with the checkpoint's tensors, and also records one traced pass:

    {"status": "predicted", "checkpoint": {...}, "device": ..., "predictions": [int, ...], "trace": {...}, ...}
    {"status": "rejected", "message": ..., "cause": "checkpoint" | "weights" | "program"}

No student code runs here. The parent scores the predictions against its own labels: nothing this process
writes can set an accuracy.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grader.evaluation.checkpoint import CheckpointRejected, parse_checkpoint
from grader.evaluation.evaluate import Rejection, describe_device, exact_fp32, load_reference, predict_variants
from grader.evaluation.preprocessing import normalize_preprocessing
from grader.evaluation.program import Program, ProgramRejected, WeightsMismatch
from grader.evaluation.resnet import applicable_variants
from grader.evaluation.transforms import Preprocess
from grader.sandbox import protocol

RECORD_BYTES = 3 * 32 * 32
VARIANTS = ("default", "alternatives")
"""Which variants a job runs: the first applicable one, or all the others (after a low default score)."""


def warm_up() -> None:
    """Called once by the warm sandbox's server (grader/sandbox/warm.py) before it forks any run: a pass of the
    common networks (ResNet v1 basic and v2 bottleneck, the evaluator's batch and layout) on random data, on one
    thread, so every forked child starts with oneDNN's kernels for those shapes built. No upload is involved."""
    from grader.evaluation.evaluate import execution_settings
    from grader.evaluation.resnet import CifarResNet, make_spec

    torch.set_num_threads(1)  # no OpenMP thread team in the server: a forked child builds its own
    for activation, kind in (("post", "basic"), ("pre", "bottleneck")):
        spec = make_spec(activation=activation, kind=kind, blocks_per_stage=3)
        batch, layout = execution_settings(spec, torch.device("cpu"))
        network = CifarResNet(spec).eval().to(memory_format=layout)
        with torch.inference_mode():
            network(torch.rand(batch, 3, 32, 32).contiguous(memory_format=layout))
            network(torch.rand(10_000 % batch or batch, 3, 32, 32).contiguous(memory_format=layout))


def main(argv: list[str]) -> int:
    with protocol.result_channel() as channel:
        try:
            reply = run_job(json.loads(Path(argv[1]).read_text()))
        except torch.OutOfMemoryError as exc:
            reply = protocol.error("device_memory", str(exc)[:1000])
        except MemoryError:
            reply = protocol.error("memory", "MemoryError")
        protocol.send(channel, reply)
    return 0


def run_job(job: Mapping[str, Any]) -> dict[str, Any]:
    if job.get("program"):
        return run_program_job(job)
    started = time.perf_counter()
    torch.set_num_threads(int(job["threads"]))
    device = torch.device(str(job["device"]))
    data = Path(job["checkpoint"]).read_bytes()
    model = load_reference(data, str(job["checkpoint_sha256"]), device)
    if isinstance(model, Rejection):
        return protocol.rejected(model.message, architecture=model.architecture)
    loaded = time.perf_counter()
    variants = applicable_variants(model.network.spec)
    selected = variants[:1] if job["variants"] == "default" else variants[1:]
    images = read_images(Path(job["images"]), int(job["count"]), device)
    preprocessing = normalize_preprocessing(job["preprocessing"])
    runs = [
        {"variant": variant.to_json(), "predictions": predictions.tolist()}
        for variant, predictions in predict_variants(model, images, preprocessing, device, selected)
    ]
    return {
        "status": "predicted",
        "checkpoint": model.checkpoint.describe(),
        "architecture": model.network.describe(),
        "device": describe_device(device),
        "variants_left": len(variants) - 1 if job["variants"] == "default" else 0,
        "runs": runs,
        "seconds": {
            "load": round(loaded - started, 3),
            "inference": round(time.perf_counter() - loaded, 3),
        },
    }


def run_program_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """The student's exported graph with the checkpoint's tensors, on the grader's preprocessing of the images."""
    started = time.perf_counter()
    torch.set_num_threads(int(job["threads"]))
    device = torch.device(str(job["device"]))
    data = Path(job["checkpoint"]).read_bytes()
    try:
        checkpoint = parse_checkpoint(data, sha256=str(job["checkpoint_sha256"]), device=torch.device("cpu"))
    except CheckpointRejected as exc:
        return protocol.rejected(exc.message, cause="checkpoint")
    try:
        program = Program.from_json(json.loads(Path(job["program"]).read_text()))
        network = program.bind(checkpoint.tensors, checkpoint.stripped_prefix).to(device)
        loaded = time.perf_counter()
        images = read_images(Path(job["images"]), int(job["count"]), device)
        preprocess = Preprocess(normalize_preprocessing(job["preprocessing"]), device)
        with torch.inference_mode(), exact_fp32(device):
            trace = network.trace(_padded(preprocess(images[:2]), program.fixed_batch))
            predictions = _predict_program(network, images, preprocess, int(job["batch_size"]), program.fixed_batch)
    except ProgramRejected as exc:
        cause = "weights" if isinstance(exc, WeightsMismatch) else "program"
        return protocol.rejected(exc.message, cause=cause)
    return {
        "status": "predicted",
        "checkpoint": checkpoint.describe(),
        "device": describe_device(device),
        "predictions": predictions,
        "trace": trace,
        "seconds": {"load": round(loaded - started, 3), "inference": round(time.perf_counter() - loaded, 3)},
    }


def _predict_program(
    network: Any, images: torch.Tensor, preprocess: Preprocess, batch_size: int, fixed_batch: int | None
) -> list[int]:
    """Predicted classes; a graph exported for one batch size gets batches of exactly that size (last one padded)."""
    size = fixed_batch or batch_size
    predictions: list[int] = []
    for start in range(0, images.shape[0], size):
        batch = preprocess(images[start : start + size])
        logits = network(_padded(batch, fixed_batch))
        predictions += logits[: batch.shape[0]].argmax(dim=1).tolist()
    return predictions


def _padded(batch: torch.Tensor, fixed_batch: int | None) -> torch.Tensor:
    """`batch` with zero images appended up to `fixed_batch` (a graph exported for that batch size only)."""
    if not fixed_batch or batch.shape[0] >= fixed_batch:
        return batch
    return torch.cat([batch, batch.new_zeros((fixed_batch - batch.shape[0], *batch.shape[1:]))])


def read_images(path: Path, count: int, device: torch.device) -> torch.Tensor:
    """The first `count` test images, uint8 [count, 3, 32, 32], from the raw records file."""
    raw = np.fromfile(path, dtype=np.uint8, count=count * RECORD_BYTES)
    if raw.size != count * RECORD_BYTES:
        raise ValueError(f"{path} holds {raw.size // RECORD_BYTES} images, not {count}")
    return torch.from_numpy(raw).view(count, 3, 32, 32).to(device)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
