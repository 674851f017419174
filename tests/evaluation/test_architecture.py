"""Inferring the architecture from tensor shapes and mapping any naming onto the reference ResNet family."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from grader.evaluation.architecture import infer_network
from grader.evaluation.checkpoint import CheckpointRejected
from grader.evaluation.evaluate import build_reference_model, reference_state
from grader.evaluation.resnet import CifarResNet, ForwardVariant, make_spec
from tests.evaluation.nets import AkamasterResNet, PreActBottleneckResNet, StarterResNet, calibrate

IMAGES = torch.randn(200, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _calibrated(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return calibrate(model, IMAGES)


CASES: list[tuple[str, Any, dict[str, Any]]] = [
    (
        "starter v1",
        lambda: StarterResNet(1, 2),
        dict(
            version=1,
            activation="post",
            block="standard",
            blocks_per_stage=[2, 2, 2],
            stage_widths=[8, 16, 32],
            shortcut="projection",
            stem_bn=True,
            final_bn=False,
            depth=14,
            output_width=32,
            conv_bias=True,
        ),
    ),
    (
        "starter v2",
        lambda: StarterResNet(2, 1),
        dict(
            version=2,
            activation="pre",
            block="bottleneck",
            blocks_per_stage=[1, 1, 1],
            stage_widths=[8, 16, 32],
            shortcut="projection",
            stem_bn=False,
            final_bn=True,
            depth=11,
            output_width=128,
        ),
    ),
    (
        "starter v1 with bottleneck blocks",
        lambda: StarterResNet(1, 1, bottleneck=True),
        dict(version=1, activation="post", block="bottleneck", stem_bn=True, final_bn=False),
    ),
    (
        "starter v2 with standard blocks",
        lambda: StarterResNet(2, 2, bottleneck=False),
        dict(version=2, activation="pre", block="standard", stem_bn=False, final_bn=True, n=2),
    ),
    (
        "torchvision-style v1, option A",
        lambda: AkamasterResNet(1, option="A"),
        dict(version=1, activation="post", block="standard", shortcut="option_a", stem_bn=True, depth=8),
    ),
    (
        "torchvision-style v1, conv+BN shortcut",
        lambda: AkamasterResNet(2, option="B"),
        dict(version=1, activation="post", block="standard", shortcut="projection_bn", n=2),
    ),
    (
        "kuangliu-style v2 bottleneck",
        lambda: PreActBottleneckResNet(1),
        dict(version=2, activation="pre", block="bottleneck", shortcut="projection", final_bn=True, stem_bn=False),
    ),
    (
        "reference naming, v1 option A",
        lambda: CifarResNet(
            make_spec(activation="post", kind="standard", blocks_per_stage=1, first_width=4, shortcut="option_a")
        ),
        dict(version=1, activation="post", block="standard", shortcut="option_a", first_width=4),
    ),
    (
        "reference naming, v2 bottleneck with BN on the projection",
        lambda: CifarResNet(
            make_spec(activation="pre", kind="bottleneck", blocks_per_stage=2, first_width=4, shortcut="projection_bn")
        ),
        dict(version=2, activation="pre", block="bottleneck", shortcut="projection_bn", n=2),
    ),
]


@pytest.mark.parametrize(("name", "factory", "expected"), CASES, ids=[case[0] for case in CASES])
def test_inferred_architecture_and_mapping_reproduce_the_network(name: str, factory: Any, expected: dict) -> None:
    model = _calibrated(factory())
    network = infer_network(dict(model.state_dict()))
    summary = network.describe()
    assert {key: summary[key] for key in expected} == expected, summary["evidence"]
    assert summary["num_classes"] == 10 and summary["evidence"]
    _assert_same_outputs(model, network)


def _assert_same_outputs(model: nn.Module, network: Any, variant: ForwardVariant | None = None) -> None:
    reference = build_reference_model(
        network.spec, reference_state(network, model.state_dict()), variant or ForwardVariant()
    )
    with torch.inference_mode():
        expected = model(IMAGES[:32])
        actual = reference(IMAGES[:32])
    torch.testing.assert_close(actual, expected)
    assert torch.equal(actual.argmax(1), expected.argmax(1))


def test_pre_activation_evidence_names_the_first_bn_of_a_block() -> None:
    summary = infer_network(dict(StarterResNet(2, 1).state_dict())).describe()
    assert any("= the block's input" in line and "pre-activation" in line for line in summary["evidence"])
    assert any("before pooling" in line for line in summary["evidence"])


def test_post_activation_evidence_names_the_bn_after_a_conv() -> None:
    summary = infer_network(dict(AkamasterResNet(1).state_dict())).describe()
    assert any("layer2.0.bn1 has 16 channels = layer2.0.conv1's output" in line for line in summary["evidence"])


def test_an_unnamed_shortcut_with_the_same_shape_as_conv3_is_taken_by_name_order() -> None:
    # First bottleneck block: input 8 = width 8, so conv3 (8→32) and the projection (8→32) look alike.
    model = _calibrated(StarterResNet(2, 1))
    renamed = {key.replace(".shortcut.", ".conv4."): value for key, value in model.state_dict().items()}
    network = infer_network(renamed)
    assert network.mapping["stages.0.0.shortcut.conv.weight"] == "stack_layers.0.layer.0.conv4.weight"
    reference = build_reference_model(network.spec, reference_state(network, renamed), ForwardVariant())
    with torch.inference_mode():
        torch.testing.assert_close(reference(IMAGES[:16]), model(IMAGES[:16]))


def test_layer_names_out_of_forward_order_are_placed_by_shapes() -> None:
    # In this block conv1/bn1 are renamed to sort last; shapes (1×1 from 32 channels, BN of 32) place them first.
    model = _calibrated(StarterResNet(2, 1))
    block = "stack_layers.1.layer.0."
    renamed = {
        (key.replace(".conv1.", ".z_conv.").replace(".bn1.", ".z_bn.") if key.startswith(block) else key): value
        for key, value in model.state_dict().items()
    }
    network = infer_network(renamed)
    assert network.mapping["stages.1.0.conv1.weight"] == block + "z_conv.weight"
    assert network.mapping["stages.1.0.bn1.running_var"] == block + "z_bn.running_var"
    reference = build_reference_model(network.spec, reference_state(network, renamed), ForwardVariant())
    with torch.inference_mode():
        torch.testing.assert_close(reference(IMAGES[:16]), model(IMAGES[:16]))


def test_the_order_of_keys_in_the_file_does_not_matter() -> None:
    model = _calibrated(AkamasterResNet(2, option="B"))
    shuffled = dict(reversed(list(model.state_dict().items())))
    network = infer_network(shuffled)
    _assert_same_outputs(model, network)


def test_mapping_covers_every_tensor_of_the_checkpoint() -> None:
    state = StarterResNet(1, 1).state_dict()
    network = infer_network(dict(state))
    assert set(network.mapping.values()) == set(state)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return dict(model.state_dict())


def _replace(state: dict[str, torch.Tensor], key: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    return {**state, key: value}


HOSTILE = [
    (
        "conv with the wrong input channels",
        lambda s: _replace(s, "stack_layers.1.layer.0.conv2.weight", torch.zeros(16, 12, 3, 3)),
        "stack_layers.1.layer.0",
    ),
    (
        "a second classifier",
        lambda s: {**s, "extra_head.weight": torch.zeros(10, 32), "extra_head.bias": torch.zeros(10)},
        "extra_head",
    ),
    ("a 3-D tensor", lambda s: {**s, "attention.weight": torch.zeros(4, 4, 4)}, "attention.weight"),
    (
        "BN without running statistics",
        lambda s: {k: v for k, v in s.items() if not k.startswith("stack_layers.0.layer.0.bn1.running")},
        "running statistics",
    ),
    (
        "100 classes",
        lambda s: {**s, "output_layer.fc.weight": torch.zeros(100, 32), "output_layer.fc.bias": torch.zeros(100)},
        "(10, 32)",
    ),
    (
        "integer weights",
        lambda s: _replace(s, "start_layer.weight", torch.zeros(8, 3, 3, 3, dtype=torch.int64)),
        "not floating point",
    ),
    ("no blocks", lambda s: {k: v for k, v in s.items() if not k.startswith("stack_layers")}, "no residual blocks"),
    ("even kernel", lambda s: _replace(s, "start_layer.weight", torch.zeros(8, 3, 2, 2)), "kernel 2×2"),
    (
        "BN with a stray width",
        lambda s: {**s, **{f"stray_bn.{k}": torch.ones(5) for k in ("weight", "bias", "running_mean", "running_var")}},
        "stray_bn",
    ),
]


@pytest.mark.parametrize(("name", "damage", "says"), HOSTILE, ids=[case[0] for case in HOSTILE])
def test_unmappable_checkpoints_are_rejected_naming_the_tensor(name: str, damage: Any, says: str) -> None:
    with pytest.raises(CheckpointRejected) as caught:
        infer_network(damage(_state(StarterResNet(1, 1))))
    assert says in caught.value.message


def test_non_finite_weights_are_rejected_naming_the_tensor() -> None:
    state = _state(StarterResNet(1, 1))
    state["stack_layers.2.layer.0.bn2.running_var"] = torch.full((32,), float("nan"))
    network = infer_network(state)
    with pytest.raises(CheckpointRejected, match=r"stack_layers\.2\.layer\.0\.bn2\.running_var contains NaN"):
        reference_state(network, state)
