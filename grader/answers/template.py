"""A blank, commented YAML answer sheet for an assignment, generated from its rubric."""

from __future__ import annotations

import textwrap
from typing import Any

from grader.answers.formats import get_format
from grader.rubric.model import PartSpec, Rubric

_WIDTH = 110
_PREPROCESSING = (
    "Preprocessing your code applies to test images for checkpoint {label}: one of none | scale | "
    "mean_std (with mean, std lists, 0-1 scale) | per_image_standardization | per_channel_standardization, "
    "e.g. per_image_standardization or {{kind: mean_std, mean: [0.49, 0.48, 0.45], std: [0.25, 0.24, 0.26]}}"
)
_HEADER = (
    "Answer sheet for {assignment}: {title} (rubric {version}). Fill in the answers after the colons and leave "
    "blank what you skip. Quote text that contains {{ }} [ ] , : # (e.g. 'w_1^{{11}}'); use single quotes "
    "around backslashes ('\\omega_1^{{11}}'). Weights are ω_k^{{ij}}: k = tap, i = input channel, "
    "j = output channel."
)
Tree = dict[str, Any]
"""Nested sheet keys; a leaf is the list of comment lines above a blank field."""


def render_template(rubric: Rubric) -> str:
    tree: Tree = {}
    for label in _checkpoints(rubric):
        _insert(tree, f"q1.{label}_preprocessing", [_PREPROCESSING.format(label=label)])
    for part in rubric.parts:
        for path, comments in _fields(part):
            _insert(tree, path, comments)
    header = _comment(
        _HEADER.format(assignment=rubric.assignment, title=rubric.title, version=rubric.version), indent=0
    )
    return "\n".join([*header, f"assignment: {rubric.assignment}", *_emit(tree, 0)]) + "\n"


def _checkpoints(rubric: Rubric) -> list[str]:
    labels = {str(part.params["checkpoint"]) for part in rubric.parts if "checkpoint" in part.params}
    return sorted(labels)


def _fields(part: PartSpec) -> list[tuple[str, list[str]]]:
    if part.answer is None:
        return []
    title = f"{part.title or part.id} ({part.points:g} points)"
    answer_format = get_format(part.checker)
    if answer_format is None:
        return [(part.answer, [f"{title}: written answer, reviewed by an instructor"])]
    fields = [(part.answer, [f"{title}: {answer_format.notation}"])]
    fields += [(part.answer + extra.suffix, [extra.notation]) for extra in answer_format.extras]
    return fields


def _insert(tree: Tree, path: str, comments: list[str]) -> None:
    *parents, leaf = path.split(".")
    node = tree
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = comments


def _emit(tree: Tree, indent: int) -> list[str]:
    lines: list[str] = []
    for key, value in tree.items():
        if isinstance(value, dict):
            lines += [" " * indent + f"{key}:", *_emit(value, indent + 2)]
        else:
            lines += [line for comment in value for line in _comment(comment, indent)]
            lines.append(" " * indent + f"{key}:")
    return lines


def _comment(text: str, indent: int) -> list[str]:
    prefix = " " * indent + "# "
    return textwrap.wrap(text, width=_WIDTH, initial_indent=prefix, subsequent_indent=prefix + "  ")
