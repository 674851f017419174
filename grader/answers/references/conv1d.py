"""Reference 1-D convolution (Q4): A and B as autograd Jacobians of F.conv1d, symbolic and at a random probe.

`torch.nn.functional.conv1d` computes a cross-correlation, y_{j,t} = Σ_i Σ_k ω_k^{ij} x_{i,t+k-1}; its weight
tensor is indexed [output j, input i, tap k]. A symbolic matrix is the sum over weights of the Jacobian with
that one weight set to 1, times the weight's symbol. The backward kernels are read off B (the Jacobian of
autograd's backward pass) at the padding for which a convolution of dL/dY reproduces autograd's dL/dX.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

import numpy as np
import sympy
import torch
import torch.nn.functional as F

from grader.answers.expressions import Weight
from grader.answers.specs import Conv1dSpec
from grader.answers.symbolic import substitute, symbol
from grader.errors import RubricError

SEED = 636
Mistakes = frozenset[str]


def weight_tensor(spec: Conv1dSpec, values: Mapping[Weight, float]) -> torch.Tensor:
    tensor = torch.zeros(spec.out_channels, spec.in_channels, spec.kernel_size, dtype=torch.float64)
    for weight, value in values.items():
        tensor[weight.target - 1, weight.source - 1, weight.tap - 1] = value
    return tensor


def forward_jacobian(spec: Conv1dSpec, weight: torch.Tensor) -> np.ndarray:
    """dY~/dX~: rows y_{j,t}, columns x_{i,s}, channel by channel."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x.view(1, spec.in_channels, spec.length), weight, padding=spec.padding).reshape(-1)

    zero = torch.zeros(spec.in_channels * spec.length, dtype=torch.float64)
    return torch.autograd.functional.jacobian(forward, zero).numpy()


def backward_jacobian(spec: Conv1dSpec, weight: torch.Tensor) -> np.ndarray:
    """B in dL/dX~ = B dL/dY~, column by column from autograd's backward pass for each unit dL/dY~."""
    x = torch.zeros(1, spec.in_channels, spec.length, dtype=torch.float64, requires_grad=True)
    y = F.conv1d(x, weight, padding=spec.padding).reshape(-1)
    columns = [torch.autograd.grad(y, x, unit, retain_graph=True)[0].reshape(-1) for unit in torch.eye(len(y))]
    return torch.stack(columns, dim=1).numpy()


def _symbolic(spec: Conv1dSpec, jacobian: object) -> sympy.ImmutableMatrix:
    space = spec.weight_space
    parts = [(jacobian(spec, weight_tensor(spec, {w: 1.0})), symbol(w)) for w in space.all()]  # type: ignore[operator]
    rows, cols = parts[0][0].shape
    return sympy.ImmutableMatrix(
        rows, cols, lambda r, c: sympy.Add(*(round(j[r, c]) * s for j, s in parts if j[r, c] != 0))
    )


@lru_cache(maxsize=32)
def symbolic_forward(spec: Conv1dSpec) -> sympy.ImmutableMatrix:
    return _symbolic(spec, forward_jacobian)


@lru_cache(maxsize=32)
def symbolic_backward(spec: Conv1dSpec) -> sympy.ImmutableMatrix:
    return _symbolic(spec, backward_jacobian)


@dataclass(frozen=True)
class Probe:
    """Random weights and gradients (float64, fixed seed) for the numeric checks."""

    values: Mapping[Weight, float]
    weight: torch.Tensor
    grad_output: np.ndarray
    """dL/dY, shape (out_channels, output_length)."""
    grad_input: np.ndarray
    """dL/dX from autograd, shape (in_channels, length)."""


@lru_cache(maxsize=32)
def probe(spec: Conv1dSpec) -> Probe:
    generator = torch.Generator().manual_seed(SEED)
    weight = torch.randn(
        spec.out_channels, spec.in_channels, spec.kernel_size, generator=generator, dtype=torch.float64
    )
    x = torch.randn(1, spec.in_channels, spec.length, generator=generator, dtype=torch.float64, requires_grad=True)
    y = F.conv1d(x, weight, padding=spec.padding)
    grad_output = torch.randn(y.shape, generator=generator, dtype=torch.float64)
    y.backward(grad_output)
    assert x.grad is not None
    values = {w: float(weight[w.target - 1, w.source - 1, w.tap - 1]) for w in spec.weight_space.all()}
    return Probe(values, weight, grad_output[0].numpy(), x.grad[0].numpy())


@dataclass(frozen=True)
class Variant:
    """The reference matrix as a classic mistake would have it (no mistakes: the reference itself)."""

    mistakes: Mistakes
    symbolic: sympy.ImmutableMatrix
    numeric: np.ndarray


def _rename(spec: Conv1dSpec, mistakes: Mistakes) -> dict[sympy.Symbol, sympy.Symbol]:
    """Symbol substitution for flipped taps (ω_k → ω_{K+1-k}) and swapped channels (ω^{ij} → ω^{ji})."""
    renamed = {}
    for w in spec.weight_space.all():
        tap = spec.kernel_size + 1 - w.tap if "flipped_taps" in mistakes else w.tap
        source, target = (w.target, w.source) if "swapped_channels" in mistakes else (w.source, w.target)
        renamed[symbol(w)] = symbol(Weight(tap, source, target))
    return renamed


def _mistaken_weight(weight: torch.Tensor, mistakes: Mistakes) -> torch.Tensor:
    """The weight tensor whose true Jacobian equals the mistaken matrix (same renaming, done numerically)."""
    if "flipped_taps" in mistakes:
        weight = weight.flip(-1)
    if "swapped_channels" in mistakes:
        weight = weight.transpose(0, 1)
    return weight


def _mistake_sets(spec: Conv1dSpec, names: tuple[str, ...]) -> Iterator[Mistakes]:
    square = spec.in_channels == spec.out_channels
    usable = tuple(name for name in names if square or name != "swapped_channels")
    for size in range(len(usable) + 1):
        for chosen in combinations(usable, size):
            yield frozenset(chosen)


@lru_cache(maxsize=32)
def forward_variants(spec: Conv1dSpec) -> tuple[Variant, ...]:
    """A and its classic mistakes (Aᵀ, flipped taps, swapped channels, and their combinations), fewest first."""
    return _variants(spec, ("transposed", "flipped_taps", "swapped_channels"), backward=False)


@lru_cache(maxsize=32)
def backward_variants(spec: Conv1dSpec) -> tuple[Variant, ...]:
    """B and its classic mistakes (A itself, i.e. untransposed; flipped taps; swapped channels)."""
    return _variants(spec, ("untransposed", "flipped_taps", "swapped_channels"), backward=True)


def _variants(spec: Conv1dSpec, names: tuple[str, ...], *, backward: bool) -> tuple[Variant, ...]:
    reference = symbolic_backward(spec) if backward else symbolic_forward(spec)
    variants = []
    for mistakes in _mistake_sets(spec, names):
        weight = _mistaken_weight(probe(spec).weight, mistakes)
        numeric = backward_jacobian(spec, weight) if backward else forward_jacobian(spec, weight)
        symbolic = reference.xreplace(_rename(spec, mistakes))
        if mistakes & {"transposed", "untransposed"}:
            numeric, symbolic = numeric.T, symbolic.T
        variants.append(Variant(mistakes, symbolic, numeric))
    return tuple(variants)


@lru_cache(maxsize=32)
def backward_is_transpose(spec: Conv1dSpec) -> bool:
    """Whether autograd's B equals Aᵀ, symbolically and at the probe (it does for any convolution)."""
    numeric = backward_jacobian(spec, probe(spec).weight)
    return bool(symbolic_backward(spec) == symbolic_forward(spec).T) and np.allclose(
        numeric, forward_jacobian(spec, probe(spec).weight).T
    )


@dataclass(frozen=True)
class BackwardConvolution:
    """dL/dX as a convolution of dL/dY padded by `padding` zeros per side, with kernels U^{ij}."""

    padding: int
    kernels: Mapping[tuple[int, int], tuple[sympy.Expr, ...]]
    """U^{ij}: i = channel of dL/dY it scans, j = channel of dL/dX it feeds."""
    numeric: np.ndarray
    """The kernels at the probe, as a conv1d weight [j, i, tap]."""


@lru_cache(maxsize=32)
def backward_convolution(spec: Conv1dSpec) -> BackwardConvolution:
    """Read the kernels off B at each padding in turn; keep the first that reproduces autograd's dL/dX."""
    check = probe(spec)
    for padding in range(spec.kernel_size + spec.padding + 1):
        kernels = _kernels_from_backward(spec, symbolic_backward(spec), padding)
        if kernels is None:
            continue
        numeric = kernel_array(
            spec, {pair: [substitute(e, check.values) for e in taps] for pair, taps in kernels.items()}
        )
        result = apply_backward(check.grad_output, numeric, (padding, padding))
        if result is not None and result.shape == check.grad_input.shape and np.allclose(result, check.grad_input):
            return BackwardConvolution(padding, kernels, numeric)
    raise RubricError(f"the backward pass of {spec} is not a stride-1 convolution of dL/dY")


def _kernels_from_backward(
    spec: Conv1dSpec, backward: sympy.ImmutableMatrix, padding: int
) -> dict[tuple[int, int], tuple[sympy.Expr, ...]] | None:
    length, out_length = spec.length, spec.output_length
    kernels = {}
    for i in range(1, spec.out_channels + 1):
        for j in range(1, spec.in_channels + 1):
            taps = []
            for m in range(spec.kernel_size):
                entries = {
                    backward[(j - 1) * length + t, (i - 1) * out_length + t + m - padding]
                    for t in range(length)
                    if 0 <= t + m - padding < out_length
                }
                if len(entries) > 1:
                    return None  # not the same tap along the diagonal: no convolution at this padding
                taps.append(entries.pop() if entries else sympy.Integer(0))
            kernels[(i, j)] = tuple(taps)
    return kernels


def kernel_array(spec: Conv1dSpec, kernels: Mapping[tuple[int, int], list[float]]) -> np.ndarray:
    """Kernels U^{ij} as a conv1d weight: [j (channel of dL/dX), i (channel of dL/dY), tap]."""
    array = np.zeros((spec.in_channels, spec.out_channels, spec.kernel_size))
    for (i, j), taps in kernels.items():
        array[j - 1, i - 1, :] = taps
    return array


def apply_backward(grad_output: np.ndarray, kernels: np.ndarray, padding: tuple[int, int]) -> np.ndarray | None:
    """conv1d (cross-correlation) of zero-padded dL/dY with the kernels; None when the padded input is too short."""
    padded = F.pad(torch.from_numpy(grad_output).unsqueeze(0), padding)
    if padded.shape[-1] < kernels.shape[-1]:
        return None
    return F.conv1d(padded, torch.from_numpy(np.ascontiguousarray(kernels))).squeeze(0).numpy()
