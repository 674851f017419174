"""The reference-mode evaluation child: loads one uploaded checkpoint and predicts, in a process of its own.

Run as `python -m grader.evaluation.child JOB.json`, inside the sandbox (see grader/sandbox/reference_mode.py).
Uploaded checkpoints are untrusted: even a weights-only load is a parser facing hostile bytes, so it never
happens in the API or the worker's own process. The job names the checkpoint, the test images as raw uint8
records WITHOUT labels, the preprocessing, the device and which forward-pass variants to run. Exactly one JSON
document goes to the result pipe (`$GRADER_RESULT_FD`):

    {"status": "predicted", "checkpoint": {...}, "architecture": {...}, "device": ..., "variants_left": int,
     "runs": [{"variant": {...}, "predictions": [int, ...]}, ...], "seconds": {...}}
    {"status": "rejected", "message": ..., "architecture": {...} | null}        not a usable checkpoint
    {"status": "error", "kind": "memory" | "device_memory", "message": ...}     a limit was hit

The parent scores the predictions against its own labels: nothing this process writes can set an accuracy.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grader.evaluation.evaluate import Rejection, describe_device, load_reference, predict_variants
from grader.evaluation.preprocessing import normalize_preprocessing
from grader.evaluation.resnet import applicable_variants

RESULT_FD_ENV = "GRADER_RESULT_FD"
RECORD_BYTES = 3 * 32 * 32
VARIANTS = ("default", "alternatives")
"""Which variants a job runs: the first applicable one, or all the others (after a low default score)."""


def main(argv: list[str]) -> int:
    result_fd = int(os.environ[RESULT_FD_ENV])
    with os.fdopen(result_fd, "wb") as result:
        try:
            payload = run_job(json.loads(Path(argv[1]).read_text()))
        except torch.OutOfMemoryError as exc:
            payload = {"status": "error", "kind": "device_memory", "message": str(exc)[:1000]}
        except MemoryError:
            payload = {"status": "error", "kind": "memory", "message": "MemoryError"}
        result.write(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
    return 0


def run_job(job: Mapping[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    torch.set_num_threads(int(job["threads"]))
    device = torch.device(str(job["device"]))
    data = Path(job["checkpoint"]).read_bytes()
    model = load_reference(data, str(job["checkpoint_sha256"]), device)
    if isinstance(model, Rejection):
        return {"status": "rejected", "message": model.message, "architecture": model.architecture}
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


def read_images(path: Path, count: int, device: torch.device) -> torch.Tensor:
    """The first `count` test images, uint8 [count, 3, 32, 32], from the raw records file."""
    raw = np.fromfile(path, dtype=np.uint8, count=count * RECORD_BYTES)
    if raw.size != count * RECORD_BYTES:
        raise ValueError(f"{path} holds {raw.size // RECORD_BYTES} images, not {count}")
    return torch.from_numpy(raw).view(count, 3, 32, 32).to(device)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
