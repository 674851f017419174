"""render_template: a blank, commented answer sheet that parses, validates and scores zero."""

from __future__ import annotations

from grader.answers.sheet import parse_answer_sheet
from grader.answers.template import render_template
from grader.answers.validate import validate_sheet
from grader.domain.results import PartStatus
from grader.rubric.engine import grade_sheet
from tests.answers.sheets import answer_rubric, full_rubric


def test_template_lists_every_answer_field_with_a_comment() -> None:
    text = render_template(full_rubric())
    sheet = parse_answer_sheet(text)
    assert sheet["assignment"] == "csce636-hw3"
    assert set(sheet["q1"]) == {"v1_preprocessing", "v2_preprocessing"}
    assert set(sheet["q2"]) == {
        "standard_params",
        "standard_params_includes",
        "bottleneck_params",
        "bottleneck_params_includes",
        "standard_receptive_field",
        "bottleneck_receptive_field",
        "discussion",
    }
    assert set(sheet["q3"]) == {"a_mean_shape", "a_variance_shape", "b_mean_shape", "b_variance_shape"}
    assert set(sheet["q4"]) == {"a_matrix", "b_matrix", "c_padding", "c_kernels"}
    for kind in ("none", "scale", "mean_std", "per_image_standardization", "per_channel_standardization"):
        assert kind in text
    assert "written answer" in text


def test_every_field_has_a_comment_line_above_it() -> None:
    lines = render_template(full_rubric()).splitlines()
    for index, line in enumerate(lines):
        if line.startswith("  ") and line.rstrip().endswith(":") and not line.lstrip().startswith("#"):
            assert lines[index - 1].lstrip().startswith("#"), line


def test_the_blank_template_validates_and_scores_zero() -> None:
    sheet = parse_answer_sheet(render_template(full_rubric()))
    assert validate_sheet(sheet, full_rubric()) == []
    report = grade_sheet(sheet, answer_rubric())
    assert report.score == 0
    assert {part.status for part in report.parts} <= {PartStatus.MISSING, PartStatus.NEEDS_REVIEW}


def test_the_template_does_not_give_answers_away() -> None:
    text = render_template(full_rubric())
    for answer in ("18432", "17792", "5x5", "1 x C", "w3^11, w2^11, w1^11"):
        assert answer not in text
