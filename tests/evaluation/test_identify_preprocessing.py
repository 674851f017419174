"""Telling which known preprocessing a student's function computes, from its outputs on the grader's probes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grader.evaluation.student.student_mode import probe_images
from grader.evaluation.transforms import Preprocess, identify_preprocessing

KINDS = [
    {"kind": "none"},
    {"kind": "scale"},
    {"kind": "per_image_standardization"},
    {"kind": "per_channel_standardization"},
    {"kind": "mean_std", "mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]},
    {"kind": "mean_std", "mean": [0.5, 0.5, 0.5], "std": [0.29, 0.29, 0.29]},  # close to per-image on noise
    {"kind": "mean_std", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
]


@pytest.fixture(params=range(5))
def probes(request: pytest.FixtureRequest) -> torch.Tensor:
    return torch.from_numpy(probe_images(np.random.default_rng(request.param)))


@pytest.mark.parametrize("spec", KINDS, ids=lambda spec: spec["kind"] + str(spec.get("mean", [""])[0]))
def test_each_known_kind_is_identified_with_its_parameters(probes: torch.Tensor, spec: dict) -> None:
    outputs = Preprocess(spec, torch.device("cpu"))(probes)
    found, why = identify_preprocessing(probes, outputs)
    assert found is not None, why
    assert found["kind"] == spec["kind"]
    if spec["kind"] == "mean_std":
        assert found["mean"] == pytest.approx(spec["mean"], abs=1e-4)
        assert found["std"] == pytest.approx(spec["std"], abs=1e-4)


def test_numpy_float32_arithmetic_like_a_students_still_matches(probes: torch.Tensor) -> None:
    images = probes.numpy().astype(np.float32)
    outputs = np.stack([(x - x.mean()) / max(x.std(), 1 / np.sqrt(x.size)) for x in images])
    found, _ = identify_preprocessing(probes, torch.from_numpy(outputs))
    assert found == {"kind": "per_image_standardization"}


@pytest.mark.parametrize(
    ("transform", "reason"),
    [
        (lambda x: x.transpose(2, 3) / 255, "nearest"),  # height and width swapped
        (lambda x: (x / 255).flip(3), "nearest"),  # mirrored
        (lambda x: x[:, :, :16, :16], "shape"),
        (lambda x: x / 0, "not finite"),
        (lambda x: torch.sqrt(x), "nearest"),
    ],
)
def test_anything_else_is_refused_with_a_reason(probes: torch.Tensor, transform: object, reason: str) -> None:
    found, why = identify_preprocessing(probes, transform(probes.float()))  # type: ignore[operator]
    assert found is None and reason in why
