"""Reference mode isolated: uploaded checkpoints are loaded and run in a sandboxed child, scored by the parent.

The in-process evaluator (grader.evaluation.evaluate) is the yardstick: the child must give the same results.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch

from grader.errors import InfrastructureError
from grader.evaluation import reference_mode, sandboxed
from grader.evaluation.cifar import load_cifar10_test
from grader.evaluation.evaluate import ResultCache, evaluate_in_process
from grader.evaluation.testset_file import images_file
from grader.sandbox import runner
from tests.conftest import sandbox_limits
from tests.sandbox.test_runner import assert_next_run_works

pytestmark = pytest.mark.usefixtures("sandbox")


@pytest.fixture(autouse=True)
def _fresh_result_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs its own children: the process-wide cache would otherwise answer repeats."""
    monkeypatch.setattr(reference_mode, "_RESULTS", ResultCache())


IMAGENET = {"kind": "mean_std", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
IMAGES = 500
LIMITS = sandbox_limits(wall_seconds=120, cpu_seconds=240, memory_bytes=6 << 30, threads=2)
SAME = ("status", "accuracy_percent", "correct", "total", "confusion_matrix", "per_class_accuracy_percent")
SAME_EVIDENCE = ("architecture", "checkpoint", "checkpoint_sha256", "forward_variant", "preprocessing", "dataset")


def isolated(path: Path, cifar10_root: Path, preprocessing: Any = IMAGENET, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("limits", LIMITS)
    return evaluate_reference_subset(path, cifar10_root, preprocessing, **kwargs)


def evaluate_reference_subset(path: Path, cifar10_root: Path, preprocessing: Any, **kwargs: Any) -> dict[str, Any]:
    return reference_mode.evaluate_reference(
        path, label="v1", preprocessing=preprocessing, cifar10_root=cifar10_root, device="cpu", limit=IMAGES, **kwargs
    )


def in_process(path: Path, cifar10_root: Path, preprocessing: Any = IMAGENET) -> dict[str, Any]:
    return evaluate_in_process(path, preprocessing=preprocessing, cifar10_root=cifar10_root, device="cpu", limit=IMAGES)


def assert_same_result(isolated_result: dict[str, Any], expected: dict[str, Any]) -> None:
    for key in (*SAME, *SAME_EVIDENCE, "variants_tried"):
        assert isolated_result.get(key) == expected.get(key), key


def test_the_sandboxed_child_gives_the_in_process_evaluators_result(
    resnet20_checkpoint: Path, cifar10_root: Path
) -> None:
    result = isolated(resnet20_checkpoint, cifar10_root)
    assert result["isolation"] == "bubblewrap" and result["sandbox_start"] == "warm"
    assert result["status"] == "evaluated" and result["total"] == IMAGES
    assert result["accuracy_percent"] > 85  # the real ResNet-20, on the first 500 images
    assert_same_result(result, in_process(resnet20_checkpoint, cifar10_root))


def test_a_cold_start_gives_the_same_result(
    resnet20_checkpoint: Path, cifar10_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GRADER_SANDBOX_WARM=0: a fresh Python per run, as where the warm sandbox cannot work."""
    monkeypatch.setenv("GRADER_SANDBOX_WARM", "0")
    result = isolated(resnet20_checkpoint, cifar10_root)
    assert result["sandbox_start"] == "cold"
    assert_same_result(result, in_process(resnet20_checkpoint, cifar10_root))


def test_where_the_warm_server_cannot_start_evaluations_start_cold(
    resnet20_checkpoint: Path, cifar10_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandboxed, "WARM_PRELOAD", ("grader.no_such_module",))
    result = isolated(resnet20_checkpoint, cifar10_root)
    assert result["status"] == "evaluated" and result["sandbox_start"] == "cold"
    assert_same_result(result, in_process(resnet20_checkpoint, cifar10_root))


def test_a_low_score_tries_the_same_alternative_forward_passes(resnet20_checkpoint: Path, cifar10_root: Path) -> None:
    """Raw 0-255 inputs: near chance, so a second child runs the alternatives; the runs kept are the same."""
    result = isolated(resnet20_checkpoint, cifar10_root, preprocessing="none")
    expected = in_process(resnet20_checkpoint, cifar10_root, preprocessing="none")
    assert len(result["variants_tried"]) == 2  # option A padding: symmetric, then end
    assert_same_result(result, expected)


def test_the_worker_process_never_loads_an_uploaded_checkpoint(
    resnet20_checkpoint: Path, cifar10_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_safetensors = tmp_path / "resnet20.safetensors"
    weights = torch.load(resnet20_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    as_safetensors.write_bytes(safetensors.torch.save({k: v.contiguous() for k, v in weights.items()}))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the parent process loaded an uploaded checkpoint")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(safetensors.torch, "load", refuse)
    for path in (resnet20_checkpoint, as_safetensors):
        result = isolated(path, cifar10_root)
        assert result["status"] == "evaluated", result.get("message")
        assert result["accuracy_percent"] > 85


def test_a_checkpoint_whose_pickle_would_run_code_is_rejected_and_nothing_runs(
    cifar10_root: Path, tmp_path: Path
) -> None:
    canary = tmp_path / "canary"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.mkdir, (str(canary),))

    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps({"state_dict": Payload()}, protocol=2))
    zipped = tmp_path / "zipped.pt"
    torch.save({"state_dict": Payload()}, zipped)  # torch.save pickles; nothing here unpickles
    for checkpoint in (raw, zipped):
        result = isolated(checkpoint, cifar10_root)
        assert result["status"] == "rejected" and result["isolation"] == "bubblewrap"
        assert "holds Python objects, not only tensors" in result["message"]
        assert "model.state_dict()" in result["message"]
        assert not canary.exists()
    assert_next_run_works()


def test_a_run_past_the_wall_time_limit_is_timed_out_for_the_student(
    resnet20_checkpoint: Path, cifar10_root: Path
) -> None:
    # All 10,000 images: a warm child may finish the first 500 within half a second.
    result = reference_mode.evaluate_reference(
        resnet20_checkpoint,
        preprocessing=IMAGENET,
        cifar10_root=cifar10_root,
        device="cpu",
        limits=sandbox_limits(wall_seconds=0.5),
    )
    assert result["status"] == "timed_out"
    assert result["message"] == "Evaluating your checkpoint stopped after 0.5 s of wall-clock time (the limit)."
    assert len(result["checkpoint_sha256"]) == 64
    assert_next_run_works()


def test_without_bubblewrap_the_child_runs_as_a_plain_process(
    resnet20_checkpoint: Path, cifar10_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "sandbox_available", lambda: "bubblewrap (bwrap) is not installed")
    result = isolated(resnet20_checkpoint, cifar10_root, preprocessing="scale")
    assert result["isolation"] == "process"
    assert_same_result(result, in_process(resnet20_checkpoint, cifar10_root, preprocessing="scale"))


def test_a_child_that_crashes_is_a_grader_problem_not_a_result(
    resnet20_checkpoint: Path, cifar10_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash of the grader's own child is retried by the worker, never blamed on the checkpoint."""
    empty = tmp_path / "grader"
    empty.mkdir()
    monkeypatch.setenv("GRADER_SANDBOX_WARM", "0")  # a fresh child, started from the package below
    monkeypatch.setattr(sandboxed, "PACKAGE", empty)  # the child then cannot import its own code
    with pytest.raises(InfrastructureError, match=r"the evaluation child for 12fca82f0beb failed \(crashed\)"):
        isolated(resnet20_checkpoint, cifar10_root)


def test_the_images_file_holds_the_test_set_in_order_without_labels(cifar10_root: Path) -> None:
    testset = load_cifar10_test(cifar10_root, "cpu")
    path = images_file(testset)
    assert path == images_file(testset)  # written once, then reused
    assert path.stat().st_size == len(testset) * 3072
    assert path.read_bytes()[:3072] == testset.images[0].numpy().tobytes()
    assert oct(path.parent.stat().st_mode & 0o777) == "0o711"


def test_a_gpu_the_sandbox_cannot_reach_means_evaluating_on_the_cpu(
    resnet20_checkpoint: Path, cifar10_root: Path
) -> None:
    """Asked for the GPU, the child gets it only when a sandboxed probe can use it; else the CPU, correctly."""
    reference_mode._gpu_works_in_sandbox.cache_clear()
    result = reference_mode.evaluate_reference(
        resnet20_checkpoint, preprocessing=IMAGENET, cifar10_root=cifar10_root, device="cuda", limits=LIMITS, limit=100
    )
    assert result["status"] == "evaluated"
    if torch.cuda.is_available():  # a GPU worker: the probe must pass, or GPU evaluation silently never happens
        assert result["device"].startswith("cuda")
    else:
        assert result["device"] == "cpu"
        assert reference_mode._gpu_works_in_sandbox(LIMITS.memory_bytes) is False
