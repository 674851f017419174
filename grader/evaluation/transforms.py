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
