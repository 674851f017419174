"""Architecture facts from a sandboxed run's trace (untrusted JSON): residual blocks, their call order, v1 or v2.

The harness records one forward pass as calls `[op, module, inputs, attributes]`, where `inputs` says which
earlier calls feed each operand. A residual block is the module in which an addition joins a path through two or
more convolutions (the main path) with one through none or a projection (the shortcut). From the main path's
order of calls: BN → ReLU → conv ... → add is pre-activation (v2); conv → BN → ReLU ... → add → ReLU is
post-activation (v1). Kernel sizes tell standard (3×3, 3×3) from bottleneck (1×1, 3×3, 1×1) blocks.
The `architecture` dict has the keys grader/checks/q1.py reads, as the static evaluator's does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

OPS = frozenset({"conv", "bn", "relu", "act", "add", "linear", "pool"})
ORDER_OPS = frozenset({"conv", "bn", "relu", "act", "add"})
MAX_EVENTS = 20_000
MAX_MODULES = 5_000
MAX_LISTED = 300
MAX_BLOCKS = 1_000
MAX_BLOCK_CALLS = 500
"""Bounds on the analysis (a hostile trace must not make the parent slow): blocks, and calls per block."""


@dataclass(frozen=True, slots=True)
class Event:
    index: int
    op: str
    module: str
    inputs: tuple[tuple[int, ...], ...]
    attributes: Mapping[str, Any]

    def channels(self) -> int | None:
        shape = self.attributes.get("shape") or []
        return shape[0] if shape else None


@dataclass(frozen=True, slots=True)
class Block:
    """One residual block as it ran."""

    module: str
    order: tuple[str, ...]
    """Calls on the main path and after the addition, e.g. ("conv", "bn", "relu", "conv", "bn", "add", "relu")."""
    kernels: tuple[int, ...]
    widths: tuple[int, ...]
    """Output channels of the main path's convolutions."""
    stride: int
    shortcut: str
    """"identity", "option_a", "projection" or "projection_bn"."""
    out_channels: int | None
    last_event: int

    @property
    def kind(self) -> str:
        if self.kernels == (3, 3):
            return "standard"
        if self.kernels == (1, 3, 1):
            return "bottleneck"
        return "other"

    @property
    def activation(self) -> str:
        return block_activation(self.order)

    def describe(self) -> str:
        return f"{self.module}: {' → '.join(self.order)} ({self.activation}-activation, {self.kind})"


def parse_events(raw: Any) -> list[Event]:
    """The trace's calls, each checked; a malformed call becomes an inert "?" so indices stay right."""
    calls = raw.get("events") if isinstance(raw, Mapping) else None
    if not isinstance(calls, list):
        return []
    return [_event(i, call) for i, call in enumerate(calls[:MAX_EVENTS])]


def _event(index: int, call: Any) -> Event:
    if not (isinstance(call, list) and len(call) == 4 and call[0] in OPS and isinstance(call[1], str)):
        return Event(index, "?", "", (), {})
    inputs = call[2] if isinstance(call[2], list) else []
    operands = tuple(
        tuple(i for i in group[:64] if type(i) is int and 0 <= i < index)
        for group in inputs[:8]
        if isinstance(group, list)
    )
    return Event(index, call[0], call[1][:300], operands, _attributes(call[3]))


def _attributes(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        return {}
    clean: dict[str, Any] = {}
    for key in ("in", "out", "c"):
        if type(raw.get(key)) is int:
            clean[key] = raw[key]
    for key in ("shape", "k", "s"):
        value = raw.get(key)
        if isinstance(value, list) and len(value) <= 4 and all(type(v) is int for v in value):
            clean[key] = value
    if isinstance(raw.get("fn"), str):
        clean["fn"] = raw["fn"][:40]
    if isinstance(raw.get("training"), bool):
        clean["training"] = raw["training"]
    return clean


def find_blocks(events: Sequence[Event]) -> list[Block]:
    """The residual blocks in call order (an addition inside a module, joining a ≥2-convolution path)."""
    adds = [event for event in events if event.op == "add"][:MAX_BLOCKS]
    return [block for add in adds if (block := _block(events, add)) is not None]


def _block(events: Sequence[Event], add: Event) -> Block | None:
    if len(add.inputs) != 2 or not add.module:
        return None
    inside = _inside(add.module)
    ancestry = [_ancestors(events, operand, inside) for operand in add.inputs]
    convs = [sum(1 for i in found if events[i].op == "conv") for found in ancestry]
    main = 0 if convs[0] >= convs[1] else 1
    if convs[main] < 2:
        return None
    main_path, shortcut_path = ancestry[main], ancestry[1 - main] - ancestry[main]
    after = _following(events, add, inside)
    ordered = sorted(main_path | {add.index} | after)
    main_convs = [events[i] for i in sorted(main_path) if events[i].op == "conv"]
    return Block(
        module=add.module,
        order=tuple(events[i].op for i in ordered if events[i].op in ORDER_OPS),
        kernels=tuple((e.attributes.get("k") or [0])[0] for e in main_convs),
        widths=tuple(e.attributes.get("out", 0) for e in main_convs),
        stride=max([*(max(e.attributes.get("s") or [1]) for e in main_convs), 1]),
        shortcut=_shortcut(events, add, 1 - main, shortcut_path),
        out_channels=add.channels(),
        last_event=max(ordered),
    )


def _inside(module: str) -> Any:
    return lambda name: name == module or name.startswith(module + ".")


def _ancestors(events: Sequence[Event], operand: tuple[int, ...], inside: Any) -> set[int]:
    """Calls inside the block that feed `operand`, following producers back until the block's input."""
    found = {i for i in operand if inside(events[i].module)}
    pending = list(found)
    while pending and len(found) < MAX_BLOCK_CALLS:
        for i in {i for group in events[pending.pop()].inputs for i in group}:
            if i not in found and inside(events[i].module):
                found.add(i)
                pending.append(i)
    return found


def _following(events: Sequence[Event], add: Event, inside: Any) -> set[int]:
    """Calls right after the addition, still inside the block (the final ReLU of a post-activation block)."""
    after: set[int] = set()
    for event in events[add.index + 1 : add.index + 1 + MAX_BLOCK_CALLS]:
        if not inside(event.module) or event.op in ("conv", "add"):
            break
        after.add(event.index)
    return after


def _shortcut(events: Sequence[Event], add: Event, operand: int, path: set[int]) -> str:
    ops = {events[i].op for i in path}
    if "conv" in ops:
        return "projection_bn" if "bn" in ops else "projection"
    sources = [events[i] for i in add.inputs[operand]]
    shapes = {tuple(e.attributes.get("shape") or []) for e in sources}
    return "option_a" if shapes and shapes != {tuple(add.attributes.get("shape") or [])} else "identity"


def block_activation(order: Sequence[str]) -> str:
    """ "pre" (BN-ReLU before every conv, nothing after the addition), "post" (BN after every conv, ReLU after the
    addition) or "other"."""
    if "add" not in order:
        return "other"
    add = order.index("add")
    before, after = list(order[:add]), list(order[add + 1 :])
    convs = [i for i, op in enumerate(before) if op == "conv"]
    activated = ("relu", "act")
    pre = all(i >= 2 and before[i - 1] in activated and before[i - 2] == "bn" for i in convs) and not any(
        op in activated for op in after
    )
    post = (
        bool(before)
        and before[0] == "conv"
        and all(i + 1 < len(before) and before[i + 1] == "bn" for i in convs)
        and any(op in activated for op in after)
    )
    return "pre" if pre and before[0] == "bn" else "post" if post else "other"


def stages(blocks: Sequence[Block]) -> list[list[Block]]:
    """Blocks grouped into stages: a new stage where the parent module changes or a block downsamples."""
    grouped: list[list[Block]] = []
    for block in blocks:
        parent = block.module.rpartition(".")[0]
        previous = grouped[-1][-1] if grouped else None
        if previous is None or previous.module.rpartition(".")[0] != parent or block.stride > 1:
            grouped.append([])
        grouped[-1].append(block)
    return grouped


def architecture_from_trace(trace: Any) -> dict[str, Any]:
    """The `architecture` dict of grader.evaluation (version, activation, block, name, blocks_per_stage,
    shortcut, evidence...) from the observed forward pass; activation/block "unknown" when no block is found."""
    events = parse_events(trace)
    blocks = find_blocks(events)
    if not blocks:
        return _unknown(events)
    grouped = stages(blocks)
    activation = _common(b.activation for b in blocks)
    kind = _common(b.kind for b in blocks)
    version = {"post": 1, "pre": 2}.get(activation)
    per_stage = [len(stage) for stage in grouped]
    depth = 2 + sum(len(b.kernels) for b in blocks)
    convs = [e for e in events if e.op == "conv"]
    linears = [e for e in events if e.op == "linear"]
    return {
        "version": version,
        "activation": activation,
        "block": kind,
        "name": f"ResNet-{depth} " + (f"v{version}" if version else "(mixed blocks)") + f" ({activation}-activation, "
        f"{kind} blocks)",
        "depth": depth,
        "blocks_per_stage": per_stage,
        "n": per_stage[0] if len(set(per_stage)) == 1 else None,
        "stage_widths": [stage[0].widths[0] if stage[0].widths else None for stage in grouped],
        "first_width": convs[0].attributes.get("out") if convs else None,
        "output_width": blocks[-1].out_channels,
        "num_classes": linears[-1].attributes.get("out") if linears else None,
        "shortcut": _shortcut_summary(blocks),
        "stem_bn": _has_bn_between(events, convs[0].index if convs else 0, _first_block_start(events, blocks[0])),
        "final_bn": _has_bn_between(events, blocks[-1].last_event, len(events)),
        "evidence": [stage[0].describe() for stage in grouped][:6],
        "source": "trace",
    }


def _common(values: Any) -> str:
    found = set(values)
    return found.pop() if len(found) == 1 else "mixed"


def _shortcut_summary(blocks: Sequence[Block]) -> str:
    kinds = {b.shortcut for b in blocks} - {"identity"}
    if not kinds:
        return "identity"
    return kinds.pop() if len(kinds) == 1 else "mixed: " + ", ".join(sorted(kinds))


def _first_block_start(events: Sequence[Event], block: Block) -> int:
    inside = _inside(block.module)
    return next((e.index for e in events if inside(e.module)), len(events))


def _has_bn_between(events: Sequence[Event], start: int, stop: int) -> bool:
    return any(e.op == "bn" for e in events[start + 1 : stop])


def _unknown(events: Sequence[Event]) -> dict[str, Any]:
    reason = "no calls were traced" if not events else "no residual block (an addition after two convolutions) found"
    return {
        "version": None,
        "activation": "unknown",
        "block": "unknown",
        "name": "an unrecognised network",
        "blocks_per_stage": [],
        "shortcut": "?",
        "evidence": [reason],
        "source": "trace",
    }


def summarize_trace(trace: Any) -> dict[str, Any]:
    """What the result keeps of a trace: module counts, conv and BN shapes, each stage's first block."""
    modules = _modules(trace)
    events = parse_events(trace)
    blocks = find_blocks(events)
    convs = [m for m in modules if "k" in m]
    return {
        "module_counts": dict(Counter(m["type"] for m in modules)),
        "convs": [[m["name"], m.get("in"), m.get("out"), m.get("k"), m.get("s")] for m in convs][:MAX_LISTED],
        "batch_norms": [[m["name"], m["c"]] for m in modules if "c" in m][:MAX_LISTED],
        "stages": [
            {"first_block": s[0].module, "blocks": len(s), "order": list(s[0].order), "shortcut": s[0].shortcut}
            for s in stages(blocks)
        ],
        "calls": len(events),
        "bn_calls_in_training_mode": sum(1 for e in events if e.op == "bn" and e.attributes.get("training")),
        "parameters": trace.get("parameters")
        if isinstance(trace, Mapping) and type(trace.get("parameters")) is int
        else None,
        "truncated": bool(trace.get("truncated")) if isinstance(trace, Mapping) else True,
    }


def _modules(trace: Any) -> list[dict[str, Any]]:
    raw = trace.get("modules") if isinstance(trace, Mapping) else None
    if not isinstance(raw, list):
        return []
    found = []
    for entry in raw[:MAX_MODULES]:
        if isinstance(entry, Mapping) and isinstance(entry.get("name"), str) and isinstance(entry.get("type"), str):
            found.append({"name": entry["name"][:300], "type": entry["type"][:100], **_attributes(entry)})
    return found
