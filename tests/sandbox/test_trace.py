"""Architecture from the trace: real networks exported by the harness and run by the grader's program runner
(in-process here), and hostile traces."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import torch

from grader.evaluation.program import Program
from grader.evaluation.student import architecture_from_trace, harness
from grader.evaluation.student.trace import block_activation, summarize_trace
from tests.evaluation.nets import AkamasterResNet, PreActBottleneckResNet, StarterResNet


def traced(model: torch.nn.Module) -> dict[str, Any]:
    """The trace as the parent receives it: the graph exported and sent as JSON, run by the grader with the
    model's own weights, the trace sent back as JSON."""
    torch.manual_seed(0)
    images = torch.randn(2, 3, 32, 32)
    program = Program.from_json(json.loads(json.dumps(harness.export_program(model, images))))
    with torch.inference_mode():
        trace = program.bind(model.state_dict()).trace(images)
    return json.loads(json.dumps(trace))


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            StarterResNet(1, 2),
            {"version": 1, "activation": "post", "block": "standard", "blocks_per_stage": [2, 2, 2], "stem_bn": True},
        ),
        (
            StarterResNet(2, 2),
            {"version": 2, "activation": "pre", "block": "bottleneck", "blocks_per_stage": [2, 2, 2], "final_bn": True},
        ),
        (StarterResNet(1, 1, bottleneck=True), {"activation": "post", "block": "bottleneck", "depth": 11}),
        (StarterResNet(2, 1, bottleneck=False), {"activation": "pre", "block": "standard", "depth": 8}),
        (
            AkamasterResNet(3, option="A"),
            {"version": 1, "block": "standard", "shortcut": "option_a", "blocks_per_stage": [3, 3, 3], "depth": 20},
        ),
        (AkamasterResNet(1, option="B"), {"activation": "post", "shortcut": "projection_bn"}),
        (
            PreActBottleneckResNet(2),
            {"version": 2, "block": "bottleneck", "shortcut": "projection", "stage_widths": [8, 16, 32]},
        ),
    ],
    ids=["starter-v1", "starter-v2", "v1-bottleneck", "v2-standard", "akamaster-A", "akamaster-B", "kuangliu"],
)
def test_the_trace_tells_blocks_and_activation_order(model: torch.nn.Module, expected: dict[str, Any]) -> None:
    architecture = architecture_from_trace(traced(model.eval()))
    assert {key: architecture[key] for key in expected} == expected, architecture["evidence"]
    assert architecture["num_classes"] == 10


def test_the_summary_lists_each_stages_first_block_in_call_order() -> None:
    summary = summarize_trace(traced(StarterResNet(2, 2).eval()))
    assert [stage["first_block"] for stage in summary["stages"]] == [f"stack_layers.{i}.layer.0" for i in range(3)]
    assert summary["stages"][0]["order"] == ["bn", "relu", "conv", "bn", "relu", "conv", "bn", "relu", "conv", "add"]
    assert summary["module_counts"]["Conv2d"] == 1 + 3 * 2 * 3 + 3
    assert summary["bn_calls_in_training_mode"] == 0 and not summary["truncated"]


def test_batch_norm_left_in_training_mode_is_counted() -> None:
    assert summarize_trace(traced(StarterResNet(1, 1).train()))["bn_calls_in_training_mode"] == 7


@pytest.mark.parametrize(
    ("order", "activation"),
    [
        (["conv", "bn", "relu", "conv", "bn", "add", "relu"], "post"),
        (["bn", "relu", "conv", "bn", "relu", "conv", "add"], "pre"),
        (["bn", "act", "conv", "bn", "act", "conv", "add"], "pre"),
        (["conv", "bn", "relu", "conv", "bn", "add"], "other"),  # no ReLU after the addition
        (["conv", "relu", "bn", "conv", "bn", "add", "relu"], "other"),  # ReLU before BN
        (["bn", "relu", "conv", "bn", "relu", "conv", "add", "relu"], "other"),
        (["conv", "conv"], "other"),
        ([], "other"),
    ],
)
def test_activation_order_table(order: list[str], activation: str) -> None:
    assert block_activation(order) == activation


@pytest.mark.parametrize(
    "trace",
    [
        None,
        "not a trace",
        {"events": "nope"},
        {"events": [[1, 2, 3, 4], ["conv"], None, "add"]},
        # Inputs pointing forward or at themselves would make cycles: they are dropped.
        {"events": [["conv", "b", [[1]], {}], ["conv", "b", [[0], [1], [5]], {}], ["add", "b", [[1], [0]], {}]]},
        {"events": [["add", "x" * 10_000, [[-1], [10**30]], {"shape": ["a"], "k": [1e9]}]] * 50_000},
        {"events": [], "modules": [{"name": 1}, "x", {"name": "a", "type": "Conv2d", "k": "3"}], "parameters": "9"},
    ],
    ids=["none", "text", "events-not-list", "garbage-events", "cycles", "huge", "bad-modules"],
)
def test_hostile_traces_never_pass_as_a_resnet_nor_raise(trace: Any) -> None:
    architecture = architecture_from_trace(trace)
    assert architecture["activation"] in ("unknown", "other") and architecture["block"] in ("unknown", "other")
    assert architecture["version"] is None
    assert json.dumps(architecture) and json.dumps(summarize_trace(trace))


def test_a_trace_built_to_be_slow_to_analyse_is_not() -> None:
    chain = [["conv", "b", [], {}], ["conv", "b", [[0]], {}]]
    chain += [["add", "b", [[i + 1], [i]], {}] for i in range(19_998)]
    started = time.monotonic()
    architecture_from_trace({"events": chain})
    summarize_trace({"events": chain})
    assert time.monotonic() - started < 5
