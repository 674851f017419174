"""A checkpoint's weight summary for integrity checks (see grader/evaluation/similarity.py for what it holds).

Run as `python -m grader.evaluation.fingerprint_child JOB.json` in a sandboxed child (grader/evaluation/fingerprint.py):
like an evaluation, it parses uploaded files with the weights-only loader, which never happens in the API's or
the worker's own process. The job lists the checkpoints' sha256 (each also a key naming its file); one reply goes
to the result pipe (grader/sandbox/protocol.py):

    {"status": "summarized", "results": {sha256: {"status": "summarized", ...} | {"status": "rejected", ...}}}
    {"status": "error", "kind": "memory", "message": ...}
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grader.evaluation.checkpoint import CheckpointRejected, LoadedCheckpoint, parse_checkpoint
from grader.evaluation.similarity import BUCKET_HASH, HASH_PRIME, SIGN_HASH, SKETCH_SIZE, Layer, WeightSummary
from grader.sandbox import protocol


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over each tensor's name, dtype, shape and raw bytes, in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        raw = tensor.reshape(-1).view(torch.uint8).numpy().tobytes()
        header = json.dumps([name, str(tensor.dtype).removeprefix("torch."), list(tensor.shape), len(raw)])
        digest.update(header.encode("utf-8") + b"\n")
        digest.update(raw)
    return digest.hexdigest()


def sketch(tensor: torch.Tensor) -> np.ndarray | None:
    """The tensor's values centred on their mean as a unit vector of SKETCH_SIZE (see similarity.py); None for a
    constant tensor or one with a NaN or an infinity (no correlation is defined)."""
    values = tensor.detach().cpu().reshape(-1).to(torch.float64)
    if values.numel() < 2 or not bool(torch.isfinite(values).all()):
        return None
    centred = values - values.mean()
    if centred.numel() <= SKETCH_SIZE:
        vector = torch.zeros(SKETCH_SIZE, dtype=torch.float64)
        vector[: centred.numel()] = centred
    else:
        position = torch.arange(centred.numel(), dtype=torch.int64)
        bucket = (BUCKET_HASH[0] * position + BUCKET_HASH[1]) % HASH_PRIME % SKETCH_SIZE
        sign = 1 - 2 * ((SIGN_HASH[0] * position + SIGN_HASH[1]) % HASH_PRIME % 2)
        vector = torch.zeros(SKETCH_SIZE, dtype=torch.float64).index_add_(0, bucket, centred * sign)
    norm = float(vector.norm())
    if norm == 0.0:
        return None
    return (vector / norm).to(torch.float32).numpy()


def summarize(checkpoint: LoadedCheckpoint) -> WeightSummary:
    """The checkpoint's tensor hash and a sketch of each weight tensor (floating, two or more dimensions)."""
    layers: dict[str, Layer] = {}
    for name, tensor in checkpoint.tensors.items():
        if tensor.ndim < 2 or not tensor.is_floating_point():
            continue
        vector = sketch(tensor)
        if vector is not None:
            layers[name] = Layer(tuple(tensor.shape), vector)
    return WeightSummary(tensors_sha256(checkpoint.tensors), layers)


def summarize_file(data: bytes, sha256: str) -> dict[str, Any]:
    """JSON-ready: the summary, or `{"status": "rejected", "message"}` for a file that is not a checkpoint."""
    try:
        checkpoint = parse_checkpoint(data, sha256=sha256, device=torch.device("cpu"))
    except CheckpointRejected as exc:
        return protocol.rejected(exc.message)
    return summarize(checkpoint).to_json()


def run_job(job: Mapping[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(int(job["threads"]))
    results = {sha256: summarize_file(Path(job[sha256]).read_bytes(), sha256) for sha256 in job["checkpoints"]}
    return {"status": "summarized", "results": results}


def main(argv: list[str]) -> int:
    with protocol.result_channel() as channel:
        try:
            reply = run_job(json.loads(Path(argv[1]).read_text()))
        except MemoryError:
            reply = protocol.error("memory", "MemoryError")
        protocol.send(channel, reply)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
