"""Test helpers: the real rubric's answer-graded parts, the key's Q4 answers in any notation, grading one part."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from grader.domain.results import PartResult
from grader.rubric.engine import grade_part
from grader.rubric.model import Rubric, load_rubric

REPO_ROOT = Path(__file__).resolve().parents[2]
RUBRIC_PATH = REPO_ROOT / "rubrics" / "csce636-hw3.yaml"

# The answer key's Q4 answers, written with w<k>^<ij> (k = tap, i = input channel, j = output channel).
KEY_A = [
    ["w1^11", "w2^11", "w3^11", "0", "w1^21", "w2^21", "w3^21", "0"],
    ["0", "w1^11", "w2^11", "w3^11", "0", "w1^21", "w2^21", "w3^21"],
    ["w1^12", "w2^12", "w3^12", "0", "w1^22", "w2^22", "w3^22", "0"],
    ["0", "w1^12", "w2^12", "w3^12", "0", "w1^22", "w2^22", "w3^22"],
]
KEY_B = [list(column) for column in zip(*KEY_A, strict=True)]
KEY_KERNELS = {
    "U11": ["w3^11", "w2^11", "w1^11"],
    "U12": ["w3^21", "w2^21", "w1^21"],
    "U21": ["w3^12", "w2^12", "w1^12"],
    "U22": ["w3^22", "w2^22", "w1^22"],
}
WEIGHT_STYLES = {
    "plain": "w{k}^{i}{j}",
    "braced": "w_{k}^{{{i}{j}}}",
    "parenthesised": "w_{k}^({i}{j})",
    "bare_braced": "w{k}^{{{i}{j}}}",
    "latex": "\\omega_{k}^{{{i}{j}}}",
    "omega": "omega_{k}^{{{i}{j}}}",
    "greek": "ω{k}^{i}{j}",
    "greek_braced": "ω_{k}^{{{i}{j}}}",
}


def restyle(entry: str, style: str) -> str:
    """One key entry in another weight notation (0 stays 0)."""
    template = WEIGHT_STYLES[style]
    return re.sub(r"w(\d)\^(\d)(\d)", lambda m: template.format(k=m[1], i=m[2], j=m[3]), entry)


def restyled(matrix: list[list[str]], style: str) -> list[list[str]]:
    return [[restyle(entry, style) for entry in row] for row in matrix]


@lru_cache(maxsize=1)
def full_rubric() -> Rubric:
    return load_rubric(RUBRIC_PATH)


def answer_rubric(rubric: Rubric | None = None) -> Rubric:
    """The rubric's parts graded from the sheet (Q2–Q4); Q1's checkpoint parts need evaluations."""
    rubric = rubric or full_rubric()
    return replace(rubric, parts=tuple(part for part in rubric.parts if part.answer is not None))


def set_path(sheet: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = sheet
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def grade_one(
    part_id: str,
    answer: Any,
    *,
    others: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    rubric: Rubric | None = None,
) -> PartResult:
    """Grade one part with `answer` at its path, `others` at theirs, and optional overrides of its params."""
    rubric = rubric or full_rubric()
    part = rubric.part(part_id)
    if params:
        part = replace(part, params={**part.params, **params})
    sheet: dict[str, Any] = {}
    assert part.answer is not None
    set_path(sheet, part.answer, answer)
    for path, value in (others or {}).items():
        set_path(sheet, path, value)
    return grade_part(part, sheet, rubric, {})
