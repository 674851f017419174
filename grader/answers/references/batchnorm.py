"""Reference batch-norm statistics (Q3): the shape of a keepdim reduction over all axes but the channels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch

from grader.answers.specs import BatchNormSpec

_SIZES = (2, 3, 5, 7, 11, 13, 17, 19)
"""Distinct sizes > 1 per axis, so each axis of a result can be named back from its size."""


def reduce_shape(layout: Sequence[str], keep: Sequence[str], statistic: str) -> tuple[str, ...]:
    """Reduce a tensor of `layout` over every axis not in `keep` (keepdim) and name the result's axes."""
    return _reduce_shape(tuple(layout), tuple(keep), statistic)


@lru_cache(maxsize=256)
def _reduce_shape(layout: tuple[str, ...], keep: tuple[str, ...], statistic: str) -> tuple[str, ...]:
    sizes = _SIZES[: len(layout)]
    x = torch.arange(1, 1 + torch.Size(sizes).numel(), dtype=torch.float64).reshape(sizes)
    dims = tuple(index for index, axis in enumerate(layout) if axis not in keep)
    stat = x.mean(dim=dims, keepdim=True) if statistic == "mean" else x.var(dim=dims, keepdim=True, correction=0)
    names = dict(zip(sizes, layout, strict=True))
    return tuple("1" if size == 1 else names[size] for size in stat.shape)


def batchnorm_shape(spec: BatchNormSpec) -> tuple[str, ...]:
    """Batch norm keeps one statistic per channel: reduce over every other axis."""
    return reduce_shape(spec.layout, (spec.channel_axis,), spec.statistic)


@dataclass(frozen=True, slots=True)
class Alternative:
    """A wrong shape a known mistake produces, and what to say about it."""

    shape: tuple[str, ...]
    explanation: str


@lru_cache(maxsize=64)
def named_alternatives(spec: BatchNormSpec) -> tuple[Alternative, ...]:
    """Shapes from reducing over the wrong axes or a different layout, each computed like the reference."""
    batch, channel = spec.layout[0], spec.channel_axis
    others = tuple(axis for axis in spec.layout if axis not in (batch, channel))
    reference = batchnorm_shape(spec)
    candidates = [
        Alternative(
            spec.layout,
            f"that is the shape of x itself; the statistics are averaged over {batch}"
            + (f", {', '.join(others)}" if others else ""),
        ),
        Alternative(
            reduce_shape(spec.layout, (batch,), spec.statistic),
            f"that is one statistic per example (layer norm); batch norm averages over the batch {batch}",
        ),
        Alternative(tuple(reversed(reference)), "the axes are in the wrong order; keep the input's axis order"),
    ]
    if others:
        candidates += [
            Alternative(
                reduce_shape(spec.layout, (*others, channel), spec.statistic),
                f"that averages over the batch only; after a convolution batch norm also averages over "
                f"{', '.join(others)} (one statistic per channel)",
            ),
            Alternative(
                reduce_shape(spec.layout, (batch, channel), spec.statistic),
                "that is one statistic per example and channel (instance norm)",
            ),
        ]
        channels_first = (batch, channel, *others)
        candidates.append(
            Alternative(
                reduce_shape(channels_first, (channel,), spec.statistic),
                f"that is the {''.join(channels_first)} (channels-first, PyTorch) layout; the question's input is "
                f"{spec.describe()}, channels last",
            )
        )
    return tuple(alt for alt in candidates if alt.shape != reference)
