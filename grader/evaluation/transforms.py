"""Applying a canonical preprocessing spec to a batch of uint8 images on the device they live on."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch


class Preprocess:
    """Callable uint8 [B, 3, 32, 32] → float32 [B, 3, 32, 32], with its constants made once per evaluation."""

    def __init__(self, spec: Mapping[str, Any], device: torch.device) -> None:
        self.kind = str(spec["kind"])
        self.mean = self.std = None
        if self.kind == "mean_std":
            self.mean = torch.tensor(spec["mean"], dtype=torch.float32, device=device).view(1, 3, 1, 1)
            self.std = torch.tensor(spec["std"], dtype=torch.float32, device=device).view(1, 3, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(torch.float32)
        if self.kind == "none":
            return x
        if self.kind == "per_image_standardization":
            return _standardize(x, dims=(1, 2, 3))
        if self.kind == "per_channel_standardization":
            return _standardize(x, dims=(2, 3))
        # The same operations, in the same order, as torchvision's ToTensor (÷255) and Normalize.
        x = x.div_(255)
        if self.kind == "mean_std":
            x = x.sub_(self.mean).div_(self.std)
        return x


def _standardize(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """TF's per_image_standardization over `dims`: population std, floored at 1/sqrt(element count)."""
    count = math.prod(x.shape[d] for d in dims)
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True, correction=0).clamp_min(1.0 / math.sqrt(count))
    return (x - mean) / std


TOLERANCE = 1e-3
"""Largest difference, relative to the output's scale, between a student's preprocessing and a known kind."""


def identify_preprocessing(images: torch.Tensor, outputs: torch.Tensor) -> tuple[dict[str, Any] | None, str]:
    """Which known kind (with its parameters) maps uint8 `images` [N, 3, 32, 32] to `outputs`; (None, why not).

    Used in student-code mode: the student's function is run on images the grader made, and the grader then
    applies its own implementation of the kind found to the test images, which the student's code never sees.
    """
    if tuple(outputs.shape) != tuple(images.shape):
        return None, f"it returned arrays of shape {tuple(outputs.shape[1:])}; expected {tuple(images.shape[1:])}"
    outputs = outputs.to(torch.float32)
    if not bool(torch.isfinite(outputs).all()):
        return None, "it returned values that are not finite numbers"
    candidates = [
        {"kind": kind} for kind in ("none", "scale", "per_image_standardization", "per_channel_standardization")
    ]
    fitted = _fit_mean_std(images, outputs)
    if fitted is not None:
        candidates.append(fitted)
    scale = max(1.0, float(outputs.abs().max()))
    distances = []
    for spec in candidates:
        distance = float((Preprocess(spec, images.device)(images) - outputs).abs().max()) / scale
        if distance <= TOLERANCE:
            return spec, ""
        distances.append((distance, spec["kind"]))
    distance, nearest = min(distances)
    return None, (
        f"it matches none of the known kinds (none, scale, mean_std, per_image_standardization, "
        f"per_channel_standardization); the nearest, {nearest}, differs by {distance:.3g} of the values' scale"
    )


def _fit_mean_std(images: torch.Tensor, outputs: torch.Tensor) -> dict[str, Any] | None:
    """Per channel, outputs = a·x + b (least squares on raw pixels x), read as mean_std's (x/255 − mean) / std."""
    mean, std = [], []
    for channel in range(3):
        x = images[:, channel].reshape(-1).to(torch.float64)
        y = outputs[:, channel].reshape(-1).to(torch.float64)
        spread = float(((x - x.mean()) ** 2).sum())
        if spread == 0:
            return None
        a = float(((x - x.mean()) * (y - y.mean())).sum()) / spread
        b = float(y.mean()) - a * float(x.mean())
        if a <= 0:
            return None
        std.append(1.0 / (255.0 * a))
        mean.append(-b * std[-1])
    return {"kind": "mean_std", "mean": mean, "std": std}
