"""End to end on the real test set: a saved file evaluates exactly like the in-memory model that wrote it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from grader.errors import InfrastructureError
from grader.evaluation import evaluate_checkpoint
from grader.evaluation.architecture import infer_network
from grader.evaluation.cifar import Cifar10TestSet
from grader.evaluation.evaluate import (
    build_reference_model,
    evaluate_in_process,
    execution_settings,
    predict,
    reference_state,
)
from grader.evaluation.resnet import CifarResNet, ForwardVariant, make_spec
from grader.evaluation.transforms import Preprocess
from tests.conftest import sandbox_limits
from tests.evaluation.conftest import SUBSET
from tests.evaluation.nets import AkamasterResNet, PreActBottleneckResNet, StarterResNet, calibrate

CPU = torch.device("cpu")
IMAGENET = {"kind": "mean_std", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
DEFAULT_ONLY = [ForwardVariant()]


def _student_preprocess(images: torch.Tensor, spec: dict[str, Any]) -> torch.Tensor:
    """The declared preprocessing as a student's own code would do it (not the grader's transforms)."""
    x = images.float()
    if spec["kind"] == "per_image_standardization":
        std = x.std(dim=(1, 2, 3), keepdim=True, unbiased=False).clamp(min=1 / math.sqrt(3072))
        return (x - x.mean(dim=(1, 2, 3), keepdim=True)) / std
    if spec["kind"] == "per_channel_standardization":
        std = x.std(dim=(2, 3), keepdim=True, unbiased=False).clamp(min=1 / 32)
        return (x - x.mean(dim=(2, 3), keepdim=True)) / std
    if spec["kind"] == "none":
        return x
    x = x / 255
    if spec["kind"] == "mean_std":
        x = (x - torch.tensor(spec["mean"]).view(1, 3, 1, 1)) / torch.tensor(spec["std"]).view(1, 3, 1, 1)
    return x


def _trained_like(model: nn.Module, testset: Cifar10TestSet, spec: dict[str, Any]) -> nn.Module:
    # BN statistics from images outside the evaluated subset, so activations look like a trained net's.
    torch.manual_seed(0)
    return calibrate(model, _student_preprocess(testset.images[5000:5400], spec))


def _in_memory_predictions(model: nn.Module, testset: Cifar10TestSet, spec: dict[str, Any]) -> torch.Tensor:
    """The model's own predictions, batched and laid out as the evaluator runs on this device."""
    batch, layout = execution_settings(infer_network(dict(model.state_dict())).spec, CPU)
    model = model.to(memory_format=layout)
    images = _student_preprocess(testset.images[:SUBSET], spec)
    with torch.inference_mode():
        return torch.cat(
            [model(images[i : i + batch].contiguous(memory_format=layout)).argmax(1) for i in range(0, SUBSET, batch)]
        )


def _save_pt(model: nn.Module, path: Path) -> Path:
    torch.save(model.state_dict(), path)
    return path


def _save_wrapped(model: nn.Module, path: Path) -> Path:
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "best_prec1": 50.0}, path)
    return path


def _save_safetensors(model: nn.Module, path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return path


CASES = [
    (
        "starter v1, .ckpt",
        lambda: StarterResNet(1, 1),
        {"kind": "per_image_standardization"},
        _save_pt,
        "m.ckpt",
        (1, "standard"),
    ),
    (
        "starter v2, safetensors",
        lambda: StarterResNet(2, 1),
        IMAGENET,
        _save_safetensors,
        "m.safetensors",
        (2, "bottleneck"),
    ),
    (
        "torchvision-style v1 option A, wrapped + module.",
        lambda: AkamasterResNet(1),
        {"kind": "scale"},
        _save_wrapped,
        "m.th",
        (1, "standard"),
    ),
    (
        "kuangliu-style v2, .pth",
        lambda: PreActBottleneckResNet(1),
        {"kind": "per_channel_standardization"},
        _save_pt,
        "m.pth",
        (2, "bottleneck"),
    ),
    (
        "reference naming v2-standard, .pt",
        lambda: CifarResNet(make_spec(activation="pre", kind="standard", blocks_per_stage=1, first_width=8)),
        {"kind": "none"},
        _save_pt,
        "m.pt",
        (2, "standard"),
    ),
]


@pytest.mark.parametrize(("name", "factory", "spec", "save", "filename", "arch"), CASES, ids=[c[0] for c in CASES])
def test_saved_file_gives_the_in_memory_models_predictions(
    name: str,
    factory: Any,
    spec: dict,
    save: Any,
    filename: str,
    arch: tuple,
    testset: Cifar10TestSet,
    cifar10_root: Path,
    tmp_path: Path,
) -> None:
    model = _trained_like(factory(), testset, spec)
    expected = _in_memory_predictions(model, testset, spec)
    path = save(model, tmp_path / filename)

    network = infer_network(_load(path))
    reference = build_reference_model(network.spec, reference_state(network, _load(path)), ForwardVariant())
    batch, layout = execution_settings(network.spec, CPU)
    actual = predict(
        reference.to(memory_format=layout),
        testset.images[:SUBSET],
        Preprocess(spec, CPU),
        batch_size=batch,
        memory_format=layout,
    )
    assert torch.equal(actual, expected)
    assert len(set(expected.tolist())) > 1, "a degenerate test network predicts one class"

    result = evaluate_in_process(
        path, preprocessing=spec, cifar10_root=cifar10_root, device="cpu", limit=SUBSET, variants=DEFAULT_ONLY
    )
    assert result["status"] == "evaluated", result.get("message")
    assert result["correct"] == int((expected == testset.labels[:SUBSET]).sum()) and result["total"] == SUBSET
    assert (result["architecture"]["version"], result["architecture"]["block"]) == arch


def _load(path: Path) -> dict[str, torch.Tensor]:
    from grader.evaluation.checkpoint import load_checkpoint

    return load_checkpoint(path).tensors


def test_result_keys_and_evidence(testset: Cifar10TestSet, cifar10_root: Path, tmp_path: Path) -> None:
    path = _save_pt(_trained_like(StarterResNet(1, 1), testset, {"kind": "scale"}), tmp_path / "v1.pt")
    result = evaluate_in_process(
        path, label="v1", preprocessing="scale", cifar10_root=cifar10_root, device="cpu", limit=SUBSET
    )
    assert {
        "status",
        "evaluator_version",
        "accuracy_percent",
        "correct",
        "total",
        "per_class_accuracy_percent",
        "confusion_matrix",
        "class_names",
        "architecture",
        "preprocessing",
        "checkpoint_sha256",
        "checkpoint",
        "forward_variant",
        "device",
        "torch_version",
        "dataset",
        "seconds",
    } <= set(result)
    assert result["accuracy_percent"] == round(100 * result["correct"] / SUBSET, 2)
    confusion = torch.tensor(result["confusion_matrix"])
    assert confusion.sum() == SUBSET and confusion.trace() == result["correct"]
    assert confusion.sum(dim=1).tolist() == torch.bincount(testset.labels[:SUBSET], minlength=10).tolist()
    assert list(result["per_class_accuracy_percent"]) == list(testset.class_names)
    assert result["device"].startswith("cpu") and result["torch_version"] == torch.__version__
    assert "label" not in result  # results are cached by checkpoint and preprocessing, shared across labels
    assert json.loads(json.dumps(result)) == result


def test_results_are_cached_in_process_and_copies_are_returned(
    testset: Cifar10TestSet, cifar10_root: Path, tmp_path: Path
) -> None:
    path = _save_pt(_trained_like(AkamasterResNet(1), testset, {"kind": "scale"}), tmp_path / "a.pt")
    first = evaluate_in_process(path, preprocessing="scale", cifar10_root=cifar10_root, device="cpu", limit=100)
    first["correct"] = -1
    second = evaluate_in_process(path, preprocessing="scale", cifar10_root=cifar10_root, device="cpu", limit=100)
    assert second["correct"] >= 0 and second["seconds"] == first["seconds"]


def test_low_accuracy_tries_the_other_forward_variants_and_keeps_the_right_one(
    resnet20_checkpoint: Path, cifar10_root: Path
) -> None:
    wrong_first = [ForwardVariant(option_a_padding="end"), ForwardVariant(option_a_padding="symmetric")]
    result = evaluate_in_process(
        resnet20_checkpoint,
        preprocessing=IMAGENET,
        cifar10_root=cifar10_root,
        device="cpu",
        limit=1000,
        variants=wrong_first,
    )
    assert result["forward_variant"]["option_a_padding"] == "symmetric"
    assert [run["variant"]["option_a_padding"] for run in result["variants_tried"]] == ["end", "symmetric"]
    assert result["variants_tried"][0]["accuracy_percent"] < 50 < 85 < result["accuracy_percent"]


def test_nan_weights_are_rejected_with_the_architecture(
    testset: Cifar10TestSet, cifar10_root: Path, tmp_path: Path
) -> None:
    model = StarterResNet(2, 1)
    with torch.no_grad():
        model.stack_layers[1].layer[0].conv2.weight[0, 0, 0, 0] = float("nan")
    path = _save_pt(model, tmp_path / "nan.pt")
    result = evaluate_in_process(path, preprocessing="scale", cifar10_root=cifar10_root, device="cpu", limit=100)
    assert result["status"] == "rejected"
    assert "stack_layers.1.layer.0.conv2.weight contains NaN" in result["message"]
    assert result["architecture"]["block"] == "bottleneck" and len(result["checkpoint_sha256"]) == 64


def test_a_pickled_module_is_a_rejected_result(cifar10_root: Path, tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(AkamasterResNet(1), path)
    result = evaluate_checkpoint(
        path, label="v1", preprocessing="scale", cifar10_root=cifar10_root, device="cpu", limits=sandbox_limits()
    )
    assert result["status"] == "rejected" and "model.state_dict()" in result["message"]


def test_missing_data_is_an_infrastructure_error(tmp_path: Path) -> None:
    with pytest.raises(InfrastructureError, match="GRADER_CIFAR10_ROOT"):
        evaluate_checkpoint(
            tmp_path / "m.pt", label="v1", preprocessing="scale", cifar10_root=None, limits=sandbox_limits()
        )
    with pytest.raises(InfrastructureError, match="cifar-10-batches-py/test_batch"):
        evaluate_checkpoint(
            tmp_path / "m.pt", label="v1", preprocessing="scale", cifar10_root=tmp_path, limits=sandbox_limits()
        )


@pytest.mark.slow
def test_the_real_resnet20_scores_91_73_percent(resnet20_checkpoint: Path, cifar10_root: Path) -> None:
    result = evaluate_checkpoint(
        resnet20_checkpoint,
        label="v1",
        preprocessing=IMAGENET,
        cifar10_root=cifar10_root,
        device="cpu",
        limits=sandbox_limits(),
    )
    assert (result["accuracy_percent"], result["correct"], result["total"]) == (91.73, 9173, 10000)
    architecture = result["architecture"]
    assert (architecture["version"], architecture["block"], architecture["depth"]) == (1, "standard", 20)
    assert (architecture["n"], architecture["stage_widths"], architecture["shortcut"]) == (3, [16, 32, 64], "option_a")
    assert "variants_tried" not in result
