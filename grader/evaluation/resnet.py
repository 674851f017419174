"""The reference CIFAR ResNet family: a shape-level spec of one member and the module that runs it.

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

Activation = Literal["post", "pre"]
BlockKind = Literal["standard", "bottleneck"]
BN_EPS = 1e-5
"""PyTorch's default and the course starter code's; it cannot be read from the weights."""


@dataclass(frozen=True, slots=True)
class ConvSpec:
    in_channels: int
    out_channels: int
    kernel: int
    bias: bool = False


@dataclass(frozen=True, slots=True)
class BNSpec:
    channels: int
    affine: bool = True


@dataclass(frozen=True, slots=True)
class BlockSpec:
    """One residual block; `convs`/`bns` are the residual path in forward order (one BN per conv)."""

    kind: BlockKind
    activation: Activation
    stride: int
    convs: tuple[ConvSpec, ...]
    bns: tuple[BNSpec, ...]
    shortcut_conv: ConvSpec | None = None
    shortcut_bn: BNSpec | None = None

    @property
    def in_channels(self) -> int:
        return self.convs[0].in_channels

    @property
    def width(self) -> int:
        return self.convs[0].out_channels

    @property
    def out_channels(self) -> int:
        return self.convs[-1].out_channels

    @property
    def shortcut(self) -> str:
        if self.shortcut_conv is not None:
            return "projection_bn" if self.shortcut_bn is not None else "projection"
        if self.in_channels != self.out_channels or self.stride != 1:
            return "option_a"
        return "identity"


@dataclass(frozen=True, slots=True)
class ResNetSpec:
    stem: ConvSpec
    stem_bn: BNSpec | None
    blocks: tuple[BlockSpec, ...]
    final_bn: BNSpec | None
    num_classes: int
    fc_bias: bool = True

    def stages(self) -> list[list[int]]:
        """Block indices grouped by stage: a new stage starts where the block width changes."""
        stages: list[list[int]] = []
        for index, block in enumerate(self.blocks):
            if not stages or block.width != self.blocks[stages[-1][-1]].width:
                stages.append([])
            stages[-1].append(index)
        return stages


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


def canonical_block_names(spec: ResNetSpec) -> list[str]:
    """`stages.{s}.{b}` for every block, in forward order (the prefix of its parameters in CifarResNet)."""
    return [f"stages.{s}.{b}" for s, stage in enumerate(spec.stages()) for b in range(len(stage))]


def make_spec(
    *,
    activation: Activation,
    kind: BlockKind,
    blocks_per_stage: int,
    first_width: int = 16,
    stages: int = 3,
    shortcut: Literal["option_a", "projection", "projection_bn"] = "projection",
    stem_bn: bool | None = None,
    final_bn: bool | None = None,
    num_classes: int = 10,
) -> ResNetSpec:
    """A family member by its parameters (v1: post/standard with stem BN; v2: pre/bottleneck with final BN)."""
    expansion = 4 if kind == "bottleneck" else 1
    blocks: list[BlockSpec] = []
    channels = first_width
    for s in range(stages):
        width = first_width * 2**s
        for b in range(blocks_per_stage):
            stride = 2 if s > 0 and b == 0 else 1
            blocks.append(_make_block(activation, kind, channels, width, width * expansion, stride, shortcut))
            channels = width * expansion
    return ResNetSpec(
        stem=ConvSpec(3, first_width, 3),
        stem_bn=BNSpec(first_width) if (activation == "post" if stem_bn is None else stem_bn) else None,
        blocks=tuple(blocks),
        final_bn=BNSpec(channels) if (activation == "pre" if final_bn is None else final_bn) else None,
        num_classes=num_classes,
    )


def _make_block(
    activation: Activation, kind: BlockKind, cin: int, width: int, cout: int, stride: int, shortcut: str
) -> BlockSpec:
    if kind == "standard":
        convs = (ConvSpec(cin, width, 3), ConvSpec(width, cout, 3))
    else:
        convs = (ConvSpec(cin, width, 1), ConvSpec(width, width, 3), ConvSpec(width, cout, 1))
    bn_channels = [c.in_channels if activation == "pre" else c.out_channels for c in convs]
    needs_shortcut = cin != cout or stride != 1
    projection = needs_shortcut and shortcut != "option_a"
    return BlockSpec(
        kind=kind,
        activation=activation,
        stride=stride,
        convs=convs,
        bns=tuple(BNSpec(c) for c in bn_channels),
        shortcut_conv=ConvSpec(cin, cout, 1) if projection else None,
        shortcut_bn=BNSpec(cout) if projection and shortcut == "projection_bn" else None,
    )


def describe_spec(spec: ResNetSpec) -> dict[str, Any]:
    """The JSON-ready summary graders and students see."""
    activations = {b.activation for b in spec.blocks}
    kinds = {b.kind for b in spec.blocks}
    activation = activations.pop() if len(activations) == 1 else "mixed"
    kind = kinds.pop() if len(kinds) == 1 else "mixed"
    per_stage = [len(stage) for stage in spec.stages()]
    depth = 2 + sum(len(b.convs) for b in spec.blocks)
    version = {"post": 1, "pre": 2}.get(activation)
    return {
        "version": version,
        "activation": activation,
        "block": kind,
        "name": f"ResNet-{depth} "
        + (f"v{version}" if version else "(mixed blocks)")
        + f" ({activation}-activation, {kind} blocks)",
        "depth": depth,
        "blocks_per_stage": per_stage,
        "n": per_stage[0] if len(set(per_stage)) == 1 else None,
        "stage_widths": [spec.blocks[stage[0]].width for stage in spec.stages()],
        "first_width": spec.stem.out_channels,
        "output_width": spec.blocks[-1].out_channels,
        "num_classes": spec.num_classes,
        "shortcut": _shortcut_summary(spec),
        "stem_bn": spec.stem_bn is not None,
        "final_bn": spec.final_bn is not None,
        "conv_bias": spec.stem.bias or any(c.bias for b in spec.blocks for c in b.convs),
    }


def _shortcut_summary(spec: ResNetSpec) -> str:
    kinds = {b.shortcut for b in spec.blocks} - {"identity"}
    if not kinds:
        return "identity"
    return kinds.pop() if len(kinds) == 1 else "mixed: " + ", ".join(sorted(kinds))
