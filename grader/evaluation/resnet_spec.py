"""The reference CIFAR ResNet family at the level of shapes: one member's spec, how to make one, how to describe one.

Torch-free, so that architecture inference (grader.evaluation.architecture) runs where torch is not imported;
grader.evaluation.resnet builds the module that runs a spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Activation = Literal["post", "pre"]
BlockKind = Literal["standard", "bottleneck"]


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
