"""The reference CIFAR ResNet family: the module that runs a member (its shape-level spec: resnet_spec, re-exported).

Members: post-activation (v1) or full pre-activation (v2) blocks, standard (3×3, 3×3) or bottleneck
(1×1, 3×3, 1×1) paths, any blocks per stage and widths, identity, "option A" (stride-2 subsample plus
zero-padded channels) or projection (1×1 conv, with or without BN) shortcuts, an optional BN-ReLU after
the stem (v1) and before pooling (v2), global average pooling and one linear classifier.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args, get_type_hints

import torch
import torch.nn.functional as F
from torch import nn

from grader.evaluation.resnet_spec import Activation as Activation
from grader.evaluation.resnet_spec import BlockKind as BlockKind
from grader.evaluation.resnet_spec import BlockSpec, BNSpec, ConvSpec, ResNetSpec
from grader.evaluation.resnet_spec import canonical_block_names as canonical_block_names
from grader.evaluation.resnet_spec import describe_spec as describe_spec
from grader.evaluation.resnet_spec import make_spec as make_spec

BN_EPS = 1e-5
"""PyTorch's default and the course starter code's; it cannot be read from the weights."""


@dataclass(frozen=True, slots=True)
class ForwardVariant:
    """Forward-pass choices the weights cannot reveal; the default is the course's (TF official ResNet) one."""

    option_a_padding: Literal["symmetric", "end"] = "symmetric"
    """Where option A puts its zero channels: both sides (He et al. / akamaster) or after the input's."""
    preact_shortcut_input: Literal["activated", "raw"] = "activated"
    """Pre-activation blocks: does a non-identity shortcut see BN-ReLU(x) (He et al. v2) or x?"""
    bottleneck_stride_conv: Literal["conv2", "conv1"] = "conv2"
    """Which bottleneck conv downsamples: the 3×3 (TF official v2, torchvision) or the first 1×1."""

    def to_json(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> ForwardVariant:
        """The variant `to_json` wrote; ValueError for anything else (it may come from another process)."""
        if not isinstance(data, dict) or set(data) != {f.name for f in fields(cls)}:
            raise ValueError(f"not a forward variant: {str(data)[:200]}")
        for name, hint in get_type_hints(cls).items():
            if data[name] not in get_args(hint):
                raise ValueError(f"forward variant {name} must be one of {get_args(hint)}, got {data[name]!r}")
        return cls(**data)


def applicable_variants(spec: ResNetSpec) -> list[ForwardVariant]:
    """The default first, then every combination of the choices that matter for `spec`."""
    option_a = any(b.shortcut == "option_a" and b.out_channels != b.in_channels for b in spec.blocks)
    preact = any(b.activation == "pre" and b.shortcut not in ("identity",) for b in spec.blocks)
    strided = any(b.kind == "bottleneck" and b.stride > 1 for b in spec.blocks)
    paddings = ("symmetric", "end") if option_a else ("symmetric",)
    inputs = ("activated", "raw") if preact else ("activated",)
    strides = ("conv2", "conv1") if strided else ("conv2",)
    return [ForwardVariant(p, i, s) for p in paddings for i in inputs for s in strides]  # type: ignore[arg-type]


def _conv(spec: ConvSpec, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(
        spec.in_channels, spec.out_channels, spec.kernel, stride=stride, padding=spec.kernel // 2, bias=spec.bias
    )


def _bn(spec: BNSpec) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(spec.channels, eps=BN_EPS, affine=spec.affine)


class Shortcut(nn.Module):
    """Identity, option A (subsample + zero channels) or a 1×1 projection with optional BN."""

    def __init__(self, block: BlockSpec, variant: ForwardVariant) -> None:
        super().__init__()
        self.stride = block.stride
        extra = block.out_channels - block.in_channels
        front = extra // 2 if variant.option_a_padding == "symmetric" else 0
        self.padding = (0, 0, 0, 0, front, extra - front)
        self.conv = _conv(block.shortcut_conv, block.stride) if block.shortcut_conv else None
        self.bn = _bn(block.shortcut_bn) if block.shortcut_bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            x = self.conv(x)
            return self.bn(x) if self.bn is not None else x
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, self.padding) if any(self.padding) else x


class Block(nn.Module):
    """A residual block; parameters are named conv1..3, bn1..3, shortcut.conv, shortcut.bn.

    In-place ReLU and additions only ever write to tensors this block just created (BN and conv outputs):
    the same values as out-of-place, fewer allocations.
    """

    def __init__(self, spec: BlockSpec, variant: ForwardVariant) -> None:
        super().__init__()
        self.pre = spec.activation == "pre"
        self.shortcut_sees_activation = self.pre and variant.preact_shortcut_input == "activated"
        self.identity = spec.shortcut == "identity"
        stride_at = 0 if spec.kind == "standard" or variant.bottleneck_stride_conv == "conv1" else 1
        for k, (conv, bn) in enumerate(zip(spec.convs, spec.bns, strict=True)):
            setattr(self, f"conv{k + 1}", _conv(conv, spec.stride if k == stride_at else 1))
            setattr(self, f"bn{k + 1}", _bn(bn))
        self.shortcut = Shortcut(spec, variant)
        # A plain list (not registered again) so forward can walk the path in order.
        self.path: list[tuple[nn.Module, nn.Module]] = [
            (getattr(self, f"conv{k + 1}"), getattr(self, f"bn{k + 1}")) for k in range(len(spec.convs))
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._pre(x) if self.pre else self._post(x)

    def _post(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for k, (conv, bn) in enumerate(self.path):
            out = bn(conv(out))
            if k < len(self.path) - 1:
                out = F.relu(out, inplace=True)
        return F.relu(out.add_(self.shortcut(x)), inplace=True)

    def _pre(self, x: torch.Tensor) -> torch.Tensor:
        (conv1, bn1), *rest = self.path
        activated = F.relu(bn1(x), inplace=True)
        residual = x if self.identity else self.shortcut(activated if self.shortcut_sees_activation else x)
        out = conv1(activated)
        for conv, bn in rest:
            out = conv(F.relu(bn(out), inplace=True))
        return out.add_(residual)


class CifarResNet(nn.Module):
    """Any member of the family; parameter names: stem, stem_bn, stages.{s}.{b}.*, final_bn, fc."""

    def __init__(self, spec: ResNetSpec, variant: ForwardVariant | None = None) -> None:
        super().__init__()
        variant = variant or ForwardVariant()
        self.stem = _conv(spec.stem)
        self.stem_bn = _bn(spec.stem_bn) if spec.stem_bn else None
        self.stages = nn.ModuleList(
            nn.Sequential(*(Block(spec.blocks[i], variant) for i in stage)) for stage in spec.stages()
        )
        self.final_bn = _bn(spec.final_bn) if spec.final_bn else None
        self.fc = nn.Linear(spec.blocks[-1].out_channels, spec.num_classes, bias=spec.fc_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.stem_bn is not None:
            x = F.relu(self.stem_bn(x), inplace=True)
        for stage in self.stages:
            x = stage(x)
        if self.final_bn is not None:
            x = F.relu(self.final_bn(x), inplace=True)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))
