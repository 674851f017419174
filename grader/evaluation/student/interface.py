"""The student model interface a rubric declares (`model_interface:`): which module builds the network, with
which arguments, and which function preprocesses one test record.

The HW3 declaration, in rubrics/csce636-hw3.yaml:

    model_interface:
      network:
        module: NetWork
        factory: ResNet
        parameters: [resnet_version, resnet_size, num_classes, first_num_filters]   # positional, in this order
        fixed: {num_classes: 10}
        per_label: {v1: {resnet_version: 1}, v2: {resnet_version: 2}}
        config: "q1.{label}_config"        # answer-sheet mapping supplying the other parameters
      preprocess:
        module: ImageUtils
        function: parse_record
        keyword_arguments: {training: false}
        record_dtype: float32               # how each 3072-value test record is handed over
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.errors import InvalidAnswer, RubricError
from grader.rubric.model import rubric_section

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RECORD_DTYPES = ("float32", "float64", "uint8")
MAX_CONFIG_INT = 10_000
MAX_CONFIG_TEXT = 100


@dataclass(frozen=True, slots=True)
class ModelInterface:
    """How the harness calls the student's code; built from the rubric, never from the student."""

    network_module: str
    factory: str
    parameters: tuple[str, ...]
    """Positional order of the factory's arguments."""
    preprocess_module: str
    preprocess_function: str
    fixed: Mapping[str, Any] = field(default_factory=dict)
    per_label: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    config_path: str = "q1.{label}_config"
    preprocess_kwargs: Mapping[str, Any] = field(default_factory=dict)
    record_dtype: str = "float32"
    """The dtype each 3072-value record is given in: the starter's DataReader returns float32 arrays."""

    def config_where(self, label: str) -> str:
        return self.config_path.format(label=label)

    def arguments(self, label: str, config: Mapping[str, Any]) -> dict[str, Any]:
        """The factory's arguments by name: fixed values, the label's, then the sheet's config (checked).
        Raises InvalidAnswer (a student's mistake) when the config lacks a parameter or has an odd value."""
        where = self.config_where(label)
        values: dict[str, Any] = {**self.fixed, **self.per_label.get(label, {})}
        # A key the rubric fixes may be repeated with the same value, so arguments() of arguments() is the same.
        unknown = sorted(
            str(key) for key in config if key not in self.parameters or (key in values and config[key] != values[key])
        )
        if unknown:
            raise InvalidAnswer(f"{where}: unexpected keys {unknown}; expected {self.config_keys(label)}")
        for key in self.config_keys(label):
            if key not in config:
                raise InvalidAnswer(f"{where}: missing {key!r}; expected {self.config_keys(label)}")
            values[key] = _config_value(config[key], f"{where}.{key}")
        return {name: values[name] for name in self.parameters}

    def config_keys(self, label: str) -> list[str]:
        """The parameters the answer sheet must give for `label`."""
        given = {**self.fixed, **self.per_label.get(label, {})}
        return [name for name in self.parameters if name not in given]

    def to_json(self) -> dict[str, Any]:
        """The `model_interface:` mapping again: parse_model_interface(to_json()) gives an equal interface."""
        return {
            "network": {
                "module": self.network_module,
                "factory": self.factory,
                "parameters": list(self.parameters),
                "fixed": dict(self.fixed),
                "per_label": {label: dict(values) for label, values in self.per_label.items()},
                "config": self.config_path,
            },
            "preprocess": {
                "module": self.preprocess_module,
                "function": self.preprocess_function,
                "keyword_arguments": dict(self.preprocess_kwargs),
                "record_dtype": self.record_dtype,
            },
        }

    def describe_preprocessing(self) -> str:
        kwargs = ", ".join(f"{key}={value!r}" for key, value in self.preprocess_kwargs.items())
        return f"{self.preprocess_module}.{self.preprocess_function}(record{', ' + kwargs if kwargs else ''})"


def read_model_interface(rubric: str | Path) -> ModelInterface | None:
    """The `model_interface:` of a rubric file (a path) or YAML text; None when the rubric declares none."""
    raw = rubric_section(rubric, "model_interface")
    return None if raw is None else parse_model_interface(raw)


def parse_model_interface(raw: Any) -> ModelInterface:
    """Validate the `model_interface:` mapping; RubricError naming the key that is wrong."""
    section = _mapping(raw, "model_interface")
    network = _mapping(section.get("network"), "model_interface.network")
    preprocess = _mapping(section.get("preprocess"), "model_interface.preprocess")
    parameters = network.get("parameters")
    if not isinstance(parameters, list) or not parameters or not all(_is_identifier(p) for p in parameters):
        raise RubricError("model_interface.network.parameters must be a list of Python identifiers")
    per_label = _mapping(network.get("per_label", {}), "model_interface.network.per_label")
    interface = ModelInterface(
        network_module=_identifier(network, "module", "model_interface.network"),
        factory=_identifier(network, "factory", "model_interface.network"),
        parameters=tuple(parameters),
        preprocess_module=_identifier(preprocess, "module", "model_interface.preprocess"),
        preprocess_function=_identifier(preprocess, "function", "model_interface.preprocess"),
        fixed=dict(_mapping(network.get("fixed", {}), "model_interface.network.fixed")),
        per_label={str(k): dict(_mapping(v, f"model_interface.network.per_label.{k}")) for k, v in per_label.items()},
        config_path=str(network.get("config", "q1.{label}_config")),
        preprocess_kwargs=dict(_mapping(preprocess.get("keyword_arguments", {}), "model_interface.preprocess")),
        record_dtype=str(preprocess.get("record_dtype", "float32")),
    )
    _check_names(interface)
    return interface


def read_network_config(sheet: Mapping[str, Any], label: str, interface: ModelInterface) -> Mapping[str, Any]:
    """The mapping at the interface's config path in the answer sheet (`q1.v1_config`); InvalidAnswer if absent."""
    where = interface.config_where(label)
    node: Any = sheet
    for key in where.split("."):
        node = node.get(key) if isinstance(node, Mapping) else None
    if node is None:
        raise InvalidAnswer(
            f"{where} is missing: give the arguments your {label} network was built with, "
            f"e.g. {{{', '.join(f'{k}: ...' for k in interface.config_keys(label))}}}"
        )
    if not isinstance(node, Mapping):
        raise InvalidAnswer(f"{where} must be a mapping of {interface.config_keys(label)}")
    return node


def _config_value(value: Any, where: str) -> Any:
    """Only small plain values reach the student's constructor."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if not 0 <= value <= MAX_CONFIG_INT:
            raise InvalidAnswer(f"{where}: {value} is out of range 0..{MAX_CONFIG_INT}")
        return value
    if isinstance(value, float) and value.is_integer() and 0 <= value <= MAX_CONFIG_INT:
        return int(value)
    if isinstance(value, str) and len(value) <= MAX_CONFIG_TEXT:
        stripped = value.strip()
        return int(stripped) if stripped.isdigit() and int(stripped) <= MAX_CONFIG_INT else stripped
    raise InvalidAnswer(f"{where}: expected a whole number, got {value!r}")


def _check_names(interface: ModelInterface) -> None:
    names = set(interface.parameters)
    for key in [*interface.fixed, *(k for values in interface.per_label.values() for k in values)]:
        if key not in names:
            raise RubricError(f"model_interface: {key!r} is not one of network.parameters {sorted(names)}")
    if "{label}" not in interface.config_path:
        raise RubricError("model_interface.network.config must contain {label}, e.g. q1.{label}_config")
    if interface.record_dtype not in RECORD_DTYPES:
        raise RubricError(f"model_interface.preprocess.record_dtype must be one of {list(RECORD_DTYPES)}")
    if not all(_is_identifier(key) for key in interface.preprocess_kwargs):
        raise RubricError("model_interface.preprocess.keyword_arguments keys must be Python identifiers")


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RubricError(f"{where} must be a mapping")
    return value


def _identifier(section: Mapping[str, Any], key: str, where: str) -> str:
    value = section.get(key)
    if not _is_identifier(value):
        raise RubricError(f"{where}.{key} must be a Python identifier, got {value!r}")
    return str(value)


def _is_identifier(value: Any) -> bool:
    return isinstance(value, str) and bool(IDENTIFIER.match(value))
