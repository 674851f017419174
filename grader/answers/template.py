"""A blank, commented YAML answer sheet for an assignment, generated from its rubric."""

from __future__ import annotations

import textwrap
from typing import Any

from grader.answers.fields import sheet_fields
from grader.rubric.model import Rubric

_WIDTH = 110
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
    for field in sheet_fields(rubric):
        if field.in_template:
            _insert(tree, field.path, [field.description])
    header = _comment(
        _HEADER.format(assignment=rubric.assignment, title=rubric.title, version=rubric.version), indent=0
    )
    return "\n".join([*header, f"assignment: {rubric.assignment}", *_emit(tree, 0)]) + "\n"


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
