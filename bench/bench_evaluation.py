"""Benchmark of the Q1 evaluator: a ResNet-20 checkpoint on the 10,000 CIFAR-10 test images, against loops.

Compared, on 2 CPU threads (and on the GPU when there is one):
- the evaluator end to end (`evaluate_checkpoint`: read + hash the file, map it, preprocess per batch, predict);
- a bare batched loop, `model(x)` over the same test set already preprocessed into one float tensor, with a
  plain module written for these weights: once at the evaluator's batch size and memory layout (the
  evaluator's overhead) and once as a typical script writes it (NCHW, batches of 1000);
- a per-image loop, timed on the first 500 images and extrapolated to 10,000 (said in the output);
- the service's path: the same evaluation in a sandboxed child (grader.evaluation.reference_mode), started cold
  (a fresh Python and torch per run) and warm (forked from the warm server, grader/sandbox/warm.py), as ratios to
  the in-process evaluator and the bare loop, and the per-run overhead of a short job.
Targets: evaluator ≥ 0.9× the bare loops' speed and ≥ 10× the per-image loop's.

Needs GRADER_CIFAR10_ROOT; uses GRADER_TEST_CHECKPOINTS_DIR/resnet20-v1-optionA/resnet20-12fca82f.th when set,
else a randomly initialised ResNet-20 saved to a temporary file (timings are the same; accuracy is not).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from grader.evaluation import evaluate as evaluator
from grader.evaluation import reference_mode
from grader.evaluation.architecture import infer_network
from grader.evaluation.cifar import load_cifar10_test
from grader.evaluation.transforms import Preprocess
from grader.sandbox import SandboxLimits, sandbox_available
from grader.sandbox.warm import WARM_ENV
from grader.settings import Settings

THREADS = 2
PER_IMAGE_SUBSET = 500
REPEATS = 3
SHORT_JOB = 100
PREPROCESSING = {"kind": "mean_std", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


class BasicBlock(nn.Module):
    """A student's ResNet v1 block with option A shortcuts, as the checkpoint's authors wrote it."""

    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = planes // 4 if stride != 1 or cin != planes else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad)) if self.pad else x
        return F.relu(out + shortcut)


class ResNet20(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin = 16
        for i, planes in enumerate((16, 32, 64)):
            blocks = [BasicBlock(cin if b == 0 else planes, planes, 2 if i and not b else 1) for b in range(3)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = planes
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def checkpoint_path(scratch: Path) -> Path:
    folder = os.environ.get("GRADER_TEST_CHECKPOINTS_DIR")
    if folder and (path := Path(folder) / "resnet20-v1-optionA" / "resnet20-12fca82f.th").is_file():
        return path
    print("note: no trained checkpoint found; timing a randomly initialised ResNet-20")
    torch.save(ResNet20().state_dict(), scratch / "random-resnet20.pt")
    return scratch / "random-resnet20.pt"


def bare_model(path: Path, device: torch.device) -> ResNet20:
    saved = torch.load(path, map_location=device, weights_only=True)
    state = saved.get("state_dict", saved)
    model = ResNet20()
    model.load_state_dict({key.removeprefix("module."): value for key, value in state.items()})
    return model.to(device).eval()


def timed(run: Callable[[], object], device: torch.device) -> float:
    sync(device)
    started = time.perf_counter()
    run()
    sync(device)
    return time.perf_counter() - started


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batched_loop(model: nn.Module, x: torch.Tensor, batch: int, layout: torch.memory_format) -> Callable[[], object]:
    model = model.to(memory_format=layout)
    x = x.contiguous(memory_format=layout)

    def run() -> object:
        with torch.inference_mode():
            return [model(x[i : i + batch]).argmax(1) for i in range(0, x.shape[0], batch)]

    return run


def per_image_loop(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        with torch.inference_mode():
            return [int(model(x[i : i + 1]).argmax(1)) for i in range(PER_IMAGE_SUBSET)]

    return run


def evaluator_run(path: Path, root: str, device: torch.device) -> Callable[[], object]:
    def run() -> object:
        evaluator._RESULTS.clear()  # time the work, not the in-process result cache
        return evaluator.evaluate_in_process(path, preprocessing=PREPROCESSING, cifar10_root=root, device=device)

    return run


def isolated_run(
    path: Path, root: str, device: torch.device, *, warm: bool, limit: int | None = None
) -> Callable[[], object]:
    """The service's path: a sandboxed child, forked from the warm server or started cold (GRADER_SANDBOX_WARM)."""
    limits = replace(SandboxLimits.from_settings(Settings()), threads=THREADS)  # the service's defaults

    def run() -> object:
        reference_mode._RESULTS.clear()
        os.environ[WARM_ENV] = "1" if warm else "0"
        try:
            return reference_mode.evaluate_reference(
                path, preprocessing=PREPROCESSING, cifar10_root=root, device=device, limits=limits, limit=limit
            )
        finally:
            os.environ.pop(WARM_ENV, None)

    return run


def in_process_run(path: Path, root: str, device: torch.device, limit: int | None) -> Callable[[], object]:
    def run() -> object:
        evaluator._RESULTS.clear()
        return evaluator.evaluate_in_process(
            path, preprocessing=PREPROCESSING, cifar10_root=root, device=device, limit=limit
        )

    return run


def bench_isolation(device: torch.device, path: Path, root: str, t_bare: float) -> None:
    """Cold and warm sandboxed children against the in-process evaluator (alternating, best of REPEATS each) and the
    bare loop; and the per-run overhead of a short job (SHORT_JOB images), where starting the child is most of it."""
    full = [in_process_run(path, root, device, None)] + [
        isolated_run(path, root, device, warm=w) for w in (False, True)
    ]
    results = [run() for run in full]  # warm-up: the images file (once per machine), the warm server (once)
    rounds = [tuple(timed(run, device) for run in full) for _ in range(REPEATS)]
    t_in, t_cold, t_warm = (min(r[i] for r in rounds) for i in range(3))
    start = results[2].get("sandbox_start") if isinstance(results[2], dict) else None
    print(f"in-process evaluator (same rounds):              {t_in:.2f} s")
    print(f"sandboxed, cold start (fresh Python + torch):     {t_cold:.2f} s -> {t_cold / t_in:.2f}x in-process")
    print(
        f"sandboxed, warm start ({start} child of the server): {t_warm:.2f} s -> {t_warm / t_in:.2f}x in-process "
        f"(goal <= 1.05x), {t_warm / t_bare:.2f}x the best bare loop"
    )
    short = [in_process_run(path, root, device, SHORT_JOB)] + [
        isolated_run(path, root, device, warm=w, limit=SHORT_JOB) for w in (False, True)
    ]
    for run in short:
        run()
    t_in, t_short_cold, t_short_warm = (min(timed(run, device) for _ in range(5)) for run in short)
    print(
        f"per-run overhead ({SHORT_JOB}-image job, minus in-process {t_in:.2f} s): cold {t_short_cold - t_in:+.2f} s, "
        f"warm {t_short_warm - t_in:+.2f} s (goal <= 0.3 s)"
    )


def bench(device: torch.device, path: Path, root: str) -> bool:
    started = time.perf_counter()
    testset = load_cifar10_test(root, device)
    print(f"\n== {evaluator.describe_device(device)}: test set loaded in {time.perf_counter() - started:.2f} s (once)")
    model = bare_model(path, device)
    with torch.inference_mode():
        x = torch.cat([Preprocess(PREPROCESSING, device)(testset.images[i : i + 1000]) for i in range(0, 10_000, 1000)])
    spec = infer_network({k.removeprefix("module."): v for k, v in model.state_dict().items()}).spec
    batch, layout = evaluator.execution_settings(spec, device)
    run = evaluator_run(path, root, device)
    same = batched_loop(model, x, batch, layout)
    run(), same()  # warm-up (allocator, oneDNN/cuDNN kernel choice)
    result = evaluator.evaluate_in_process(path, preprocessing=PREPROCESSING, cifar10_root=root, device=device)
    one = per_image_loop(bare_model(path, device), x)
    # Alternate the runs being compared, so a busy neighbour slows them alike; keep each one's best.
    rounds = [(timed(run, device), timed(same, device), timed(one, device)) for _ in range(REPEATS)]
    t_eval, t_same, t_one = (min(r[i] for r in rounds) for i in range(3))
    t_plain = timed(batched_loop(model, x, 1000, torch.contiguous_format), device)
    t_one_all = t_one * 10_000 / PER_IMAGE_SUBSET
    print(
        f"evaluator end to end: {t_eval:.2f} s  accuracy {result['accuracy_percent']} % "
        f"(batch {batch}, {'channels_last' if layout == torch.channels_last else 'NCHW'})"
    )
    print(f"bare loop, same batch/layout: {t_same:.2f} s  -> evaluator speed {t_same / t_eval:.2f}x of it")
    print(f"bare loop, NCHW batch 1000:   {t_plain:.2f} s  -> evaluator speed {t_plain / t_eval:.2f}x of it")
    print(
        f"per-image loop: {t_one:.2f} s for {PER_IMAGE_SUBSET} images, extrapolated {t_one_all:.1f} s for 10,000 "
        f"-> evaluator {t_one_all / t_eval:.1f}x faster"
    )
    ok = min(t_same, t_plain) / t_eval >= 0.9 and t_one_all / t_eval >= 10
    print("targets (>= 0.9x bare, >= 10x per-image):", "met" if ok else "NOT met")
    if sandbox_available() is None:
        bench_isolation(device, path, root, min(t_same, t_plain))
    else:
        print(f"service path not measured: {sandbox_available()}")
    return ok


def main() -> int:
    root = os.environ.get("GRADER_CIFAR10_ROOT")
    if not root:
        print("set GRADER_CIFAR10_ROOT to the folder holding cifar-10-batches-py/", file=sys.stderr)
        return 2
    torch.set_num_threads(THREADS)
    print(f"torch {torch.__version__}, {THREADS} CPU threads; best of {REPEATS} alternating runs (NCHW loop: one run)")
    with tempfile.TemporaryDirectory() as scratch:
        path = checkpoint_path(Path(scratch))
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
        results = [bench(device, path, root) for device in devices]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
