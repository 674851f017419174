"""Rubric files are validated with precise messages, and the engine turns checker outcomes into points."""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.domain.results import PartStatus
from grader.errors import RubricError
from grader.rubric.engine import grade_sheet
from grader.rubric.model import RubricCatalog, load_rubric, parse_rubric
from tests.conftest import REPO_ROOT

MINIMAL = """
assignment: demo
version: "1"
parts:
  - {id: q1.essay, points: 4, checker: manual_review}
  - {id: q1.code, points: 6, checker: manual_review, answer: null}
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "expected a mapping"),
        ("assignment: x\nparts: [{id: a, points: 1, checker: manual_review}]", "missing top-level key 'version'"),
        ("assignment: x\nversion: 1\nparts: []", "non-empty list"),
        ("assignment: x\nversion: 1\nparts: [{id: a, checker: manual_review}]", "missing 'points'"),
        ("assignment: x\nversion: 1\nparts: [{id: a, points: -1, checker: c}]", "non-negative"),
        (
            "assignment: x\nversion: 1\nparts: [{id: a, points: 1, checker: c}, {id: a, points: 1, checker: c}]",
            "duplicate part ids ['a']",
        ),
        ("assignment: x\nversion: 1\nparts: [{id: a, points: 1, checker: c, visibility: secret}]", "visibility"),
        ("assignment: [", "not valid YAML"),
    ],
)
def test_malformed_rubrics_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(RubricError) as info:
        parse_rubric(text)
    assert message in str(info.value)


def test_the_hw3_rubric_totals_the_handouts_200_points() -> None:
    rubric = load_rubric(REPO_ROOT / "rubrics" / "csce636-hw3.yaml")
    by_question: dict[str, float] = {}
    for part in rubric.parts:
        question = part.id.split(".")[0]
        by_question[question] = by_question.get(question, 0) + part.points
    assert by_question == {"q1": 100, "q2": 20, "q3": 20, "q4": 60}
    assert rubric.max_score == 200


def test_engine_routes_written_answers_to_review_and_missing_answers_to_missing() -> None:
    rubric = parse_rubric(MINIMAL)
    report = grade_sheet({"q1": {"essay": "   "}}, rubric)
    assert [(p.id, p.status, p.points, p.max_points) for p in report.parts] == [
        ("q1.essay", PartStatus.MISSING, 0.0, 4.0),
        ("q1.code", PartStatus.NEEDS_REVIEW, 0.0, 6.0),
    ]
    assert "q1.essay" in report.parts[0].feedback
    assert report.to_json()["max_score"] == 10


def test_unknown_checker_names_the_known_ones() -> None:
    rubric = parse_rubric("assignment: x\nversion: 1\nparts: [{id: a, points: 1, checker: nope}]")
    with pytest.raises(RubricError, match=r"unknown checker 'nope'.*manual_review"):
        grade_sheet({"a": 1}, rubric)


def test_catalog_refuses_path_like_assignment_ids(tmp_path: Path) -> None:
    (tmp_path / "demo.yaml").write_text(MINIMAL)
    catalog = RubricCatalog(tmp_path)
    assert catalog.get("demo").assignment == "demo"
    for bad in ("../demo", "demo/..", "", "x" * 100):
        with pytest.raises(RubricError, match="no rubric"):
            catalog.get(bad)
