"""Inferring a checkpoint's place in the reference ResNet family from tensor shapes, and mapping its names.

Names are only used to group tensors into layers (`a.b.conv1.weight` → layer `a.b.conv1`) and layers into
blocks (the deepest name prefix holding 2–4 convolutions); roles, order and pre- vs post-activation come
from shapes: convolutions chain by channel counts, and a block's BNs match its convs' outputs
(post-activation, BN after each conv) or inputs (pre-activation, BN before each conv).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from grader.evaluation.checkpoint_format import CheckpointRejected
from grader.evaluation.resnet_spec import (
    Activation,
    BlockSpec,
    BNSpec,
    ConvSpec,
    ResNetSpec,
    canonical_block_names,
    describe_spec,
)

BN_LEAVES = frozenset({"weight", "bias", "running_mean", "running_var", "num_batches_tracked"})
SHORTCUT_NAME = re.compile(r"short|proj|downsampl|skip|^sc$|^identity", re.IGNORECASE)
MAX_TENSORS = 5_000


class TensorLike(Protocol):
    """What inference reads of a tensor: a torch.Tensor's, or a record of one read from the file without torch
    (grader.evaluation.structure.TensorInfo, for the intake pre-check). Importing this module imports no torch."""

    @property
    def shape(self) -> Sequence[int]: ...

    @property
    def dtype(self) -> object: ...

    def dim(self) -> int: ...

    def is_floating_point(self) -> bool: ...


@dataclass(slots=True)
class Layer:
    """One module of the student's network: its name and tensors by leaf name ("weight", "running_var")."""

    name: str
    kind: str
    """"conv", "bn" or "linear"."""
    tensors: Mapping[str, TensorLike]

    @property
    def weight(self) -> TensorLike:
        return self.tensors["weight"]

    @property
    def channels(self) -> int:
        return int(self.tensors["running_mean"].shape[0])

    @property
    def cin(self) -> int:
        return int(self.weight.shape[1])

    @property
    def cout(self) -> int:
        return int(self.weight.shape[0])

    @property
    def kernel(self) -> int:
        return int(self.weight.shape[-1])

    def conv_spec(self) -> ConvSpec:
        return ConvSpec(self.cin, self.cout, self.kernel, bias="bias" in self.tensors)

    def bn_spec(self) -> BNSpec:
        return BNSpec(self.channels, affine="weight" in self.tensors)

    def shape_text(self) -> str:
        if self.kind == "bn":
            return f"{self.name} (BN, {self.channels} channels)"
        return f"{self.name} ({self.kernel}×{self.kernel}, {self.cin}→{self.cout})"


@dataclass(slots=True)
class ParsedBlock:
    """A block's layers in forward order, with the shape evidence about its activation order."""

    prefix: str
    kind: str
    convs: list[Layer]
    bns: list[Layer]
    shortcut_conv: Layer | None
    shortcut_bn: Layer | None
    fits_pre: bool
    fits_post: bool


@dataclass(slots=True)
class InferredNetwork:
    """The spec, which student tensor fills each reference parameter, and the evidence for both."""

    spec: ResNetSpec
    mapping: dict[str, str]
    """Reference parameter name (CifarResNet) → the checkpoint's tensor name."""
    evidence: list[str]

    def describe(self) -> dict[str, Any]:
        summary = describe_spec(self.spec)
        summary["evidence"] = self.evidence
        return summary


def infer_network(tensors: Mapping[str, TensorLike]) -> InferredNetwork:
    """Spec and mapping for a state dict; CheckpointRejected naming the tensor or layer that does not fit."""
    if len(tensors) > MAX_TENSORS:
        raise CheckpointRejected(f"checkpoint has {len(tensors)} tensors; a CIFAR ResNet has a few hundred")
    layers = group_layers(tensors)
    convs = [layer for layer in layers if layer.kind == "conv"]
    blocks = _block_prefixes(convs)
    if not blocks:
        raise CheckpointRejected("no residual blocks found: expected modules holding 2–3 convolutions each")
    inside = {layer.name for prefix in blocks for layer in _members(layers, prefix)}
    outside = [layer for layer in layers if layer.name not in inside]
    stem = _stem(outside)
    parsed = _parse_blocks(layers, blocks, stem.cout)
    return _assemble(stem, outside, parsed)


def group_layers(tensors: Mapping[str, TensorLike]) -> list[Layer]:
    """Tensors grouped by module name, each classified as conv, BN or linear from its tensors' shapes."""
    groups: dict[str, dict[str, TensorLike]] = {}
    for name, tensor in tensors.items():
        module, _, leaf = name.rpartition(".")
        groups.setdefault(module, {})[leaf] = tensor
    return [_classify(module, leaves) for module, leaves in sorted(groups.items(), key=lambda i: natural_key(i[0]))]


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key where `layer.10` follows `layer.9` and `conv2` precedes `conv10`."""
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in parts if part)


def _classify(module: str, leaves: Mapping[str, TensorLike]) -> Layer:
    weight = leaves.get("weight")
    where = module or "<top level>"
    for leaf, tensor in leaves.items():
        if leaf != "num_batches_tracked" and not tensor.is_floating_point():
            raise CheckpointRejected(f"cannot map tensor {where}.{leaf}: dtype {tensor.dtype} is not floating point")
    if "running_mean" in leaves or "running_var" in leaves:
        return _bn_layer(module, leaves)
    if weight is not None and weight.dim() == 1:
        raise CheckpointRejected(
            f"cannot map {where}: a batch norm without running statistics (track_running_stats=False) "
            "cannot be evaluated in eval mode"
        )
    if weight is not None and weight.dim() == 4 and set(leaves) <= {"weight", "bias"}:
        return _conv_layer(module, leaves)
    if weight is not None and weight.dim() == 2 and set(leaves) <= {"weight", "bias"}:
        return Layer(module, "linear", leaves)
    unexpected = ", ".join(f"{where}.{leaf} {tuple(t.shape)}" for leaf, t in leaves.items())
    raise CheckpointRejected(
        f"cannot map tensor(s) {unexpected}: not a convolution, batch norm or linear layer of a CIFAR ResNet"
    )


def _bn_layer(module: str, leaves: Mapping[str, TensorLike]) -> Layer:
    extra = set(leaves) - BN_LEAVES
    needed = {"running_mean", "running_var"} - set(leaves)
    if extra or needed or ("weight" in leaves) != ("bias" in leaves):
        raise CheckpointRejected(
            f"cannot map batch norm {module}: has {sorted(leaves)}, expected weight, bias, running_mean, running_var"
        )
    channels = leaves["running_mean"].shape
    if any(t.shape != channels for k, t in leaves.items() if k != "num_batches_tracked") or len(channels) != 1:
        raise CheckpointRejected(f"cannot map batch norm {module}: its tensors have different shapes")
    return Layer(module, "bn", leaves)


def _conv_layer(module: str, leaves: Mapping[str, TensorLike]) -> Layer:
    out_channels, _, height, width = leaves["weight"].shape
    if height != width or height % 2 == 0:
        raise CheckpointRejected(
            f"cannot map convolution {module}: kernel {height}×{width}; expected square odd kernels (3×3 or 1×1)"
        )
    if "bias" in leaves and tuple(leaves["bias"].shape) != (out_channels,):
        raise CheckpointRejected(
            f"cannot map {module}.bias: shape {tuple(leaves['bias'].shape)}, expected ({out_channels},)"
        )
    return Layer(module, "conv", leaves)


def _under(name: str, prefix: str) -> bool:
    return name.startswith(prefix + ".")


def _members(layers: Iterable[Layer], prefix: str) -> list[Layer]:
    return [layer for layer in layers if _under(layer.name, prefix)]


def _block_prefixes(convs: list[Layer]) -> list[str]:
    """Block name prefixes: per conv the deepest proper prefix holding 2–4 convs, outermost kept, widened."""
    names = [conv.name for conv in convs]
    count = {}
    candidates: set[str] = set()
    for name in names:
        parts = name.split(".")
        for depth in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:depth])
            count[prefix] = count.get(prefix) or sum(_under(n, prefix) for n in names)
            if count[prefix] >= 2:
                if count[prefix] <= 4:
                    candidates.add(prefix)
                break
    # A block whose residual path sits in a sub-container (`0.body`) next to its shortcut (`0.shortcut`).
    outermost = {c for c in candidates if not any(_under(c, other) for other in candidates)}
    return sorted((_widen(prefix, names) for prefix in outermost), key=natural_key)


def _widen(prefix: str, names: list[str]) -> str:
    """Climb while the parent holds no other convs, so BNs kept in a sibling container (`0.bns`) join."""
    mine = {n for n in names if _under(n, prefix)}
    while "." in prefix:
        parent = prefix.rsplit(".", 1)[0]
        if {n for n in names if _under(n, parent)} != mine:
            break
        prefix = parent
    return prefix


def _stem(outside: list[Layer]) -> Layer:
    convs = [layer for layer in outside if layer.kind == "conv"]
    if len(convs) != 1:
        names = ", ".join(c.shape_text() for c in convs) or "none"
        raise CheckpointRejected(
            f"expected exactly one convolution outside the residual blocks (the first layer), found: {names}"
        )
    stem = convs[0]
    if stem.cin != 3:
        raise CheckpointRejected(
            f"cannot map {stem.name}: the first convolution takes {stem.cin} channels, not 3 (RGB)"
        )
    return stem


def _parse_blocks(layers: list[Layer], prefixes: list[str], cin: int) -> list[ParsedBlock]:
    """Blocks in name order (file order as a fallback), each parsed from the previous block's output width."""
    try:
        return _chain(layers, prefixes, cin)
    except CheckpointRejected as first_error:
        first_seen = {layer.name: i for i, layer in enumerate(layers)}
        by_file = sorted(prefixes, key=lambda p: min(first_seen[l.name] for l in _members(layers, p)))  # noqa: E741
        if by_file == prefixes:
            raise
        try:
            return _chain(layers, by_file, cin)
        except CheckpointRejected:
            raise first_error from None


def _chain(layers: list[Layer], prefixes: list[str], cin: int) -> list[ParsedBlock]:
    parsed: list[ParsedBlock] = []
    for prefix in prefixes:
        block = parse_block(prefix, _members(layers, prefix), cin)
        parsed.append(block)
        cin = block.convs[-1].cout
    return parsed


def parse_block(prefix: str, members: list[Layer], cin: int) -> ParsedBlock:
    """Roles of a block's layers from shapes: residual path, shortcut, and which BN goes with which conv."""
    others = [m for m in members if m.kind not in ("conv", "bn")]
    if others:
        raise CheckpointRejected(
            f"cannot map {others[0].name}: a {others[0].kind} layer inside residual block {prefix}"
        )
    convs = [m for m in members if m.kind == "conv"]
    bns = [m for m in members if m.kind == "bn"]
    for main, shortcut in _path_candidates(prefix, convs):
        kind = _path_kind(main, shortcut, cin)
        if kind is not None:
            return _with_bns(prefix, kind, main, shortcut, bns)
    shapes = ", ".join(c.shape_text() for c in convs)
    raise CheckpointRejected(
        f"cannot map residual block {prefix}: convolutions {shapes} do not form a standard (3×3, 3×3) or "
        f"bottleneck (1×1, 3×3, 1×1) path from the {cin} channels entering it"
    )


def _relative(layer: Layer, prefix: str) -> str:
    return layer.name[len(prefix) + 1 :]


def _is_shortcut(layer: Layer, prefix: str) -> bool:
    return any(SHORTCUT_NAME.search(part) for part in _relative(layer, prefix).split("."))


def _path_candidates(prefix: str, convs: list[Layer]) -> list[tuple[list[Layer], Layer | None]]:
    """(residual path, shortcut) splits to try: a shortcut named as such first, else by shapes."""
    named = [c for c in convs if _is_shortcut(c, prefix)]
    if len(named) == 1:
        splits = [([c for c in convs if c is not named[0]], named[0])]
    else:
        # Unnamed: no shortcut conv, or one of the 1×1 convs (the last in name order preferred).
        splits = [(convs, None)] + [([c for c in convs if c is not s], s) for s in reversed(convs) if s.kernel == 1]
    # Name order first; other orders only when names do not sort in forward order (shapes then decide).
    return splits + [(list(order), s) for main, s in splits if len(main) <= 3 for order in itertools.permutations(main)]


def _path_kind(main: list[Layer], shortcut: Layer | None, cin: int) -> str | None:
    kernels = [c.kernel for c in main]
    kind = {(3, 3): "standard", (1, 3, 1): "bottleneck"}.get(tuple(kernels))
    chained = bool(main) and main[0].cin == cin and all(b.cin == a.cout for a, b in itertools.pairwise(main))
    if kind is None or not chained:
        return None
    if shortcut is not None and (shortcut.kernel != 1 or shortcut.cin != cin or shortcut.cout != main[-1].cout):
        return None
    if shortcut is None and main[-1].cout < cin:
        return None
    return kind


def _with_bns(prefix: str, kind: str, main: list[Layer], shortcut: Layer | None, bns: list[Layer]) -> ParsedBlock:
    named = [b for b in bns if _is_shortcut(b, prefix)]
    path_bns = [b for b in bns if b not in named]
    if not named and shortcut is not None and len(path_bns) == len(main) + 1:
        # An unnamed BN after the projection: the last one with the block's output width.
        spare = next((b for b in reversed(path_bns) if b.channels == shortcut.cout), None)
        if spare is not None:
            named, path_bns = [spare], [b for b in path_bns if b is not spare]
    if len(path_bns) != len(main) or len(named) > 1 or (named and shortcut is None):
        raise CheckpointRejected(
            f"cannot map residual block {prefix}: {len(path_bns)} batch norms on its path "
            f"({', '.join(b.name for b in path_bns) or 'none'}) for {len(main)} convolutions; "
            "expected one per convolution"
        )
    shortcut_bn = named[0] if named else None
    if shortcut_bn is not None and shortcut is not None and shortcut_bn.channels != shortcut.cout:
        raise CheckpointRejected(
            f"cannot map {shortcut_bn.name}: {shortcut_bn.channels} channels after a {shortcut.cout}-channel projection"
        )
    fits_pre, fits_post = _bn_fit(path_bns, main)
    if not (fits_pre or fits_post) and len(path_bns) <= 3:
        # Names out of forward order (e.g. bn_in, bn_a, bn_b): the first order whose shapes fit.
        for order in itertools.permutations(path_bns):
            if any(_bn_fit(list(order), main)):
                path_bns = list(order)
                fits_pre, fits_post = _bn_fit(path_bns, main)
                break
    if not (fits_pre or fits_post):
        raise CheckpointRejected(
            f"cannot map residual block {prefix}: batch norms with {[b.channels for b in path_bns]} channels match "
            f"neither post-activation (BN after each conv: {[c.cout for c in main]}) nor pre-activation "
            f"(BN before each conv: {[c.cin for c in main]})"
        )
    return ParsedBlock(prefix, kind, main, path_bns, shortcut, shortcut_bn, fits_pre, fits_post)


def _bn_fit(bns: list[Layer], convs: list[Layer]) -> tuple[bool, bool]:
    """(BN k has conv k's input channels: pre-activation, BN k has conv k's output channels: post-activation)."""
    pre = all(b.channels == c.cin for b, c in zip(bns, convs, strict=True))
    post = all(b.channels == c.cout for b, c in zip(bns, convs, strict=True))
    return pre, post


def _assemble(stem: Layer, outside: list[Layer], blocks: list[ParsedBlock]) -> InferredNetwork:
    evidence: list[str] = []
    stem_bn, final_bn = _edge_bns(outside, stem, blocks[-1].convs[-1].cout, blocks[0].prefix)
    fc = _classifier(outside, blocks[-1].convs[-1].cout)
    activation = _activation(blocks, stem_bn, final_bn, evidence)
    specs = _block_specs(blocks, activation)
    spec = ResNetSpec(
        stem=stem.conv_spec(),
        stem_bn=stem_bn.bn_spec() if stem_bn else None,
        blocks=tuple(specs),
        final_bn=final_bn.bn_spec() if final_bn else None,
        num_classes=fc.cout,
        fc_bias="bias" in fc.tensors,
    )
    evidence[:0] = _edge_evidence(stem, stem_bn, final_bn, fc)
    mapping = _mapping(spec, stem, stem_bn, blocks, final_bn, fc)
    return InferredNetwork(spec, mapping, evidence)


def _edge_bns(outside: list[Layer], stem: Layer, out_width: int, first_block: str) -> tuple[Layer | None, Layer | None]:
    """BNs outside blocks: after the stem (stem width) or before pooling (the last block's width)."""
    bns = [layer for layer in outside if layer.kind == "bn"]
    stray = [bn for bn in bns if bn.channels not in (stem.cout, out_width)]
    if stray or len(bns) > 2:
        bn = (stray or bns)[0]
        raise CheckpointRejected(
            f"cannot map batch norm {bn.name} ({bn.channels} channels): outside the residual blocks a BN can only "
            f"follow the first convolution ({stem.cout} channels) or precede the classifier ({out_width})"
        )
    if stem.cout == out_width:
        # Same width at both ends (a one-stage net): a name before the first block is the stem's BN.
        early = [bn for bn in bns if natural_key(bn.name) < natural_key(first_block)]
        late = [bn for bn in bns if bn not in early]
    else:
        early = [bn for bn in bns if bn.channels == stem.cout]
        late = [bn for bn in bns if bn.channels == out_width]
    if len(early) > 1 or len(late) > 1:
        names = ", ".join(bn.name for bn in bns)
        raise CheckpointRejected(
            f"cannot map batch norms {names}: two of them would sit at the same end of the network"
        )
    return (early[0] if early else None), (late[0] if late else None)


def _classifier(outside: list[Layer], out_width: int) -> Layer:
    linears = [layer for layer in outside if layer.kind == "linear"]
    if len(linears) != 1:
        found = ", ".join(f"{layer.name} {tuple(layer.weight.shape)}" for layer in linears) or "none"
        raise CheckpointRejected(f"expected exactly one linear classifier after global pooling, found: {found}")
    fc = linears[0]
    if fc.cin != out_width or fc.cout != 10:
        raise CheckpointRejected(
            f"cannot map {fc.name}.weight {tuple(fc.weight.shape)}: expected (10, {out_width}) — 10 CIFAR-10 classes "
            f"from the last block's {out_width} channels"
        )
    return fc


def _activation(
    blocks: list[ParsedBlock], stem_bn: Layer | None, final_bn: Layer | None, evidence: list[str]
) -> Activation | None:
    """Model-wide activation order from decisive blocks; None when blocks disagree (each keeps its own)."""
    decided = [(b, "pre" if b.fits_pre else "post") for b in blocks if b.fits_pre != b.fits_post]
    evidence.extend(_block_evidence(b, act) for b, act in decided[:3])
    kinds = {act for _, act in decided}
    if len(kinds) == 1:
        evidence.append(f"{len(decided)} of {len(blocks)} blocks decided by BN shapes: all {kinds.pop()}-activation")
        return "pre" if decided[0][1] == "pre" else "post"
    if len(kinds) > 1:
        evidence.append("blocks disagree: some BNs follow their convs (post), some precede them (pre)")
        return None
    fallback: Activation = "pre" if final_bn is not None and stem_bn is None else "post"
    evidence.append(f"BN shapes in the blocks are inconclusive; {fallback}-activation assumed from the stem/final BNs")
    return fallback


def _block_evidence(block: ParsedBlock, activation: str) -> str:
    first_bn, first_conv = block.bns[0], block.convs[0]
    if activation == "pre":
        return (
            f"{block.prefix}: first BN {first_bn.name} has {first_bn.channels} channels = the block's input "
            f"(BN before conv: pre-activation); {first_conv.name} maps {first_conv.cin}→{first_conv.cout}"
        )
    return (
        f"{block.prefix}: {first_bn.name} has {first_bn.channels} channels = {first_conv.name}'s output "
        f"({first_conv.cin}→{first_conv.cout}; BN after conv: post-activation)"
    )


def _edge_evidence(stem: Layer, stem_bn: Layer | None, final_bn: Layer | None, fc: Layer) -> list[str]:
    lines = [f"first layer {stem.shape_text()}"]
    if stem_bn is not None:
        lines.append(f"BN {stem_bn.name} ({stem_bn.channels} channels) right after the first conv (v1-style start)")
    if final_bn is not None:
        lines.append(f"BN {final_bn.name} ({final_bn.channels} channels) before pooling (v2-style final BN-ReLU)")
    lines.append(f"classifier {fc.name}: {fc.cin}→{fc.cout}")
    return lines


def _block_specs(blocks: list[ParsedBlock], activation: Activation | None) -> list[BlockSpec]:
    specs: list[BlockSpec] = []
    for index, block in enumerate(blocks):
        own: Activation = "pre" if block.fits_pre and not block.fits_post else "post"
        chosen = activation if activation is not None and block.fits_pre == block.fits_post else own
        widened = index > 0 and block.convs[0].cout != blocks[index - 1].convs[0].cout
        specs.append(
            BlockSpec(
                kind="bottleneck" if block.kind == "bottleneck" else "standard",
                activation=chosen,
                stride=2 if widened else 1,
                convs=tuple(c.conv_spec() for c in block.convs),
                bns=tuple(b.bn_spec() for b in block.bns),
                shortcut_conv=block.shortcut_conv.conv_spec() if block.shortcut_conv else None,
                shortcut_bn=block.shortcut_bn.bn_spec() if block.shortcut_bn else None,
            )
        )
    return specs


def _mapping(
    spec: ResNetSpec,
    stem: Layer,
    stem_bn: Layer | None,
    blocks: list[ParsedBlock],
    final_bn: Layer | None,
    fc: Layer,
) -> dict[str, str]:
    pairs: list[tuple[str, Layer | None]] = [("stem", stem), ("stem_bn", stem_bn), ("final_bn", final_bn), ("fc", fc)]
    for name, block in zip(canonical_block_names(spec), blocks, strict=True):
        pairs += [(f"{name}.conv{k + 1}", conv) for k, conv in enumerate(block.convs)]
        pairs += [(f"{name}.bn{k + 1}", bn) for k, bn in enumerate(block.bns)]
        pairs += [(f"{name}.shortcut.conv", block.shortcut_conv), (f"{name}.shortcut.bn", block.shortcut_bn)]
    return {
        f"{target}.{leaf}": f"{layer.name}.{leaf}"
        for target, layer in pairs
        if layer is not None
        for leaf in layer.tensors
    }
