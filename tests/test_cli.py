"""The `grader` command line as students and scripts use it: template -> check -> grade, with clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

GRADER = str(Path(sys.executable).with_name("grader"))
SHEET = REPO_ROOT / "tests" / "data" / "correct_sheet.yaml"


def grader(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GRADER, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def test_blank_template_passes_check_and_grades_to_zero(tmp_path: Path) -> None:
    template = grader("template", "csce636-hw3")
    assert template.returncode == 0 and "q4:" in template.stdout
    blank = tmp_path / "answers.yaml"
    blank.write_text(template.stdout)
    assert grader("check", "--answers", str(blank)).returncode == 0
    report = json.loads(grader("grade", "--answers", str(blank), "--json").stdout)
    assert report["score"] == 0 and report["max_score"] == 200
    assert {part["status"] for part in report["parts"]} <= {"missing", "needs_review"}


def test_grade_json_is_one_object_in_the_documented_shape() -> None:
    result = grader("grade", "--answers", str(SHEET), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"assignment", "rubric_version", "score", "max_score", "parts"}
    assert report["assignment"] == "csce636-hw3"
    assert set(report["parts"][0]) == {"id", "status", "points", "max_points", "feedback", "evidence"}
    assert report["score"] == sum(part["points"] for part in report["parts"])


def test_grade_without_json_prints_a_table_with_the_total() -> None:
    result = grader("grade", "--answers", str(SHEET))
    assert result.returncode == 0
    assert "q4.c_kernels" in result.stdout and "score: " in result.stdout.splitlines()[-1]


def test_check_names_the_field_and_the_expected_notation(tmp_path: Path) -> None:
    sheet = tmp_path / "answers.yaml"
    sheet.write_text('assignment: csce636-hw3\nq2:\n  standard_params: "eighteen thousand"\n')
    result = grader("check", "--answers", str(sheet))
    assert result.returncode == 1
    assert "q2.standard_params" in result.stdout and "integer" in result.stdout


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["grade", "--answers", "missing.yaml"], "cannot read"),
        (["grade", "--answers", str(SHEET), "--checkpoint", "v3=x.pt"], "expected v1=PATH or v2=PATH"),
        (["grade", "--answers", str(SHEET), "--checkpoint", "v1=does-not-exist.pt"], "does not exist"),
        (["template", "no-such-assignment"], "no rubric"),
    ],
)
def test_bad_arguments_exit_non_zero_with_a_message(args: list[str], phrase: str) -> None:
    result = grader(*args)
    assert result.returncode != 0
    assert phrase in result.stderr


def test_a_misspelt_key_fails_check_and_grade_with_the_nearest_valid_key(tmp_path: Path) -> None:
    sheet = tmp_path / "answers.yaml"
    sheet.write_text("assignment: csce636-hw3\nq1:\n  v1_preprocessing: imagenet\nq2:\n  standard_param: 18432\n")
    checked = grader("check", "--answers", str(sheet))
    assert checked.returncode == 1
    assert "q2.standard_param: unknown key q2.standard_param: did you mean q2.standard_params?" in checked.stdout
    assert "q1.v1_preprocessing: " in checked.stdout and "unknown preprocessing 'imagenet'" in checked.stdout
    graded = grader("grade", "--answers", str(sheet), "--json")
    assert graded.returncode != 0 and graded.stdout == ""
    assert "did you mean q2.standard_params?" in graded.stderr or "unknown preprocessing" in graded.stderr
