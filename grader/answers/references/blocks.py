"""Reference residual blocks in torch (Q2): parameter counts per convention, likely slips, receptive fields."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from grader.answers.specs import BlockSpec


@dataclass(frozen=True, slots=True)
class Convention:
    """Which extras a count includes besides the conv weights."""

    bn: bool
    bias: bool

    @property
    def includes(self) -> frozenset[str]:
        return frozenset(name for name, on in (("bn", self.bn), ("bias", self.bias)) if on)

    def describe(self) -> str:
        extras = [text for text, on in (("conv biases", self.bias), ("BN γ and β", self.bn)) if on]
        return "conv weights + " + " + ".join(extras) if extras else "conv weights only (no BN, no bias)"


CONVENTIONS = tuple(Convention(bn, bias) for bn in (False, True) for bias in (False, True))


@dataclass(frozen=True, slots=True)
class Slip:
    """A count that a known mistake produces, under a convention."""

    description: str
    convention: Convention
    value: int


class ResidualBlock(nn.Module):
    """A residual block with an identity shortcut, built from a BlockSpec (post- or pre-activation)."""

    def __init__(self, spec: BlockSpec, *, bn: bool, bias: bool) -> None:
        super().__init__()
        self.pre = spec.activation == "pre"
        layers = conv_layers(spec)
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, padding=k // 2, bias=bias) for i, o, k in layers)
        norm_width = [i if self.pre else o for i, o, _ in layers]
        self.norms = nn.ModuleList(nn.BatchNorm2d(c) if bn else nn.Identity() for c in norm_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        last = len(self.convs) - 1
        for index, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            if self.pre:
                h = conv(torch.relu(norm(h)))
            else:
                h = norm(conv(h))
                h = torch.relu(h) if index < last else h
        return h + x if self.pre else torch.relu(h + x)


def conv_layers(spec: BlockSpec) -> list[tuple[int, int, int]]:
    """(in, out, kernel) of each convolution, in order."""
    c, k = spec.channels, spec.kernel_size
    if spec.kind == "standard":
        return [(c, c, k), (c, c, k)]
    b = spec.bottleneck_channels or c
    return [(c, b, 1), (b, b, k), (b, c, 1)]


def count(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


@lru_cache(maxsize=64)
def parameter_counts(spec: BlockSpec) -> dict[Convention, int]:
    """Trainable parameters of the block under every counting convention (torch numel)."""
    return {
        convention: count(ResidualBlock(spec, bn=convention.bn, bias=convention.bias)) for convention in CONVENTIONS
    }


@lru_cache(maxsize=64)
def parameter_slips(spec: BlockSpec) -> tuple[Slip, ...]:
    """Counts produced by the usual mistakes, each under every convention it applies to."""
    slips: list[Slip] = []
    for convention in CONVENTIONS:
        block = ResidualBlock(spec, bn=convention.bn, bias=convention.bias)
        slips.extend(_slips(spec, block, convention))
    return tuple(slips)


def _slips(spec: BlockSpec, block: ResidualBlock, convention: Convention) -> list[Slip]:
    total = count(block)
    norms = [count(norm) for norm in block.norms]
    convs = list(block.convs)
    k = spec.kernel_size
    found = [
        Slip(
            f"a {spec.channels}→{spec.channels} 1x1 projection shortcut counted; an identity shortcut has "
            "no parameters",
            convention,
            total + count(nn.Conv2d(spec.channels, spec.channels, 1, bias=convention.bias)),
        ),
        Slip(
            f"a {k}x{k} kernel counted as {k} weights instead of {k}·{k}",
            convention,
            total - sum(c.weight.numel() * (k - 1) // k for c in convs if c.kernel_size[0] == k),
        ),
    ]
    if convention.bn:
        buffers = sum(
            b.numel() for name, b in block.norms.named_buffers() if name.endswith(("running_mean", "running_var"))
        )
        found.append(
            Slip(
                "BN's running mean and variance counted; they are buffers, not trainable parameters",
                convention,
                total + buffers,
            )
        )
        found.append(
            Slip(
                f"BN counted for one layer only; each of the {len(norms)} BN layers has 2 × its channels",
                convention,
                total - sum(norms[1:]),
            )
        )
    if spec.kind == "standard":
        found.append(Slip("only one of the two convolutions counted", convention, count(convs[0]) + norms[0]))
    else:
        found.append(
            Slip(
                f"only the {k}x{k} convolution counted; the 1x1 convolutions have parameters too",
                convention,
                count(convs[1]) + norms[1],
            )
        )
    return found


@lru_cache(maxsize=64)
def receptive_field(spec: BlockSpec) -> tuple[int, int]:
    """Height and width of the input region one output pixel depends on: the support of its input gradient."""
    generator = torch.Generator().manual_seed(0)
    block = ResidualBlock(spec, bn=True, bias=False).double().eval()
    with torch.no_grad():
        for conv in block.convs:
            # positive weights and inputs keep every ReLU open, so no gradient is zeroed by chance
            conv.weight.copy_(0.1 + torch.rand(conv.weight.shape, generator=generator, dtype=torch.float64))
    size = 2 * sum(k - 1 for _, _, k in conv_layers(spec)) + 5
    x = (0.1 + torch.rand(1, spec.channels, size, size, generator=generator, dtype=torch.float64)).requires_grad_()
    block(x)[0, :, size // 2, size // 2].sum().backward()
    assert x.grad is not None
    support = x.grad.abs().sum(dim=(0, 1)) > 0
    rows = support.any(dim=1).nonzero().flatten()
    cols = support.any(dim=0).nonzero().flatten()
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
