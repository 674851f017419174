"""The fields of an assignment's answer sheet, from its rubric: one model behind the blank template
(`grader template`), strict validation (unknown keys refused, with the nearest valid one) and the JSON Schema
published at `GET /api/v1/assignments/{a}/sheet-schema` (a pydantic model with `extra="forbid"`)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from grader.answers.formats import get_format
from grader.rubric.model import PartSpec, Rubric

PREPROCESSING = (
    "Preprocessing your code applies to test images for checkpoint {label}: one of none | scale | "
    "mean_std (with mean, std lists, 0-1 scale) | per_image_standardization | per_channel_standardization, "
    "e.g. per_image_standardization or {{kind: mean_std, mean: [0.49, 0.48, 0.45], std: [0.25, 0.24, 0.26]}}"
)
CONFIG = (
    "Only with your own model code (v{n}_code): the arguments your network factory takes for checkpoint {label}, "
    "e.g. {{resnet_size: 18, first_num_filters: 16}}"
)


@dataclass(frozen=True, slots=True)
class SheetField:
    path: str
    """Dotted path in the sheet, e.g. q2.standard_params."""
    description: str
    in_template: bool = True


def sheet_fields(rubric: Rubric) -> list[SheetField]:
    """Every field a sheet for `rubric` may hold, in template order."""
    fields = [SheetField("assignment", f"The assignment id, {rubric.assignment} (optional)", in_template=False)]
    for label in checkpoint_labels(rubric):
        fields.append(SheetField(f"q1.{label}_preprocessing", PREPROCESSING.format(label=label)))
        fields.append(SheetField(f"q1.{label}_config", CONFIG.format(label=label, n=label[1:]), in_template=False))
    for part in rubric.parts:
        fields += _part_fields(part)
    return fields


def checkpoint_labels(rubric: Rubric) -> list[str]:
    return sorted({str(part.params["checkpoint"]) for part in rubric.parts if "checkpoint" in part.params})


def _part_fields(part: PartSpec) -> list[SheetField]:
    if part.answer is None:
        return []
    title = f"{part.title or part.id} ({part.points:g} points)"
    answer_format = get_format(part.checker)
    if answer_format is None:
        return [SheetField(part.answer, f"{title}: written answer, reviewed by an instructor")]
    fields = [SheetField(part.answer, f"{title}: {answer_format.notation}")]
    fields += [SheetField(part.answer + extra.suffix, extra.notation) for extra in answer_format.extras]
    return fields


def sheet_model(rubric: Rubric) -> type[BaseModel]:
    """A pydantic model of the sheet: nested mappings per question, any value at a field (its notation is
    checked by the part's parser), no other key anywhere."""
    return _sheet_model(rubric.assignment, tuple(sheet_fields(rubric)))


@lru_cache(maxsize=64)
def _sheet_model(assignment: str, fields: tuple[SheetField, ...]) -> type[BaseModel]:
    # Built once per set of fields: building a pydantic model took more time than a submission's own checks.
    tree: dict[str, Any] = {}
    for field in fields:
        *parents, leaf = field.path.split(".")
        node = tree
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = field
    return _model(f"{_camel(assignment)}Sheet", tree, title=f"Answer sheet for {assignment}")


def _model(name: str, tree: Mapping[str, Any], *, title: str | None = None) -> type[BaseModel]:
    definitions: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, SheetField):
            definitions[key] = (Any, Field(default=None, description=value.description))
        else:
            definitions[key] = (_model(f"{name}{_camel(key)}", value) | None, Field(default=None))
    config = ConfigDict(extra="forbid", title=title or name)
    return create_model(name, __config__=config, **definitions)


def _camel(text: str) -> str:
    return "".join(part.capitalize() for part in text.replace("-", "_").split("_"))


def sheet_schema(rubric: Rubric) -> dict[str, Any]:
    """The JSON Schema of the sheet (editors validate against it)."""
    return sheet_model(rubric).model_json_schema()


def unknown_keys(sheet: Mapping[str, Any], rubric: Rubric) -> list[tuple[str, str]]:
    """(dotted path, message naming the nearest valid key) for each key the sheet may not hold."""
    try:
        sheet_model(rubric).model_validate(dict(sheet))
    except ValidationError as exc:
        known = [field.path for field in sheet_fields(rubric)]
        found = []
        for error in exc.errors():
            if error["type"] != "extra_forbidden":
                continue
            path = ".".join(str(part) for part in error["loc"])
            found.append((path, _unknown_message(path, known)))
        return found
    return []


def _unknown_message(path: str, known: list[str]) -> str:
    near = difflib.get_close_matches(path, known, n=1, cutoff=0.6)
    if near:
        return f"unknown key {path}: did you mean {near[0]}?"
    parent = path.rpartition(".")[0]
    if not parent:
        return f"unknown key {path}; the sheet's top-level keys are: " + ", ".join(
            dict.fromkeys(key.split(".")[0] for key in known)
        )
    siblings = [key.rpartition(".")[2] for key in known if key.rpartition(".")[0] == parent]
    return f"unknown key {path}; the keys under {parent} are: " + ", ".join(siblings)
