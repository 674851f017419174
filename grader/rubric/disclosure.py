"""What a student may see of a graded part before grades are released, and when grades count as released.

With unlimited resubmissions, anything that quotes the reference (an accepted value, the reference matrix, the
convention a count matches) would let a class harvest the key in an evening. So before release a student sees,
per the part's visibility in the rubric:
- full: status, points, and the checker's public feedback (written to say what was wrong without quoting the
  reference; a generic line for the status where a checker wrote none), with only the evidence keys listed in
  PUBLIC_EVIDENCE (their own answer, their own model's results); never `accepted` or other reference values;
- score_only: status and points;
- hidden: only that the answer was received (no status, no points; not counted in the score shown).
After release (an instructor's action, or the rubric's `release_at`), and for staff always, everything.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from grader.rubric.model import Visibility

RECEIVED = "received"
PUBLIC_EVIDENCE = frozenset(
    {
        # the student's own answer as read, and where it went wrong
        "answer",
        "answer_chars",
        "declared",
        "wrong_entries",
        "wrong_kernels",
        # their own checkpoint's results (the test labels are public; the key is not in them)
        "evaluation_status",
        "mode",
        "isolation",
        "accuracy_percent",
        "correct",
        "total",
        "per_class_accuracy_percent",
        "confusion_matrix",
        "class_names",
        "architecture",
        "expected",
        "mismatches",
        "same_checkpoint_as",
        "preprocessing",
        "preprocessing_declared",
        "preprocessing_function",
        "forward_variant",
        "variants_tried",
        "device",
        "torch_version",
        "evaluator_version",
        "checkpoint_sha256",
        "code_sha256",
    }
)
"""Evidence keys a student sees before release; any other key (e.g. `accepted`, `matched`, `slip`) is withheld."""

STATUS_LINES = {
    "correct": "Correct.",
    "partial": "Partly correct.",
    "incorrect": "Not correct.",
    "needs_review": "An instructor will review this answer.",
    "error": "The grader could not check this part; it is scored once it can be.",
}
"""The feedback shown before release where a checker wrote no public feedback."""


def is_released(*, released_at: datetime | None, release_at: datetime | None, now: datetime) -> bool:
    """Released by an instructor (`released_at`), or the rubric's release date has passed."""
    return any(moment is not None and moment <= now for moment in (released_at, release_at))


def part_view(part: Mapping[str, Any], *, visibility: Visibility, disclosed: bool) -> dict[str, Any]:
    """The part as its viewer may see it; `disclosed` for staff, and for students after release."""
    shown = {key: part[key] for key in ("id", "status", "points", "max_points", "feedback", "evidence")}
    shown |= {"reviewed": bool(part.get("reviewed")), "review": part.get("review")}
    if disclosed:
        return shown
    shown["review"] = None  # a reviewer's comment and reason are shown at release
    if visibility is Visibility.HIDDEN:
        return {**shown, "status": RECEIVED, "points": None, "feedback": "", "evidence": None, "reviewed": False}
    if visibility is Visibility.SCORE_ONLY:
        return {**shown, "feedback": "", "evidence": None}
    evidence = part.get("evidence")
    public = {k: v for k, v in evidence.items() if k in PUBLIC_EVIDENCE} if isinstance(evidence, Mapping) else None
    feedback = part.get("public_feedback") or STATUS_LINES.get(str(part["status"]), "")
    return {**shown, "feedback": feedback, "evidence": public or None}


def visible_score(parts: list[dict[str, Any]]) -> float:
    """The score over the parts whose points the viewer sees (hidden parts count nothing before release)."""
    return round(sum(part["points"] for part in parts if part["points"] is not None), 4)
