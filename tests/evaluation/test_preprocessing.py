"""Preprocessing declarations (parsing, defaults, cache keys) and their effect on pixels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from grader.errors import InvalidAnswer
from grader.evaluation import (
    DEFAULT_PREPROCESSING,
    EVALUATOR_VERSION,
    evaluation_cache_key,
    normalize_preprocessing,
    read_preprocessing,
)
from grader.evaluation.transforms import Preprocess

IMAGENET = {"kind": "mean_std", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}

ACCEPTED: list[tuple[Any, dict[str, Any]]] = [
    ("none", {"kind": "none"}),
    ("scale", {"kind": "scale"}),
    (" Per-Image Standardization ", {"kind": "per_image_standardization"}),
    ("per_channel_standardisation", {"kind": "per_channel_standardization"}),
    ({"kind": "scale"}, {"kind": "scale"}),
    (IMAGENET, IMAGENET),
    (
        {"kind": "mean_std", "mean": (0.5, 0.5, 0.5), "std": [1, 1, 1]},
        {"kind": "mean_std", "mean": [0.5, 0.5, 0.5], "std": [1.0, 1.0, 1.0]},
    ),
    (
        {"kind": "mean_std", "mean": [127.5, 127.5, 127.5], "std": [51.0, 51.0, 51.0]},
        {"kind": "mean_std", "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]},
    ),
]


@pytest.mark.parametrize(("declared", "canonical"), ACCEPTED)
def test_accepted_declarations(declared: Any, canonical: dict[str, Any]) -> None:
    actual = normalize_preprocessing(declared)
    assert actual["kind"] == canonical["kind"] and set(actual) == set(canonical)
    for key in ("mean", "std"):
        assert actual.get(key, []) == pytest.approx(canonical.get(key, []))


REFUSED: list[tuple[Any, str]] = [
    ("zca", "unknown preprocessing"),
    ("mean_std", "needs 'mean' and 'std'"),
    ({"mean": [0, 0, 0]}, "missing 'kind'"),
    ({"kind": "mean_std", "mean": [0.5, 0.5], "std": [1, 1, 1]}, "three numbers"),
    ({"kind": "mean_std", "mean": "0.5 0.5 0.5", "std": [1, 1, 1]}, "three numbers"),
    ({"kind": "mean_std", "mean": [0.5, 0.5, 0.5], "std": [1, 0, 1]}, "positive"),
    ({"kind": "mean_std", "mean": [0.5, float("nan"), 0.5], "std": [1, 1, 1]}, "finite"),
    ({"kind": "mean_std", "mean": [True, 0, 0], "std": [1, 1, 1]}, "finite number"),
    ({"kind": "scale", "mean": [0, 0, 0]}, "takes no mean/std"),
    ({"kind": "scale", "extra": 1}, "unexpected keys"),
    (42, "expected a kind"),
    ({"kind": 3}, "must be text"),
]


@pytest.mark.parametrize(("declared", "says"), REFUSED)
def test_malformed_declarations_say_what_was_expected(declared: Any, says: str) -> None:
    with pytest.raises(InvalidAnswer, match=says):
        normalize_preprocessing(declared, where="q1.v1_preprocessing")


def test_read_preprocessing_from_the_sheet_and_default() -> None:
    sheet = {"q1": {"v1_preprocessing": "scale", "v2_preprocessing": IMAGENET}}
    assert read_preprocessing(sheet, "v1") == {"kind": "scale"}
    assert read_preprocessing(sheet, "v2") == IMAGENET
    assert read_preprocessing({"q1": {"v1_preprocessing": ""}}, "v1") == DEFAULT_PREPROCESSING
    assert read_preprocessing({}, "v2") == DEFAULT_PREPROCESSING == {"kind": "per_image_standardization"}
    with pytest.raises(InvalidAnswer, match=r"q1\.v2_preprocessing"):
        read_preprocessing({"q1": {"v2_preprocessing": "whiten"}}, "v2")


def test_cache_key_depends_on_version_checkpoint_and_canonical_preprocessing() -> None:
    sha = "ab" * 32
    key = evaluation_cache_key(sha, "scale")
    assert key == evaluation_cache_key(sha.upper(), {"kind": "Scale"}) and len(key) == 64
    assert key != evaluation_cache_key("cd" * 32, "scale")
    assert key != evaluation_cache_key(sha, "none")
    assert key != evaluation_cache_key(sha, "scale", "v1")
    assert EVALUATOR_VERSION


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    images[5] = 77  # a constant image: the std floor must keep it finite
    return images


def _numpy_reference(images: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """The same preprocessing written with numpy, image by image, as a student's parse_record would."""
    out = []
    for image in images.astype(np.float64):
        if spec["kind"] == "per_image_standardization":
            image = (image - image.mean()) / max(image.std(), 1 / np.sqrt(image.size))
        elif spec["kind"] == "per_channel_standardization":
            mean = image.mean(axis=(1, 2), keepdims=True)
            std = np.maximum(image.std(axis=(1, 2), keepdims=True), 1 / np.sqrt(1024))
            image = (image - mean) / std
        elif spec["kind"] in ("scale", "mean_std"):
            image = image / 255
            if spec["kind"] == "mean_std":
                image = (image - np.reshape(spec["mean"], (3, 1, 1))) / np.reshape(spec["std"], (3, 1, 1))
        out.append(image)
    return np.stack(out)


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "none"},
        {"kind": "scale"},
        IMAGENET,
        {"kind": "per_image_standardization"},
        {"kind": "per_channel_standardization"},
    ],
    ids=lambda spec: spec["kind"],
)
def test_preprocessing_matches_a_numpy_implementation(batch: torch.Tensor, spec: dict[str, Any]) -> None:
    actual = Preprocess(spec, torch.device("cpu"))(batch)
    assert actual.dtype == torch.float32 and actual.shape == batch.shape
    np.testing.assert_allclose(actual.numpy(), _numpy_reference(batch.numpy(), spec), rtol=1e-5, atol=1e-5)
    assert torch.isfinite(actual).all()


def test_mean_std_is_bitwise_torchvision_to_tensor_then_normalize(batch: torch.Tensor) -> None:
    from torchvision.transforms import functional as TF

    expected = torch.stack([TF.normalize(TF.to_tensor(image.permute(1, 2, 0).numpy()), **_ms()) for image in batch])
    assert torch.equal(Preprocess(IMAGENET, torch.device("cpu"))(batch), expected)


def _ms() -> dict[str, list[float]]:
    return {"mean": IMAGENET["mean"], "std": IMAGENET["std"]}
