"""Evaluating one checkpoint on the CIFAR-10 test set: load, map onto the reference, predict, summarise.

The pieces run in whichever process loads the file: for uploads, always a sandboxed child (grader/evaluation/
child.py, started by grader.evaluation.reference_mode, which scores with `best_run` and `summarize`).
`evaluate_in_process` runs everything in the calling process: for trusted files only (tests, benchmarks).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from grader.errors import InfrastructureError
from grader.evaluation.architecture import InferredNetwork, infer_network
from grader.evaluation.cache_key import EVALUATOR_VERSION, evaluation_cache_key
from grader.evaluation.checkpoint import (
    CheckpointRejected,
    LoadedCheckpoint,
    parse_checkpoint,
    read_file,
    read_safetensors_header,
    sniff_format,
)
from grader.evaluation.cifar import Cifar10TestSet, load_cifar10_test
from grader.evaluation.preprocessing import normalize_preprocessing
from grader.evaluation.resnet import CifarResNet, ForwardVariant, ResNetSpec, applicable_variants
from grader.evaluation.transforms import Preprocess

log = logging.getLogger(__name__)

VARIANT_RETRY_BELOW_PERCENT = 90.0
"""Below this, forward-pass choices the weights cannot reveal are tried too and the best one is kept."""
VARIANT_MIN_GAIN_PERCENT = 5.0
"""An alternative must beat the default by this much: near chance, differences are noise."""
GPU_BATCH_SIZE = 2500
CPU_ACTIVATION_BUDGET_BYTES = 8 * 1024 * 1024
"""CPU batches are sized so the largest activation stays cache-friendly (measured: 128 images for a
ResNet-20, 32 for a bottleneck ResNet; batches of 1000 run 2–3× slower on 2 cores)."""
RESULT_CACHE_SIZE = 64


class ResultCache:
    """The latest results of this process by key; copies go in and out, so callers may add to what they get."""

    def __init__(self, size: int = RESULT_CACHE_SIZE) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._results: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()

    def get(self, key: tuple[Any, ...]) -> dict[str, Any] | None:
        with self._lock:
            if key not in self._results:
                return None
            self._results.move_to_end(key)
            return copy.deepcopy(self._results[key])

    def clear(self) -> None:
        with self._lock:
            self._results.clear()

    def put(self, key: tuple[Any, ...], result: dict[str, Any]) -> None:
        with self._lock:
            self._results[key] = copy.deepcopy(result)
            while len(self._results) > self._size:
                self._results.popitem(last=False)


_RESULTS = ResultCache()


def evaluate_in_process(
    path: str | Path,
    *,
    label: str | None = None,
    preprocessing: Mapping[str, Any] | str,
    cifar10_root: str | Path | None,
    device: str | torch.device | None = None,
    limit: int | None = None,
    variants: Sequence[ForwardVariant] | None = None,
) -> dict[str, Any]:
    """JSON-ready result, {"status": "evaluated", ...} or {"status": "rejected", "message": ...}.

    `label` only names the checkpoint in log lines: results are cached without it. `limit` (the first N
    images) and `variants` (forward-pass choices to try, in order) are for tests and benchmarks.
    Raises InfrastructureError when the data set or the uploaded file cannot be read.
    """
    if cifar10_root is None:
        raise InfrastructureError("GRADER_CIFAR10_ROOT is not set: the folder holding cifar-10-batches-py/")
    target = pick_device(device)
    spec = normalize_preprocessing(preprocessing)
    testset = load_cifar10_test(cifar10_root, target)
    data, sha256 = read_file(path)
    key = (evaluation_cache_key(sha256, spec), str(target), testset.source, limit, tuple(variants or ()))
    cached = _RESULTS.get(key)
    if cached is not None:
        return cached
    result = _evaluate_bytes(data, sha256, spec, testset, target, limit, variants)
    log.info("evaluated %s checkpoint %s: %s", label or "a", sha256[:12], result.get("accuracy_percent", "rejected"))
    _RESULTS.put(key, result)
    return result


def pick_device(device: str | torch.device | None) -> torch.device:
    """The requested device, else the GPU when there is one."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(slots=True)
class ReferenceModel:
    """A checkpoint loaded and mapped onto the reference family, ready to predict."""

    checkpoint: LoadedCheckpoint
    network: InferredNetwork
    state: dict[str, torch.Tensor]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a file cannot be evaluated (for the student), and its architecture when it was inferred first."""

    message: str
    architecture: dict[str, Any] | None = None


def load_reference(data: bytes, sha256: str, device: torch.device) -> ReferenceModel | Rejection:
    """Load `data` weights-only, infer its architecture and map its tensors onto the reference model."""
    network: InferredNetwork | None = None
    try:
        if sniff_format(data) == "safetensors":
            # The structure is checked from the header alone, before any tensor data is materialised.
            infer_network(read_safetensors_header(data))
        checkpoint = parse_checkpoint(data, sha256=sha256, device=device)
        network = infer_network(checkpoint.tensors)
        return ReferenceModel(checkpoint, network, reference_state(network, checkpoint.tensors))
    except CheckpointRejected as exc:
        return Rejection(exc.message, network.describe() if network is not None else None)


def predict_variants(
    model: ReferenceModel,
    images: torch.Tensor,
    preprocessing: dict[str, Any],
    device: torch.device,
    variants: Sequence[ForwardVariant],
) -> Iterator[tuple[ForwardVariant, torch.Tensor]]:
    """Predictions of the reference model under each forward-pass variant in turn (lazily: callers may stop)."""
    batch_size, memory_format = execution_settings(model.network.spec, device)
    # One layout change for the whole set, so per-batch preprocessing already yields the model's layout.
    images = images.contiguous(memory_format=memory_format)
    preprocess = Preprocess(preprocessing, device)
    for variant in variants:
        network = build_reference_model(model.network.spec, model.state, variant).to(memory_format=memory_format)
        yield variant, predict(network, images, preprocess, batch_size=batch_size, memory_format=memory_format)


Run = tuple[ForwardVariant, int, torch.Tensor]
"""(variant, correct predictions, predictions)."""


def reached_target(correct: int, total: int) -> bool:
    """Whether a run scores well enough that no further forward-pass variant is tried."""
    return 100.0 * correct / total >= VARIANT_RETRY_BELOW_PERCENT


def best_run(runs: Sequence[Run]) -> Run:
    """The default run, unless an alternative beats it clearly."""
    default, total = runs[0], runs[0][2].shape[0]
    best = max(runs, key=lambda run: run[1])  # max() keeps the earliest on ties
    return best if 100.0 * (best[1] - default[1]) / total >= VARIANT_MIN_GAIN_PERCENT else default


def _evaluate_bytes(
    data: bytes,
    sha256: str,
    preprocessing: dict[str, Any],
    testset: Cifar10TestSet,
    device: torch.device,
    limit: int | None,
    variants: Sequence[ForwardVariant] | None,
) -> dict[str, Any]:
    started = time.perf_counter()
    model = load_reference(data, sha256, device)
    if isinstance(model, Rejection):
        return rejected(model.message, sha256, len(data), model.architecture)
    loaded = time.perf_counter()
    labels = testset.labels[:limit]
    runs: list[Run] = []
    try:
        tried = variants or applicable_variants(model.network.spec)
        for variant, predictions in predict_variants(model, testset.images[:limit], preprocessing, device, tried):
            runs.append((variant, int((predictions == labels).sum()), predictions))
            if reached_target(runs[-1][1], len(labels)):
                break
    except torch.OutOfMemoryError as exc:  # a busy or small card: worth a retry, not the student's fault
        raise InfrastructureError(f"out of memory on {device} while evaluating: {exc}") from exc
    result = summarize(
        best_run(runs),
        runs,
        testset,
        checkpoint=model.checkpoint.describe(),
        architecture=model.network.describe(),
        preprocessing=preprocessing,
        device=describe_device(device),
    )
    result["seconds"] = {
        "load": round(loaded - started, 3),
        "inference": round(time.perf_counter() - loaded, 3),
        "total": round(time.perf_counter() - started, 3),
    }
    return result


def execution_settings(spec: ResNetSpec, device: torch.device) -> tuple[int, torch.memory_format]:
    """Batch size and memory layout: channels-last convolutions are about 1.5× faster on CPU (oneDNN)."""
    if device.type == "cuda":
        return GPU_BATCH_SIZE, torch.contiguous_format
    batch = CPU_ACTIVATION_BUDGET_BYTES // _largest_activation_bytes(spec)
    return max(16, min(1000, batch)), torch.channels_last


def _largest_activation_bytes(spec: ResNetSpec) -> int:
    """fp32 bytes per image of the widest feature map (stage s works at 32/2^s pixels per side)."""
    largest = spec.stem.out_channels * 32 * 32
    for s, stage in enumerate(spec.stages()):
        area = (32 >> s) ** 2
        largest = max(largest, *(max(spec.blocks[i].width, spec.blocks[i].out_channels) * area for i in stage))
    return 4 * largest


def reference_state(network: InferredNetwork, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The reference model's full state dict (fp32) from the student's tensors; rejects non-finite values."""
    state: dict[str, torch.Tensor] = {}
    for target, source in network.mapping.items():
        tensor = tensors[source]
        if target.endswith("num_batches_tracked"):
            continue
        if not bool(torch.isfinite(tensor).all()):
            raise CheckpointRejected(
                f"tensor {source} contains NaN or infinite values (did training diverge?); "
                "the checkpoint cannot be evaluated"
            )
        if target.endswith("running_var") and bool((tensor < 0).any()):
            raise CheckpointRejected(f"tensor {source} has negative values: a BN running variance cannot be negative")
        state[target] = tensor.to(torch.float32).contiguous()
    return state


def build_reference_model(spec: ResNetSpec, state: Mapping[str, torch.Tensor], variant: ForwardVariant) -> CifarResNet:
    """The reference model holding `state`'s tensors (no random init: built on the meta device)."""
    with torch.device("meta"):
        model = CifarResNet(spec, variant)
    device = next(iter(state.values())).device
    full = dict(state)
    for name, buffer in model.named_buffers():
        if name.endswith("num_batches_tracked"):
            full[name] = torch.zeros((), dtype=buffer.dtype, device=device)
    model.load_state_dict(full, strict=True, assign=True)
    return model.eval()


def predict(
    model: torch.nn.Module,
    images: torch.Tensor,
    preprocess: Preprocess,
    *,
    batch_size: int,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """Predicted class per image, preprocessing each batch on the device; one host sync at the end."""
    predictions = torch.empty(images.shape[0], dtype=torch.int64, device=images.device)
    with torch.inference_mode(), exact_fp32(images.device):
        for start in range(0, images.shape[0], batch_size):
            batch = preprocess(images[start : start + batch_size]).contiguous(memory_format=memory_format)
            predictions[start : start + batch_size] = model(batch).argmax(dim=1)
    return predictions


@contextmanager
def exact_fp32(device: torch.device) -> Iterator[None]:
    """TF32 off and deterministic cuDNN on a GPU, so results match fp32 on any card; restored afterwards."""
    if device.type != "cuda":
        yield
        return
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[0], saved[1]
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


def summarize(
    best: Run,
    runs: Sequence[Run],
    testset: Cifar10TestSet,
    *,
    checkpoint: dict[str, Any],
    architecture: dict[str, Any],
    preprocessing: dict[str, Any],
    device: str,
) -> dict[str, Any]:
    """The evaluated result: accuracy against the grader's own labels, and the evidence."""
    variant, _, predictions = best
    total = int(predictions.shape[0])
    result: dict[str, Any] = {
        "status": "evaluated",
        "evaluator_version": EVALUATOR_VERSION,
        **accuracy_summary(predictions, testset.labels[:total].to(predictions.device), testset.class_names),
        "architecture": architecture,
        "preprocessing": preprocessing,
        "checkpoint_sha256": checkpoint["sha256"],
        "checkpoint": checkpoint,
        "forward_variant": variant.to_json(),
        "device": device,
        "torch_version": torch.__version__,
        "dataset": {"images": total, "pixels_sha256": testset.pixels_sha256},
    }
    if len(runs) > 1:
        result["variants_tried"] = [
            {"variant": v.to_json(), "accuracy_percent": round(100.0 * c / total, 2)} for v, c, _ in runs
        ]
    return result


def accuracy_summary(predictions: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-class accuracy and the confusion matrix (rows: true class) of predicted class indices 0..9."""
    total = int(labels.shape[0])
    correct = int((predictions == labels).sum())
    confusion = torch.bincount(labels * 10 + predictions, minlength=100).view(10, 10).cpu()
    per_class = confusion.diagonal().double() / confusion.sum(dim=1).clamp_min(1).double()
    return {
        "accuracy_percent": round(100.0 * correct / total, 2),
        "correct": correct,
        "total": total,
        "per_class_accuracy_percent": {
            name: round(100.0 * float(value), 2) for name, value in zip(class_names, per_class, strict=True)
        },
        "confusion_matrix": confusion.tolist(),
        "class_names": list(class_names),
    }


def rejected(message: str, sha256: str, size: int, architecture: dict[str, Any] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "status": "rejected",
        "message": message,
        "evaluator_version": EVALUATOR_VERSION,
        "checkpoint_sha256": sha256,
        "checkpoint": {"sha256": sha256, "bytes": size},
        "torch_version": torch.__version__,
    }
    if architecture is not None:
        result["architecture"] = architecture
    return result


def describe_device(device: torch.device) -> str:
    """The device in words; no thread counts, so the same evaluation reads the same in every process."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return "cpu"
