"""Q1(c) code check: the student's `NetWork.ResNet(version, size, num_classes, first_num_filters)` builds for each
size with the reference's structure and parameter count, and maps a batch to [batch, num_classes].

From the names and shapes of the network's state_dict (data the harness reports; nothing is loaded), the grader's
architecture inference (grader/evaluation/architecture.py, the one that judges uploaded weights) says which
ResNet it is. Parameter counts are compared with the reference family's for the same version and size; shortcut
variants (1×1 projection, with BN, or option A) and a bias on the first convolution are accepted.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from grader.evaluation.architecture import infer_network
from grader.evaluation.checkpoint_format import CheckpointRejected
from grader.evaluation.resnet_spec import ResNetSpec, make_spec
from grader.evaluation.structure import TensorInfo
from grader.evaluation.student.code_checks_common import (
    CORRECT,
    INCORRECT,
    PARTIAL,
    Unreadable,
    Verdict,
    decode_array,
    name_shapes,
    student_error,
)

EXPECTED = {1: {"activation": "post", "block": "standard"}, 2: {"activation": "pre", "block": "bottleneck"}}
SHORTCUTS = ("projection", "projection_bn", "option_a")


def builds(versions: list[int], sizes: list[int], num_classes: int, first_num_filters: int) -> list[list[int]]:
    """The factory calls the harness makes, in order."""
    return [[version, size, num_classes, first_num_filters] for version in versions for size in sizes]


def judge_network(outputs: Any, version: int, calls: list[list[int]], *, function: str) -> Verdict:
    """The builds of one version: each must run, give [2, num_classes], and be the reference network of its size."""
    error = student_error(outputs)
    if error is not None:
        return Verdict(INCORRECT, f"{function} failed {error}")
    results = outputs.get("builds") if isinstance(outputs, Mapping) else None
    if not isinstance(results, list) or len(results) != len(calls):
        return Verdict(INCORRECT, f"{function}: the builds did not come back.")
    rows, problems, failed = [], [], []
    for call, result in zip(calls, results, strict=True):
        if call[0] != version:
            continue
        shown = f"{function}({', '.join(map(str, call))})"
        error = student_error(result)
        if error is not None:
            failed.append(f"{shown} failed {error}")
            continue
        row, problem, broken = _one(result, call, shown)
        rows.append(row)
        if broken:
            failed.append(problem)
        elif problem:
            problems.append(problem)
    evidence = {"builds": rows}
    if failed:
        return Verdict(INCORRECT, " ".join(failed[:2]), evidence)
    sizes = ", ".join(str(call[1]) for call in calls if call[0] == version)
    if problems:
        return Verdict(
            PARTIAL, f"Version {version} builds and runs for sizes {sizes}, but: " + " ".join(problems[:3]), evidence
        )
    return Verdict(
        CORRECT,
        f"Version {version} builds for sizes {sizes} with the reference's structure and parameter count, and maps a "
        f"batch of 2 images to [2, {calls[0][2]}].",
        evidence,
    )


def _one(result: Any, call: list[int], shown: str) -> tuple[dict[str, Any], str, bool]:
    """(evidence row, problem text, whether the build is unusable) for one build."""
    version, size, num_classes, width = call
    try:
        output = decode_array(result.get("output"), f"{shown}'s output")
    except Unreadable as exc:
        return {"arguments": call}, str(exc), True
    if output.shape != (2, num_classes) or not np.isfinite(output).all():
        got = list(output.shape)
        return (
            {"arguments": call, "output_shape": got},
            f"{shown} maps 2 images to {got}; expected [2, {num_classes}].",
            True,
        )
    parameters = name_shapes(result.get("parameters"))
    state = name_shapes(result.get("state_dict"))
    count = sum(int(np.prod(shape)) for shape in parameters.values())
    accepted = _reference_counts(version, size, num_classes, width)
    reference = accepted.get("projection shortcuts", 0)
    row: dict[str, Any] = {"arguments": call, "parameters": count, "reference_parameters": reference}
    problems = []
    if count not in accepted.values():
        problems.append(
            f"{shown} has {count} parameters; the reference has {reference} (with 1×1 projection shortcuts; "
            f"{min(accepted.values())} with option A shortcuts)."
        )
    else:
        row["variant"] = next(name for name, value in accepted.items() if value == count)
    try:
        found = infer_network({name: TensorInfo("torch.float32", shape) for name, shape in state.items()}).describe()
    except CheckpointRejected as exc:
        problems.append(f"{shown}: its layers are not recognised as a CIFAR ResNet ({exc.message}).")
        return row, " ".join(problems), False
    row["architecture"] = {
        key: found.get(key) for key in ("name", "activation", "block", "blocks_per_stage", "first_width")
    }
    expected = EXPECTED.get(version, {})
    wrong = [key for key, value in expected.items() if found.get(key) != value]
    if wrong:
        problems.append(
            f"{shown} builds a {found.get('name')}; version {version} has {expected['activation']}-activation "
            f"{expected['block']} blocks."
        )
    if found.get("blocks_per_stage") != [size] * 3:
        problems.append(
            f"{shown} has {found.get('blocks_per_stage')} blocks per stage; resnet_size={size} means {size}."
        )
    if found.get("first_width") != width:
        problems.append(f"{shown} starts with {found.get('first_width')} filters; first_num_filters={width}.")
    return row, " ".join(problems), False


def _reference_counts(version: int, size: int, num_classes: int, width: int) -> dict[str, int]:
    """Parameter counts of the accepted reference variants of this version and size."""
    expected = EXPECTED.get(version)
    if expected is None:
        return {}
    counts = {}
    for shortcut, stem_bias in itertools.product(SHORTCUTS, (False, True)):
        spec = make_spec(
            activation=expected["activation"],  # type: ignore[arg-type]
            kind=expected["block"],  # type: ignore[arg-type]
            blocks_per_stage=size,
            first_width=width,
            shortcut=shortcut,  # type: ignore[arg-type]
            num_classes=num_classes,
        )
        counts[f"{shortcut} shortcuts" + (", bias on the first convolution" if stem_bias else "")] = parameter_count(
            spec
        ) + (width if stem_bias else 0)
    return counts


def parameter_count(spec: ResNetSpec) -> int:
    """Trainable parameters of a family member, as CifarResNet(spec) has them (convolutions, BN scale and shift,
    the final linear layer with its bias)."""
    total = spec.stem.in_channels * spec.stem.out_channels * spec.stem.kernel**2
    bns = [spec.stem_bn, spec.final_bn]
    for block in spec.blocks:
        convs = [*block.convs, *([block.shortcut_conv] if block.shortcut_conv else [])]
        total += sum(c.in_channels * c.out_channels * c.kernel**2 + (c.out_channels if c.bias else 0) for c in convs)
        bns += [*block.bns, block.shortcut_bn]
    total += sum(2 * bn.channels for bn in bns if bn is not None and bn.affine)
    total += spec.blocks[-1].out_channels * spec.num_classes + (spec.num_classes if spec.fc_bias else 0)
    return total
