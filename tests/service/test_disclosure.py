"""Students never see the answer key before release; staff always see everything; release is the instructor's.

A sheet wrong in every checked part (tests/data/wrong_sheet.yaml), each in a way whose full feedback names or
implies the reference, is graded by the real worker; the test collects every reference value from the staff
view (the `accepted` evidence, and the words of the full feedback that give the key away) and searches the
student's whole response for each of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.conftest import RunningService, wait_for_final

pytestmark = pytest.mark.service
DATA = Path(__file__).resolve().parent.parent / "data"
WRONG = DATA / "wrong_sheet.yaml"
ASSIGNMENT = "/api/v1/assignments/csce636-hw3"
HIDDEN = {"q1.data_reader", "q1.augmentation", "q1.model", "q2.discussion"}
SCORE_ONLY = {"q4.c_padding"}
KEY_PHRASES = {
    # what the full feedback says that gives the key away, by part
    "q2.standard_params": ["is the count with"],
    "q2.standard_receptive_field": ["number of pixels"],
    "q2.bottleneck_receptive_field": ["widens it by"],
    "q3.a_variance_shape": ["keeps every axis", "2 axes"],
    "q3.b_mean_shape": ["also averages over H, W"],
    "q3.b_variance_shape": ["averaged over N, H, W"],
    "q4.b_matrix": ["transpose"],
    "q4.c_padding": ["total over both sides", "length"],
}


def spellings(value: Any) -> set[str]:
    """How a reference value could be written in a response: numbers with and without separators, shapes."""
    if isinstance(value, int):
        return {str(value), f"{value:,}"}
    text = str(value)
    return {text, text.replace(" ", ""), text.replace("x", " x ").replace("  ", " "), text.replace("x", "×")}


@pytest.fixture(scope="module")
def graded(service: RunningService) -> Iterator[tuple[dict, dict]]:
    """(the student's view, the instructor's view) of one graded wrong sheet, before release."""
    student, instructor = service.user("dora"), service.user("alice", role="instructor")
    assert instructor.delete(f"{ASSIGNMENT}/release").status_code == 200  # not released
    accepted = student.post(f"{ASSIGNMENT}/submissions", files={"answers": ("a.yaml", WRONG.read_bytes())}).json()
    wait_for_final(student, accepted["status_url"])
    yield student.get(accepted["status_url"]).json(), instructor.get(accepted["status_url"]).json()


def test_before_release_no_reference_value_appears_anywhere_in_the_students_view(graded: tuple[dict, dict]) -> None:
    student, staff = graded
    assert student["status"] == "graded" and student["released"] is False
    sheet = WRONG.read_text()
    text = json.dumps(student, ensure_ascii=False)
    staff_parts = {part["id"]: part for part in staff["parts"]}
    searched = 0
    for part_id, part in staff_parts.items():
        reference = (part["evidence"] or {}).get("accepted")
        values = list(reference.values()) if isinstance(reference, dict) else [reference] if reference else []
        # a value the student wrote themselves may be quoted back to them (it is their answer, not the key)
        searched_for = [spellings(v) for v in values if not any(s in sheet for s in spellings(v))]
        for spelling in {s for group in searched_for for s in group}:
            assert spelling not in text, f"{part_id}: the reference {spelling!r} is in the student's view"
            searched += 1
        student_part = json.dumps(next(p for p in student["parts"] if p["id"] == part_id), ensure_ascii=False)
        for phrase in KEY_PHRASES.get(part_id, []):
            assert phrase in part["feedback"] or phrase in json.dumps(part), (part_id, phrase)  # staff see it
            assert phrase not in student_part, f"{part_id}: {phrase!r} is in the student's view"
            searched += 1
    assert searched >= 40, "the staff view should have given many reference values to search for"
    assert '"accepted"' not in text and '"matched"' not in text and '"slip"' not in text


def test_before_release_each_part_shows_what_its_visibility_allows(graded: tuple[dict, dict]) -> None:
    student, staff = graded
    parts = {part["id"]: part for part in student["parts"]}
    assert set(parts) == {part["id"] for part in staff["parts"]}
    for part_id in HIDDEN:
        assert parts[part_id] | {"max_points": 0} == {
            "id": part_id,
            "status": "received",
            "points": None,
            "max_points": 0,
            "feedback": "",
            "evidence": None,
            "reviewed": False,
            "review": None,
        }
    for part_id in SCORE_ONLY:
        assert parts[part_id]["status"] == "partial" and parts[part_id]["points"] == 5.0
        assert parts[part_id]["feedback"] == "" and parts[part_id]["evidence"] is None
    # full parts say what was wrong in the student's own terms
    assert parts["q2.bottleneck_params"]["feedback"].startswith("12,345 is not the parameter count of the bottleneck")
    assert parts["q4.a_matrix"]["status"] == "partial" and "instead of A" in parts["q4.a_matrix"]["feedback"]
    assert parts["q2.standard_receptive_field"]["evidence"] == {"answer": "25x25"}
    # the score counts only parts whose points the student sees; staff see the stored total
    shown = sum(part["points"] for part in student["parts"] if part["points"] is not None)
    assert student["score"] == pytest.approx(shown)
    assert staff["score"] == pytest.approx(sum(part["points"] for part in staff["parts"]))
    assert staff["parts"][0]["status"] == "needs_review" and staff["released"] is False


def test_release_is_the_instructors_and_shows_students_full_feedback(
    service: RunningService, graded: tuple[dict, dict]
) -> None:
    student_view, staff_view = graded
    student, ta, instructor = service.user("dora"), service.user("tom", role="ta"), service.user("alice")
    for client in (student, ta):
        refused = client.post(f"{ASSIGNMENT}/release")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    assert student.get(ASSIGNMENT).json()["released"] is False
    try:
        released = instructor.post(f"{ASSIGNMENT}/release")
        assert released.status_code == 200 and released.json()["released"] is True
        assert released.json()["released_at"] is not None
        after = student.get(student_view["status_url"]).json()
        assert after["released"] is True
        assert after["parts"] == staff_view["parts"] and after["score"] == staff_view["score"]
        assert "accepted" in json.dumps(after)
    finally:
        withdrawn = instructor.delete(f"{ASSIGNMENT}/release")
    assert withdrawn.status_code == 200 and withdrawn.json()["released"] is False
    assert student.get(student_view["status_url"]).json()["parts"] == student_view["parts"]


def test_the_cli_releases_and_withdraws_too(service: RunningService, graded: tuple[dict, dict]) -> None:
    student_view, _ = graded
    student = service.user("dora")
    try:
        assert "grades released" in service.cli("release", "csce636-hw3").stdout
        assert student.get(student_view["status_url"]).json()["released"] is True
    finally:
        assert "withdrawn" in service.cli("release", "csce636-hw3", "--withdraw").stdout
    assert student.get(student_view["status_url"]).json()["released"] is False


def test_a_misspelt_key_is_refused_at_submission_with_the_nearest_valid_key(service: RunningService) -> None:
    student = service.user("dora")
    before = student.get("/api/v1/submissions").json()["total"]
    refused = student.post(
        f"{ASSIGNMENT}/submissions", files={"answers": ("a.yaml", b"q2:\n  standard_param: 18432\n")}
    )
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["field"] == "q2.standard_param" and "did you mean q2.standard_params?" in error["message"]
    bad_kind = student.post(
        f"{ASSIGNMENT}/submissions", files={"answers": ("a.yaml", b"q1:\n  v1_preprocessing: imagenet\n")}
    )
    assert bad_kind.status_code == 422 and bad_kind.json()["error"]["field"] == "q1.v1_preprocessing"
    assert student.get("/api/v1/submissions").json()["total"] == before  # nothing stored as a submission
    schema = student.get(f"{ASSIGNMENT}/sheet-schema").json()
    assert schema["additionalProperties"] is False and "q2" in schema["properties"]
