"""The rubric's `model_interface:` and the answer sheet's network config: parsing, and what reaches the student."""

from __future__ import annotations

import json
from typing import Any

import pytest

from grader.errors import InvalidAnswer, RubricError
from grader.evaluation.student import ModelInterface, read_model_interface, read_network_config
from grader.evaluation.student.interface import parse_model_interface

VALID = {
    "network": {
        "module": "NetWork",
        "factory": "ResNet",
        "parameters": ["resnet_version", "resnet_size", "num_classes", "first_num_filters"],
        "fixed": {"num_classes": 10},
        "per_label": {"v1": {"resnet_version": 1}, "v2": {"resnet_version": 2}},
        "config": "q1.{label}_config",
    },
    "preprocess": {"module": "ImageUtils", "function": "parse_record", "keyword_arguments": {"training": False}},
}


def test_the_hw3_rubric_declares_the_starter_interface(interface: ModelInterface) -> None:
    assert (interface.network_module, interface.factory) == ("NetWork", "ResNet")
    assert interface.describe_preprocessing() == "ImageUtils.parse_record(record, training=False)"
    assert interface.config_keys("v2") == ["resnet_size", "first_num_filters"]
    assert interface.arguments("v2", {"resnet_size": 18, "first_num_filters": "16"}) == {
        "resnet_version": 2,
        "resnet_size": 18,
        "num_classes": 10,
        "first_num_filters": 16,
    }


def test_a_rubric_without_the_section_has_no_interface() -> None:
    assert read_model_interface("assignment: x\nparts: []\n") is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"network": None}, r"model_interface\.network must be a mapping"),
        ({"network": {**VALID["network"], "module": "os.system"}}, r"network\.module must be a Python identifier"),
        ({"network": {**VALID["network"], "parameters": []}}, r"parameters must be a list of Python identifiers"),
        ({"network": {**VALID["network"], "fixed": {"depth": 3}}}, r"'depth' is not one of network\.parameters"),
        ({"network": {**VALID["network"], "config": "q1.config"}}, r"must contain \{label\}"),
        ({"preprocess": {**VALID["preprocess"], "function": "__import__('os')"}}, r"function must be a Python"),
        ({"preprocess": {**VALID["preprocess"], "record_dtype": "object"}}, r"record_dtype must be one of"),
    ],
)
def test_malformed_interfaces_name_the_key(change: dict[str, Any], message: str) -> None:
    with pytest.raises(RubricError, match=message):
        parse_model_interface({**VALID, **change})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"resnet_size": 18}, r"q1\.v1_config: missing 'first_num_filters'"),
        ({"resnet_size": 18, "first_num_filters": 16, "extra": 1}, r"unexpected keys \['extra'\]"),
        ({"resnet_size": 18, "first_num_filters": 16, "resnet_version": 2}, r"unexpected keys \['resnet_version'\]"),
        ({"resnet_size": 18, "first_num_filters": 16, "num_classes": 100}, r"unexpected keys \['num_classes'\]"),
        ({"resnet_size": -1, "first_num_filters": 16}, r"q1\.v1_config\.resnet_size: -1 is out of range"),
        ({"resnet_size": 10**9, "first_num_filters": 16}, r"out of range 0\.\.10000"),
        ({"resnet_size": [18], "first_num_filters": 16}, r"expected a whole number, got \[18\]"),
        ({"resnet_size": 1.5, "first_num_filters": 16}, r"expected a whole number, got 1\.5"),
    ],
)
def test_config_mistakes_are_invalid_answers(interface: ModelInterface, config: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidAnswer, match=message):
        interface.arguments("v1", config)


def test_the_config_is_read_from_the_sheet(interface: ModelInterface) -> None:
    sheet = {"q1": {"v1_config": {"resnet_size": 3, "first_num_filters": 16}}}
    assert read_network_config(sheet, "v1", interface) == {"resnet_size": 3, "first_num_filters": 16}
    with pytest.raises(InvalidAnswer, match=r"q1\.v2_config is missing: .*resnet_size: \.\.\., first_num_filters"):
        read_network_config(sheet, "v2", interface)
    with pytest.raises(InvalidAnswer, match=r"q1\.v1_config must be a mapping"):
        read_network_config({"q1": {"v1_config": "18, 16"}}, "v1", interface)


def test_the_interface_round_trips_through_json_and_arguments_are_idempotent(interface: ModelInterface) -> None:
    assert parse_model_interface(json.loads(json.dumps(interface.to_json()))) == interface
    arguments = interface.arguments("v1", {"resnet_size": 3, "first_num_filters": 16})
    assert interface.arguments("v1", arguments) == arguments
