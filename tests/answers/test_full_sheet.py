"""Whole sheets through grade_sheet with the real rubric: every notation style scores full marks on Q2–Q4."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grader.answers.sheet import parse_answer_sheet
from grader.domain.results import GradeReport, PartStatus
from grader.rubric.engine import grade_sheet
from grader.rubric.model import parse_rubric
from tests.answers.sheets import KEY_A, KEY_B, KEY_KERNELS, REPO_ROOT, RUBRIC_PATH, answer_rubric, restyled


def numpy_text(rows: list[list[str]]) -> str:
    return "[" + ", ".join("[" + ", ".join(row) + "]" for row in rows) + "]"


def matlab_text(rows: list[list[str]]) -> str:
    return "[" + "; ".join(" ".join(row) for row in rows) + "]"


def latex_block(rows: list[list[str]], indent: str = "    ") -> str:
    body = f" \\\\\n{indent}".join(" & ".join(row) for row in rows)
    return f"|\n{indent}\\begin{{bmatrix}}\n{indent}{body}\n{indent}\\end{{bmatrix}}"


def kernels_yaml(style: str, render: str) -> str:
    lines = []
    for key, taps in KEY_KERNELS.items():
        styled = [restyled([[tap]], style)[0][0] for tap in taps]
        value = {
            "list": "[" + ", ".join(f"'{t}'" for t in styled) + "]",
            "numpy": f"'[{', '.join(styled)}]'",
            "spaces": f"'{' '.join(styled)}'",
        }[render]
        name = {"list": key, "numpy": f"'U^{{{key[1:]}}}'", "spaces": f"U_{key[1:]}"}[render]
        lines.append(f"    {name}: {value}")
    return "\n" + "\n".join(lines)


STYLES = {
    "braced_strings": f"""
assignment: csce636-hw3
q2:
  standard_params: "18,432"
  standard_params_includes: []
  bottleneck_params: "17,792"
  bottleneck_params_includes: [bn]
  standard_receptive_field: 5 × 5
  bottleneck_receptive_field: "3x3"
  discussion: Bottlenecks are cheaper per layer.
q3:
  a_mean_shape: 1×C
  a_variance_shape: 1xC
  b_mean_shape: 1 × 1 × 1 × C
  b_variance_shape: "(1, 1, 1, C)"
q4:
  a_matrix: {json.dumps(restyled(KEY_A, "braced"))}
  b_matrix: 'A^\\top'
  c_padding: "2"
  c_kernels: {kernels_yaml("latex", "list")}
""",
    "numpy_text": f"""
assignment: csce636-hw3
q2:
  standard_params: "18 432"
  bottleneck_params: 17600
  bottleneck_params_includes: bias
  standard_receptive_field: 5
  bottleneck_receptive_field: 3
q3:
  a_mean_shape: (1, C)
  a_variance_shape: [1, C]
  b_mean_shape: (1,1,1,C)
  b_variance_shape: [1, 1, 1, C]
q4:
  a_matrix: "np.array({numpy_text(restyled(KEY_A, "parenthesised"))})"
  b_matrix: "{numpy_text(restyled(KEY_B, "omega"))}"
  c_padding: [2, 2]
  c_kernels: {kernels_yaml("parenthesised", "numpy")}
""",
    "matlab_text": f"""
assignment: csce636-hw3
q2:
  standard_params: 18624
  standard_params_includes: bn, bias
  bottleneck_params: 17,984
  standard_receptive_field: "5*5"
  bottleneck_receptive_field: 3 by 3
q3:
  a_mean_shape: 1*C
  a_variance_shape: 1 X C
  b_mean_shape: 1*1*1*C
  b_variance_shape: 1x1x1xC
q4:
  a_matrix: "{matlab_text(restyled(KEY_A, "greek"))}"
  b_matrix: A'
  c_padding: 2
  c_kernels: {kernels_yaml("greek_braced", "spaces")}
""",
    "latex": f"""
assignment: csce636-hw3
q2:
  standard_params: 18560
  standard_params_includes: [BN]
  bottleneck_params: 17408
  standard_receptive_field: [5, 5]
  bottleneck_receptive_field: (3, 3)
q3:
  a_mean_shape: [1, C]
  a_variance_shape: '1 \\times C'
  b_mean_shape: [1, 1, 1, C]
  b_variance_shape: 1 x 1 x 1 x C
q4:
  a_matrix: {latex_block(restyled(KEY_A, "latex"))}
  b_matrix: {latex_block(restyled(KEY_B, "bare_braced"))}
  c_padding: 2
  c_kernels: {kernels_yaml("omega", "list")}
""",
    "json": json.dumps(
        {
            "assignment": "csce636-hw3",
            "q2": {
                "standard_params": 18432,
                "bottleneck_params": "17792",
                "standard_receptive_field": "5x5",
                "bottleneck_receptive_field": "3x3",
            },
            "q3": {
                "a_mean_shape": ["1", "C"],
                "a_variance_shape": "1 x C",
                "b_mean_shape": [1, 1, 1, "C"],
                "b_variance_shape": "1 x 1 x 1 x C",
            },
            "q4": {"a_matrix": KEY_A, "b_matrix": "transpose(A)", "c_padding": 2, "c_kernels": KEY_KERNELS},
        }
    ),
}


def _grade(text: str) -> GradeReport:
    return grade_sheet(parse_answer_sheet(text), answer_rubric())


def _assert_full_marks(report: GradeReport) -> None:
    not_full = {p.id: (str(p.status), p.feedback) for p in report.parts if p.points != p.max_points}
    assert set(not_full) == {"q2.discussion"}, not_full
    assert report.score == report.max_score - 5 == 95
    discussion = next(p for p in report.parts if p.id == "q2.discussion")
    assert discussion.status in (PartStatus.NEEDS_REVIEW, PartStatus.MISSING)


@pytest.mark.parametrize("style", sorted(STYLES))
def test_a_correct_sheet_in_each_notation_style_scores_full_marks(style: str) -> None:
    _assert_full_marks(_grade(STYLES[style]))


def test_the_repository_sample_sheet_scores_full_marks() -> None:
    sample = REPO_ROOT / "tests" / "data" / "correct_sheet.yaml"
    if not sample.is_file():
        pytest.skip("no sample sheet in this checkout")
    _assert_full_marks(_grade(sample.read_text(encoding="utf-8")))


def test_reports_are_json_ready() -> None:
    report = _grade(STYLES["latex"])
    assert json.loads(json.dumps(report.to_json()))["score"] == 95


def test_a_different_block_spec_changes_the_accepted_count() -> None:
    text = RUBRIC_PATH.read_text(encoding="utf-8")
    wider = text.replace("kind: standard, channels: 32", "kind: standard, channels: 64").replace(
        "input_shape: [128, 16, 16, 32]", "input_shape: [128, 16, 16, 64]"
    )
    assert wider != text
    rubric = answer_rubric(parse_rubric(wider))
    sheet = {"q2": {"standard_params": 18432, "standard_receptive_field": "5x5"}}
    old = {p.id: p.status for p in grade_sheet(sheet, rubric).parts}
    sheet["q2"]["standard_params"] = 2 * 64 * 3 * 3 * 64
    new = {p.id: p.status for p in grade_sheet(sheet, rubric).parts}
    assert old["q2.standard_params"] is PartStatus.INCORRECT
    assert new["q2.standard_params"] is PartStatus.CORRECT
    assert new["q2.standard_receptive_field"] is PartStatus.CORRECT


def test_an_empty_sheet_scores_zero_with_every_part_missing() -> None:
    report = grade_sheet({"assignment": "csce636-hw3"}, answer_rubric())
    assert report.score == 0
    assert {p.status for p in report.parts} <= {PartStatus.MISSING, PartStatus.NEEDS_REVIEW}


def test_rubric_file_is_the_real_one() -> None:
    assert Path(RUBRIC_PATH).is_file()
