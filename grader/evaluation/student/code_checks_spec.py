"""The rubric's `code_checks:` section: which student functions the Q1 code checks call, and how (no torch needed).

The HW3 declaration, in rubrics/csce636-hw3.yaml (every key has the default shown in DEFAULTS):

    code_checks:
      stage_seconds: 60                 # each stage (preprocessing, data_reader, network, training) on its own
      preprocessing: {module: ImageUtils, parse_record: parse_record, preprocess_image: preprocess_image, ...}
      data_reader: {module: DataReader, function: load_data, split_functions: [...], records_per_batch: 3}
      network: {module: NetWork, factory: ResNet, sizes: [1, 2, 3], num_classes: 10, first_num_filters: 16}
      training: {module: Model, class: Cifar, config: {module: main, function: configure}, ...}
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader.errors import RubricError
from grader.rubric.model import rubric_section

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
EVALUATION_LABEL = "code"
"""The code checks' result among a submission's evaluations (next to "v1" and "v2"), as checkers read it."""
CODE_FIELDS = ("code", "v1_code", "v2_code")
"""The uploads the code checks may read, in order of preference: the first a submission has is checked."""
STAGES = ("preprocessing", "data_reader", "network", "training")
"""In the order they run: training, the slowest and most likely to hang, last."""

DEFAULTS: dict[str, Any] = {
    "stage_seconds": 60,
    "preprocessing": {
        "module": "ImageUtils",
        "parse_record": "parse_record",  # parse_record(record, False) -> [3, 32, 32]
        "preprocess_image": "preprocess_image",  # preprocess_image(image [32, 32, 3], training) -> [32, 32, 3]
        "record_dtype": "float32",  # as the starter's load_data hands records over
        "seeds": 256,  # calls of preprocess_image(image, True), one random seed each
        "false_alarm_rate": 1.0e-4,  # of the crop-position and flip frequency tests together, for correct code
    },
    "data_reader": {
        "module": "DataReader",
        "function": "load_data",  # load_data(data_dir) -> x_train, y_train, x_test, y_test
        "split_functions": ["train_valid_split", "train_vaild_split"],  # the starter spells it train_vaild_split
        "records_per_batch": 3,
    },
    "network": {
        "module": "NetWork",
        "factory": "ResNet",  # ResNet(resnet_version, resnet_size, num_classes, first_num_filters)
        "versions": [1, 2],
        "sizes": [1, 2, 3],
        "num_classes": 10,
        "first_num_filters": 16,
    },
    "training": {
        "module": "Model",
        "class": "Cifar",  # Cifar(config); .train(x, y, max_epoch); .test_or_validate(x, y, [checkpoint numbers])
        "train": "train",
        "test": "test_or_validate",
        "network_attribute": "network",
        "config": {"module": "main", "function": "configure"},  # the student's own options, with their defaults
        "defaults": {"weight_decay": 2.0e-4},  # when main.configure() cannot be used
        "overrides": {
            "resnet_version": 1,
            "resnet_size": 1,
            "num_classes": 10,
            "first_num_filters": 8,
            "batch_size": 8,
            "save_interval": 1,
            # The starter's 0.1 with momentum 0.9 sometimes diverged on 12 steps of 8 records (the loss 2.4 -> 5.4 in
            # one run of ten for a correct loop); at 0.01 every run of a correct loop fell to about 1.0.
            "learning_rate": 0.01,
        },
        "epochs": 3,
        "records": 32,
        "classes": 4,
    },
}
LIMITS = {
    "seeds": (64, 2000),
    "records_per_batch": (1, 100),
    "epochs": (1, 10),
    "records": (8, 256),
    "classes": (2, 10),
}


@dataclass(frozen=True)
class CodeChecksSpec:
    """The validated section with every default filled in: what the harness is told and the cache key holds."""

    sections: Mapping[str, Any]

    @property
    def stage_seconds(self) -> float:
        return float(self.sections["stage_seconds"])

    def __getitem__(self, stage: str) -> Mapping[str, Any]:
        return self.sections[stage]

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.sections))


def read_code_checks(rubric: str | Path) -> CodeChecksSpec | None:
    """The `code_checks:` of a rubric file (a path) or YAML text; None when the rubric declares none."""
    raw = rubric_section(rubric, "code_checks")
    return None if raw is None else parse_code_checks(raw)


def parse_code_checks(raw: Any) -> CodeChecksSpec:
    """Defaults overlaid with `raw`; RubricError naming a key that is unknown or wrong."""
    if not isinstance(raw, Mapping):
        raise RubricError("code_checks must be a mapping")
    sections = copy.deepcopy(DEFAULTS)
    for key, value in raw.items():
        if key not in sections:
            raise RubricError(f"code_checks: unknown key {key!r}; known: {sorted(sections)}")
        if isinstance(sections[key], dict):
            if not isinstance(value, Mapping):
                raise RubricError(f"code_checks.{key} must be a mapping")
            unknown = sorted(set(value) - set(sections[key]))
            if unknown:
                raise RubricError(f"code_checks.{key}: unknown keys {unknown}")
            sections[key].update(value)
        else:
            sections[key] = value
    _check(sections)
    return CodeChecksSpec(sections)


def _check(sections: Mapping[str, Any]) -> None:
    seconds = sections["stage_seconds"]
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 1 <= seconds <= 600:
        raise RubricError("code_checks.stage_seconds must be a number of seconds between 1 and 600")
    names = [("preprocessing", "module"), ("preprocessing", "parse_record"), ("preprocessing", "preprocess_image")]
    names += [("data_reader", "module"), ("data_reader", "function"), ("network", "module"), ("network", "factory")]
    names += [("training", key) for key in ("module", "class", "train", "test", "network_attribute")]
    for stage, key in names:
        if not _is_identifier(sections[stage][key]):
            raise RubricError(f"code_checks.{stage}.{key} must be a Python identifier")
    if not all(_is_identifier(name) for name in sections["data_reader"]["split_functions"]):
        raise RubricError("code_checks.data_reader.split_functions must be a list of Python identifiers")
    config = sections["training"]["config"]
    if config and not (isinstance(config, Mapping) and all(_is_identifier(v) for v in config.values())):
        raise RubricError("code_checks.training.config must be {module: ..., function: ...} or null")
    for stage, section in sections.items():
        for key, (low, high) in LIMITS.items():
            if isinstance(section, Mapping) and key in section:
                value = section[key]
                if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                    raise RubricError(f"code_checks.{stage}.{key} must be a whole number in {low}..{high}")
    rate = sections["preprocessing"]["false_alarm_rate"]
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < 0.5:
        raise RubricError("code_checks.preprocessing.false_alarm_rate must be a probability below 0.5")
    network = sections["network"]
    for key in ("versions", "sizes"):
        values = network[key]
        if not isinstance(values, list) or not values or not all(type(v) is int and 1 <= v <= 20 for v in values):
            raise RubricError(f"code_checks.network.{key} must be a list of whole numbers 1..20")


def _is_identifier(value: Any) -> bool:
    return isinstance(value, str) and bool(IDENTIFIER.match(value))
