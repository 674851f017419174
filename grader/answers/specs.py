"""Typed, hashable specs of the Q2–Q4 questions, read from a rubric part's params (no torch needed)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from grader.answers.expressions import WeightSpace
from grader.errors import RubricError


@dataclass(frozen=True, slots=True)
class BlockSpec:
    """A residual block with an identity shortcut (Q2); hashable so references can be cached on it."""

    kind: str
    """"standard" (two k×k convs) or "bottleneck" (1×1, k×k, 1×1)."""
    channels: int
    """Channels of the block's input and output."""
    kernel_size: int = 3
    bottleneck_channels: int | None = None
    activation: str = "post"
    """"post" (conv-BN-ReLU, He et al. v1) or "pre" (BN-ReLU-conv, v2)."""

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> BlockSpec:
        raw = params.get("block")
        if not isinstance(raw, Mapping):
            raise RubricError("block checkers need params.block: {kind, channels, kernel_size, ...}")
        spec = cls(
            kind=str(raw.get("kind", "")),
            channels=_positive_int(raw, "channels"),
            kernel_size=_positive_int(raw, "kernel_size", 3),
            bottleneck_channels=_positive_int(raw, "bottleneck_channels") if raw.get("bottleneck_channels") else None,
            activation=str(raw.get("activation", "post")),
        )
        spec._validate(params.get("input_shape"))
        return spec

    def _validate(self, input_shape: Any) -> None:
        if self.kind not in ("standard", "bottleneck"):
            raise RubricError(f"block.kind must be standard or bottleneck, got {self.kind!r}")
        if self.kind == "bottleneck" and self.bottleneck_channels is None:
            raise RubricError("a bottleneck block needs block.bottleneck_channels")
        if self.activation not in ("post", "pre"):
            raise RubricError(f"block.activation must be post or pre, got {self.activation!r}")
        if self.kernel_size % 2 == 0:
            raise RubricError("block.kernel_size must be odd (same padding keeps the shortcut's shape)")
        if input_shape is not None and (not isinstance(input_shape, list) or input_shape[-1:] != [self.channels]):
            raise RubricError(f"input_shape {input_shape!r} (N, H, W, C) must end in block.channels={self.channels}")

    def describe(self) -> str:
        k = f"{self.kernel_size}x{self.kernel_size}"
        if self.kind == "standard":
            return f"standard block ({self.channels} channels, two {k} convs)"
        return (
            f"bottleneck block ({self.channels} channels: 1x1 ({self.bottleneck_channels}), "
            f"{k} ({self.bottleneck_channels}), 1x1 ({self.channels}))"
        )


@dataclass(frozen=True, slots=True)
class Conv1dSpec:
    """The 1-D convolution of Q4: ω_k^{ij} is tap k of the kernel scanning input i into output j."""

    in_channels: int
    out_channels: int
    length: int
    kernel_size: int
    padding: int = 0

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Conv1dSpec:
        spec = cls(
            in_channels=_positive_int(params, "in_channels"),
            out_channels=_positive_int(params, "out_channels"),
            length=_positive_int(params, "length"),
            kernel_size=_positive_int(params, "kernel_size"),
            padding=_non_negative_int(params, "padding", 0),
        )
        if spec.output_length < 1:
            raise RubricError(f"conv1d spec {spec} has no output (length + 2·padding < kernel_size)")
        if max(spec.in_channels, spec.out_channels, spec.length, spec.kernel_size) > 16:
            raise RubricError("conv1d spec is too large for a written question (each size at most 16)")
        return spec

    @property
    def output_length(self) -> int:
        return self.length + 2 * self.padding - self.kernel_size + 1

    @property
    def weight_space(self) -> WeightSpace:
        return WeightSpace(taps=self.kernel_size, sources=self.in_channels, targets=self.out_channels)

    @property
    def forward_shape(self) -> tuple[int, int]:
        """Shape of A in Y~ = A X~: rows y_{j,t} channel by channel, columns x_{i,s} channel by channel."""
        return (self.out_channels * self.output_length, self.in_channels * self.length)


@dataclass(frozen=True, slots=True)
class BatchNormSpec:
    """Q3: the layout of batch norm's input (axis names, e.g. N H W C) and which statistic is asked for."""

    layout: tuple[str, ...]
    statistic: str
    channel_axis: str = "C"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> BatchNormSpec:
        layout = tuple(str(params.get("layout", "")).upper().split())
        spec = cls(layout, str(params.get("statistic", "")), str(params.get("channel_axis", "C")).upper())
        if len(layout) < 2 or len(set(layout)) != len(layout) or not all(len(a) == 1 for a in layout):
            raise RubricError(f"layout must name 2+ distinct one-letter axes like 'N H W C', got {layout!r}")
        if spec.channel_axis not in layout or spec.statistic not in ("mean", "variance"):
            raise RubricError("batchnorm_stat_shape needs statistic: mean|variance and the channel axis in layout")
        return spec

    def describe(self) -> str:
        return " x ".join(self.layout)


def _positive_int(params: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RubricError(f"params.{key} must be a positive integer, got {value!r}")
    return value


def _non_negative_int(params: Mapping[str, Any], key: str, default: int) -> int:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RubricError(f"params.{key} must be a non-negative integer, got {value!r}")
    return value
