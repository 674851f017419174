"""What a student sees of a part before release, per visibility; staff and released views see everything."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from grader.rubric.disclosure import RECEIVED, is_released, part_view, visible_score
from grader.rubric.model import Visibility

PART = {
    "id": "q2.standard_receptive_field",
    "status": "incorrect",
    "points": 0.0,
    "max_points": 2.5,
    "feedback": "7x7 is not the receptive field: each 3x3 conv widens it by 2.",
    "evidence": {"accepted": "5x5", "answer": "7x7", "matched": "x", "slip": "y"},
    "public_feedback": "7x7 is not the receptive field of one output pixel of the standard block.",
}
FULL_VIEW = {key: PART[key] for key in ("id", "status", "points", "max_points", "feedback", "evidence")} | {
    "reviewed": False,
    "review": None,
}


@pytest.mark.parametrize(
    ("visibility", "disclosed", "expected"),
    [
        (Visibility.FULL, True, FULL_VIEW),
        (Visibility.HIDDEN, True, FULL_VIEW),
        (
            Visibility.FULL,
            False,
            FULL_VIEW | {"feedback": PART["public_feedback"], "evidence": {"answer": "7x7"}},
        ),
        (Visibility.SCORE_ONLY, False, FULL_VIEW | {"feedback": "", "evidence": None}),
        (
            Visibility.HIDDEN,
            False,
            FULL_VIEW | {"status": RECEIVED, "points": None, "feedback": "", "evidence": None},
        ),
    ],
)
def test_part_view_table(visibility: Visibility, disclosed: bool, expected: dict) -> None:
    assert part_view(PART, visibility=visibility, disclosed=disclosed) == expected


def test_without_public_feedback_a_generic_line_for_the_status_is_shown() -> None:
    part = PART | {"public_feedback": None, "status": "partial", "evidence": {"accepted": 2}}
    shown = part_view(part, visibility=Visibility.FULL, disclosed=False)
    assert shown["feedback"] == "Partly correct." and shown["evidence"] is None


def test_release_by_hand_or_by_the_rubrics_date() -> None:
    now = datetime(2026, 12, 2, 12, tzinfo=UTC)
    earlier, later = now - timedelta(hours=1), now + timedelta(hours=1)
    assert not is_released(released_at=None, release_at=None, now=now)
    assert not is_released(released_at=None, release_at=later, now=now)
    assert is_released(released_at=None, release_at=earlier, now=now)
    assert is_released(released_at=earlier, release_at=later, now=now)


def test_the_visible_score_leaves_hidden_parts_out() -> None:
    assert visible_score([{"points": 2.5}, {"points": None}, {"points": 1.0}]) == 3.5


def test_a_reviewers_comment_waits_for_release_and_hidden_parts_do_not_say_they_were_reviewed() -> None:
    review = {"points": 2.0, "comment": "see the handout", "reason": None, "by": "tom"}
    part = PART | {"status": "partial", "points": 2.0, "reviewed": True, "review": review}
    before = part_view(part, visibility=Visibility.FULL, disclosed=False)
    assert (before["points"], before["reviewed"], before["review"]) == (2.0, True, None)
    assert part_view(part, visibility=Visibility.FULL, disclosed=True)["review"] == review
    hidden = part_view(part, visibility=Visibility.HIDDEN, disclosed=False)
    assert (hidden["points"], hidden["reviewed"], hidden["status"]) == (None, False, RECEIVED)
