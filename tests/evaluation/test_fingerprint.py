"""Weight summaries for integrity checks, in this process: the tensor hash ignores how the same tensors were saved,
the sketched correlation matches the exact one, and a fine-tune stands apart from an independent training."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from safetensors.torch import save as save_safetensors

from grader.evaluation.checkpoint import parse_checkpoint
from grader.evaluation.fingerprint_child import sketch, summarize
from grader.evaluation.similarity import (
    SKETCH_SIZE,
    WeightSummary,
    correlate,
    correlated_pairs,
    encode_vector,
)
from tests.evaluation.copies import fine_tuned, resnet20, torch_file


def summary_of(data: bytes) -> WeightSummary:
    return summarize(parse_checkpoint(data, sha256="0" * 64, device=torch.device("cpu")))


SAVES: dict[str, Callable[[dict[str, torch.Tensor]], bytes]] = {
    "torch.save of the state_dict": torch_file,
    "wrapped as DataParallel in a container": lambda s: torch_file(
        {"state_dict": {f"module.{k}": v for k, v in s.items()}, "epoch": 3}
    ),
    "safetensors, keys reversed": lambda s: save_safetensors({k: v.contiguous() for k, v in reversed(s.items())}),
}


@pytest.mark.parametrize("save", SAVES.values(), ids=SAVES.keys())
def test_the_tensor_hash_is_the_same_however_the_same_tensors_are_saved(save: Callable) -> None:
    state = resnet20(0)
    assert summary_of(save(state)).tensors_sha256 == summary_of(torch_file(state)).tensors_sha256


CHANGES: dict[str, Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]] = {
    "one value": lambda s: {**s, "conv1.weight": s["conv1.weight"].index_put((torch.tensor([0]),), torch.tensor(0.5))},
    "a dtype": lambda s: {**s, "linear.bias": s["linear.bias"].double()},
    "a name": lambda s: {("fc.bias" if k == "linear.bias" else k): v for k, v in s.items()},
    "a tensor left out": lambda s: {k: v for k, v in s.items() if not k.endswith("num_batches_tracked")},
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_the_tensor_hash_changes_with_any_tensor(change: Callable) -> None:
    state = resnet20(0)
    assert summary_of(torch_file(change(state))).tensors_sha256 != summary_of(torch_file(state)).tensors_sha256


def test_the_sketched_correlation_is_close_to_pearson_and_exact_for_small_tensors() -> None:
    generator = torch.Generator().manual_seed(1)
    for size, tolerance in ((300, 1e-5), (64 * 64 * 9, 0.1)):
        x = torch.randn(size, generator=generator)
        for mix in (0.0, 0.5, 0.9):
            y = mix * x + (1 - mix**2) ** 0.5 * torch.randn(size, generator=generator) + 3.0  # an offset too
            pearson = float(np.corrcoef(x.numpy(), y.numpy())[0, 1])
            estimate = float(sketch(x) @ sketch(y))
            assert abs(estimate - pearson) < tolerance, (size, mix, estimate, pearson)
    assert sketch(torch.full((10, 10), 0.25)) is None  # a constant tensor has no correlation
    assert sketch(torch.tensor([[1.0, float("nan")]])) is None


def test_a_fine_tune_correlates_and_an_independent_training_does_not() -> None:
    original = summary_of(torch_file(resnet20(0)))
    tuned = summary_of(torch_file(fine_tuned(resnet20(0))))
    independent = summary_of(torch_file(resnet20(1)))
    assert len(original.layers) == 20  # conv1, 18 block convolutions, linear (option A: no shortcut weights)
    assert tuned.tensors_sha256 != original.tensors_sha256
    near, far = correlate(original, tuned), correlate(original, independent)
    assert near.median > 0.9 and min(near.layers.values()) > 0.5
    assert abs(far.median) < 0.1
    assert correlate(original, original).describe() == {
        "median": 1.0,
        "mean": 1.0,
        "min": 1.0,
        "max": 1.0,
        "layers": 20,
    }
    summaries = {"original": original, "tuned": tuned, "independent": independent}
    [(first, second, median)] = correlated_pairs(summaries, threshold=0.5, min_layers=3)
    assert (first, second) == ("original", "tuned") and median == pytest.approx(near.median, abs=1e-4)


def test_layers_are_compared_by_name_and_shape_only() -> None:
    small = {name: value for name, value in resnet20(0).items() if name.startswith(("conv1", "layer1", "bn1"))}
    full = summary_of(torch_file(resnet20(0)))
    part = summary_of(torch_file(small))
    assert set(correlate(full, part).layers) == set(part.layers)  # the 7 layers both have
    assert correlated_pairs({"full": full, "part": part}, threshold=0.5, min_layers=8) == []  # too few to judge


def unit(values: list[float]) -> str:
    vector = np.zeros(SKETCH_SIZE, dtype=np.float32)
    vector[: len(values)] = values
    return encode_vector(vector)


GOOD = {
    "status": "summarized",
    "tensors_sha256": "a" * 64,
    "layers": [{"name": "w", "shape": [2, 2], "sketch": unit([1.0])}],
}
MALFORMED = {
    "not a summary": {"status": "rejected", "message": "x"},
    "a short hash": {**GOOD, "tensors_sha256": "abc"},
    "a repeated layer": {**GOOD, "layers": GOOD["layers"] * 2},
    "a 1-d shape": {**GOOD, "layers": [{**GOOD["layers"][0], "shape": [4]}]},
    "a negative size": {**GOOD, "layers": [{**GOOD["layers"][0], "shape": [2, -2]}]},
    "a short sketch": {**GOOD, "layers": [{**GOOD["layers"][0], "sketch": encode_vector(np.ones(3))}]},
    "not a unit vector": {**GOOD, "layers": [{**GOOD["layers"][0], "sketch": unit([2.0])}]},
    "not base64": {**GOOD, "layers": [{**GOOD["layers"][0], "sketch": "!!"}]},
}


@pytest.mark.parametrize("payload", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_summary_from_a_child_is_refused(payload: dict) -> None:
    assert WeightSummary.from_json(GOOD).layers["w"].shape == (2, 2)
    with pytest.raises(ValueError):
        WeightSummary.from_json(payload)
